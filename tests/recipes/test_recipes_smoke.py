"""The three paper recipes end to end in --smoke mode, on samples in the sources' real formats that
these tests create (scripts/data/recipe_samples.py) and pass with --data-dir (the path a machine without
internet takes), and the stage machinery: skipping done stages, order, failures, settings."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from tests.helpers import ROOT

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load)
from scripts.data import recipe_samples
from tests.helpers import run_main

RECIPES = os.path.join(ROOT, "recipes")


def recipe(name, *args, env=None):
    """Run recipes/NAME.sh with this Python's fairseq; return the completed process."""
    return subprocess.run(["bash", os.path.join(RECIPES, name + ".sh"), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable, **(env or {})})


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Start the three recipes' --smoke runs at once (they overlap well on 2 cores: much of each is
    Python start-up), each on a sample these tests create, passed with --data-dir."""
    runs = {}
    for name, kind in (("wmt16_en_de", "wmt16"), ("wikitext103", "wikitext103"), ("cnn_dm", "cnn_dm")):
        root = tmp_path_factory.mktemp(name)
        run_main(recipe_samples.main, kind, root / "data")
        log = open(root / "recipe.log", "w+")
        proc = subprocess.Popen(["bash", os.path.join(RECIPES, name + ".sh"), "--smoke", "--data-dir", root / "data",
                                 "--work-dir", root / "work"], stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHON": sys.executable})
        runs[name] = (proc, log, root)
    yield runs
    for proc, log, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def smoke(runs, name):
    """(work dir, output) of one finished --smoke run."""
    proc, log, root = runs[name]
    proc.wait()
    log.seek(0)
    output = log.read()
    if proc.returncode != 0:
        raise AssertionError(f"{name} --smoke failed:\n{output[-6000:]}")
    return root / "work", output


def stages_done(output):
    return [line.split()[2].rstrip(":") for line in output.splitlines() if line.startswith("[") and ": done in " in line]


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def generate_lines(path, tag):
    """The texts of one kind of fairseq-generate line (T, H, D), in sentence order."""
    found = {}
    for line in lines(path):
        if line.startswith(tag + "-"):
            parts = line.split("\t")
            found[int(parts[0][len(tag) + 1:])] = parts[-1]
    return [found[i] for i in sorted(found)]


@pytest.fixture(scope="module")
def wmt(smoke_runs):
    return smoke(smoke_runs, "wmt16_en_de")


@pytest.fixture(scope="module")
def wiki(smoke_runs):
    return smoke(smoke_runs, "wikitext103")


@pytest.fixture(scope="module")
def cnn(smoke_runs):
    return smoke(smoke_runs, "cnn_dm")


def test_wmt16_smoke_runs_every_stage_on_newstest2014(wmt):
    work, output = wmt
    assert stages_done(output) == ["data", "bpe", "preprocess", "train", "average", "eval", "sweep", "table"]
    # the test set is the .sgm's segments, and fairseq's references (--remove-bpe) are exactly the
    # tokenized segments, in order: BPE and binarization lose nothing
    assert len(lines(work / "raw/test.de")) == 30
    assert generate_lines(work / "eval/generate.out", "T") == lines(work / "tok/test.de")
    assert len(generate_lines(work / "eval/generate.out", "H")) == 30
    # the averaged model is the mean of the last two epochs' weights
    average = torch.load(work / "checkpoints/checkpoint_avg.pt", weights_only=True)["model"]
    epochs = [torch.load(work / f"checkpoints/checkpoint{e}.pt", weights_only=True)["model"] for e in (1, 2)]
    key = "encoder.layers.0.fc1.weight"
    assert torch.allclose(average[key], (epochs[0][key] + epochs[1][key]) / 2)
    assert not torch.equal(epochs[0][key], epochs[1][key])
    scores = json.loads((work / "eval/scores.json").read_text())
    assert set(scores) == {"compound-split BLEU (newstest2014)", "tokenized BLEU", "sacreBLEU (detokenized)"}
    assert all(0 <= v <= 100 for v in scores.values())
    with open(work / "sweep/sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["depth"], row["strategy"], row["kept"]) == ("2", "every-other", "encoder:0,2")
    table = (work / "results.md").read_text()
    assert f"| compound-split BLEU (newstest2014) | {scores['compound-split BLEU (newstest2014)']:.2f} | 30.2 |" in table
    assert "| 2 | every-other | encoder:0,2 |" in table


def test_rerun_skips_the_stages_that_are_done(wmt):
    work, _ = wmt
    before = (work / "results.md").stat().st_mtime
    proc = recipe("wmt16_en_de", "--smoke", "--work-dir", work, "--data-dir", work.parent / "data")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done before, skipped") == 8 and " started " not in proc.stdout
    assert (work / "results.md").stat().st_mtime == before


def test_wikitext103_smoke_evaluates_every_token_and_prunes_every_other_layer(wiki):
    work, output = wiki
    assert stages_done(output) == ["data", "tokenize", "preprocess", "train", "eval", "sweep", "table"]
    # fairseq-eval-lm scored as many tokens as the data stage counted (words + one end of line a line)
    counted = {line.split(":")[0]: int(line.split()[1]) for line in lines(work / "logs/data.log") if " tokens (" in line}
    for subset in ("valid", "test"):
        result = json.loads((work / f"eval/{subset}.json").read_text())
        assert result["tokens"] == counted[subset]
        assert result["perplexity"] == pytest.approx(2 ** result["loss_base2"], rel=1e-3)
    scores = json.loads((work / "eval/scores.json").read_text())
    with open(work / "sweep/sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["depth"], row["kept"]) == ("2", "decoder:0,2")
    full = json.loads((work / "eval/valid.json").read_text())["perplexity"]
    assert scores["valid perplexity, full depth"] == full
    table = (work / "results.md").read_text()
    assert f"| test perplexity, full depth | {scores['test perplexity, full depth']:.2f} | 18.3 |" in table


def test_a_failing_stage_stops_the_recipe_naming_the_stage_and_its_log(wiki):
    work, _ = wiki
    os.remove(work / "checkpoints/checkpoint_best.pt")
    proc = recipe("wikitext103", "--smoke", "--work-dir", work, "--data-dir", work.parent / "data",
                  "--stage", "eval", "--force")
    assert proc.returncode == 1
    assert f"stage 'eval' FAILED (exit 1); log: {work}/logs/eval.log" in proc.stderr
    assert "checkpoint_best.pt" in (work / "logs/eval.log").read_text()
    assert " started " in proc.stdout and "stage sweep" not in proc.stdout


def test_cnn_dm_smoke_converts_stories_and_scores_rouge(cnn):
    work, output = cnn
    assert stages_done(output) == ["data", "bpe", "preprocess", "train", "eval", "sweep", "table"]
    assert len(lines(work / "raw/test.source")) == len(lines(work / "raw/test.target")) == 12
    assert lines(work / "raw/test.target")[0].endswith((".", "!", "?", '"'))
    # the references fairseq-generate decodes (SentencePiece, binarized) are exactly the raw summaries
    assert generate_lines(work / "eval/generate.out", "T") == lines(work / "raw/test.target")
    assert len(generate_lines(work / "eval/generate.out", "D")) == 12
    scores = json.loads((work / "eval/scores.json").read_text())
    assert set(scores) == {"ROUGE-1", "ROUGE-2", "ROUGE-L"} and all(0 <= v <= 100 for v in scores.values())
    with open(work / "sweep/sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["kept"] == "encoder:0,1 decoder:0,2"
    table = (work / "results.md").read_text()
    assert f"| ROUGE-2 | {scores['ROUGE-2']:.2f} | 17.9 |" in table and "ROUGE-L F1" in table


def test_a_stage_alone_needs_its_earlier_stages(tmp_path):
    proc = recipe("cnn_dm", "--smoke", "--work-dir", tmp_path, "--stage", "train", env={"FORCE_CPU": "1"})
    assert proc.returncode == 2 and "stage train needs stage data first (run: --stage data)" in proc.stderr
    proc = recipe("cnn_dm", "--smoke", "--work-dir", tmp_path, "--stage", "training", env={"FORCE_CPU": "1"})
    assert proc.returncode == 2 and "--stage training: no such stage" in proc.stderr


def test_help_lists_every_setting_and_keeps_the_papers_batch_on_this_hardware():
    proc = recipe("wmt16_en_de", "--help", env={"FORCE_CPU": "1"})
    assert proc.returncode == 0
    for name in ("ARCH", "LAYERDROP", "MAX_TOKENS", "UPDATE_FREQ", "BEAM", "LENPEN", "SWEEP_DEPTHS"):
        assert f"\n  {name} " in proc.stdout
    # no GPU: one worker does the paper's 8 GPUs x --update-freq 16
    assert "= '128'  (full: '128', smoke: '1')" in proc.stdout
    proc = recipe("wmt16_en_de", "--help", env={"FORCE_CPU": "1", "PAPER_GPUS": "4", "BEAM": "5"})
    assert "= '64'" in proc.stdout and "= '5'  (full: '8', smoke: '2')" in proc.stdout
    proc = recipe("wikitext103", "--help", env={"FORCE_CPU": "1"})
    assert "= '24'" in proc.stdout  # 8 GPUs x --update-freq 3


def test_cnn_dm_data_stage_takes_the_bart_example_files_and_checks_them(tmp_path):
    data = tmp_path / "data" / "cnn_dm"
    data.mkdir(parents=True)
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        (data / f"{split}.source").write_text("".join(f"Article {split} {i}.\n" for i in range(n)))
        (data / f"{split}.target").write_text("".join(f"Summary {split} {i}.\n" for i in range(n)))
    args = ["--smoke", "--data-dir", tmp_path / "data", "--work-dir", tmp_path / "work", "--stage", "data"]
    proc = recipe("cnn_dm", *args, env={"FORCE_CPU": "1"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "work/raw/val.target").read_text() == "Summary val 0.\nSummary val 1.\n"
    (data / "test.target").write_text("Summary test 0.\n")
    proc = recipe("cnn_dm", *args, "--force", env={"FORCE_CPU": "1"})
    assert proc.returncode == 1 and "stage 'data' FAILED" in proc.stderr
    assert "test.source has 2 lines but" in (tmp_path / "work/logs/data.log").read_text()
