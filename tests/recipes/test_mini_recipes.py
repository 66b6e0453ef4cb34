"""recipes/mini_lm.sh and recipes/mini_mt.sh end to end with --smoke (tiny models, a few updates, two
depths): every stage runs through fairseq's commands, the merged table, targets and plot come out, and a
rerun skips what is finished. The old environment interface (OUT=DIR) is checked by the budget refusal."""

import csv
import os
import re
import subprocess
import sys

import pytest
import torch
from tests.helpers import ROOT

import fairseq_layerdrop  # noqa: F401  (allow-lists plugin checkpoint classes for torch.load)
from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER
from fairseq_layerdrop.pruning import kept_layers

GERMAN = ["Der Hund", "Die Katze", "Mein Vater", "Unsere Lehrerin", "Das Kind", "Ein Nachbar", "Der Arzt", "Sie"]
ENGLISH = ["The dog", "The cat", "My father", "Our teacher", "The child", "A neighbour", "The doctor", "She"]
VERBS = [("sieht", "sees"), ("sucht", "looks for"), ("malt", "paints"), ("findet", "finds"), ("kennt", "knows")]
OBJECTS = [("den Garten", "the garden"), ("das Haus", "the house"), ("einen Baum", "a tree"), ("die Stadt", "the town"),
           ("den Fluss", "the river"), ("ein Boot", "a boat"), ("die Schule", "the school"),
           ("den Berg", "the mountain")]


def ding_sample(path):
    """A dictionary file in the trans-de-en format: each line a headword plus example sentences."""
    lines = ["# Version :: smoke test"]
    for i, (de_s, en_s) in enumerate(zip(GERMAN, ENGLISH)):
        for j, (de_v, en_v) in enumerate(VERBS):
            examples = [(f"{de_s} {de_v} {de_o}.", f"{en_s} {en_v} {en_o}.") for de_o, en_o in OBJECTS]
            lines.append(f"Wort{i}{j} {{n}} | " + " | ".join(d for d, _ in examples)
                         + f" :: word{i}{j} | " + " | ".join(e for _, e in examples))
    path.write_text("\n".join(lines) + "\n")
    return path


def recipe(name, out, **env):
    return subprocess.run(["bash", os.path.join(ROOT, "recipes", name), "--smoke", "--work-dir", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable, **env})


DISTILL_LABELS = ("depth distillation", "depth distillation, equal compute", "depth distillation, attached, equal compute",
                  "depth distillation, KL only", "depth distillation, KL only, equal compute",
                  "depth distillation, sub-network at half weight", "depth distillation, sub-network at quarter weight",
                  "depth distillation, half weight, menu 2,4,6")


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def results(path):
    return {(r["model"], r["strategy"], int(r["depth"])): float(r["quality"]) for r in rows(path)}


@pytest.mark.slow
def test_mini_lm_smoke_trains_searches_sweeps_merges_and_resumes(tmp_path):
    """Slow (15 trainings, 3 searches, 15 sweeps, then a rerun): run with --run-slow."""
    proc = recipe("mini_lm.sh", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = results(tmp_path / "results.csv")
    eight = [("LayerDrop p=0.5", s) for s in ("every-other", "search")] + \
        [("baseline p=0", s) for s in ("every-other", "search")] + \
        [("LayerDrop p=0.5, gates", s) for s in ("learned", "every-other")] + \
        [("LR-Drop p=0.5", s) for s in ("every-other", "search")] + [("LR-Drop p=0.5, half updates", "every-other")] + \
        [("LayerDrop p=0.5, early-exit loss", s) for s in ("every-other", "top")] + \
        [(label, "every-other") for label in DISTILL_LABELS]
    assert set(got) == {(m, s, d) for m, s in eight for d in (8, 4)} | {("4 layers from scratch", "every-other", 4)}
    assert all(1 < ppl < 20000 for ppl in got.values()), got  # PTB's vocabulary is 10k words
    md = (tmp_path / "results.md").read_text()
    ratio = got[("LayerDrop p=0.5", "every-other", 4)] / got[("LayerDrop p=0.5", "every-other", 8)]
    assert f"| LayerDrop pruned 8->4 / its full depth (ppl) | {ratio:.3f} |" in md
    assert (tmp_path / "results.png").stat().st_size > 10000
    assert "dec_layers_ran" in (tmp_path / "layerdrop" / "train.log").read_text()
    lr_ratio = got[("LR-Drop p=0.5", "every-other", 8)] / got[("LayerDrop p=0.5", "every-other", 8)]
    assert f"| LR-Drop / LayerDrop at full depth, same updates (ppl) | {lr_ratio:.3f} |" in md
    assert "LR-Drop, half the updates / LayerDrop at full depth, equal compute" in md
    d_ratio = got[("depth distillation", "every-other", 8)] / got[("baseline p=0", "every-other", 8)]
    assert f"| depth distillation / baseline p=0 at full depth (ppl) | {d_ratio:.3f} |" in md
    # the distillation models train with their criterion, the _eq ones for 2/3 of the updates
    assert "dd_kl" in (tmp_path / "distill" / "train.log").read_text()
    assert [(tmp_path / n / "done").read_text().strip() for n in ("distill", "distill_eq")] == ["6", "4"]
    # the variants train with their own weights and menu (fairseq logs its whole configuration)
    wanted = {"distill_light": ("1,2,3,4,5,6,7", 0.5), "distill_quarter": ("1,2,3,4,5,6,7", 0.25),
              "distill_menu": ("2,4,6", 0.5), "distill": ("1,2,3,4,5,6,7", 1.0)}
    for name, (menu, weight) in wanted.items():
        log = (tmp_path / name / "train.log").read_text()
        assert f"'depth_menu': '{menu}'" in log, name
        assert f"'depth_distill_kl_weight': {weight}" in log and f"'depth_distill_label_weight': {weight}" in log, name
    # the LR-Drop models train with the chosen weights, lrdrop_half for half the updates; early_exit with its loss
    lrdrop_log = (tmp_path / "lrdrop" / "train.log").read_text()
    assert "lrd_output" in lrdrop_log and "lrd_hidden" in lrdrop_log and "lrd_attention" in lrdrop_log
    assert [(tmp_path / n / "done").read_text().strip() for n in ("lrdrop", "lrdrop_half")] == ["6", "3"]
    assert "num_updates 3 " in (tmp_path / "lrdrop_half" / "train.log").read_text()
    assert "exit_1" in (tmp_path / "early_exit" / "train.log").read_text()
    top = {r["depth"]: r["kept"] for r in rows(tmp_path / "sweep_early_exit" / "sweep.csv") if r["strategy"] == "top"}
    assert top == {"8": "decoder:0,1,2,3,4,5,6,7", "4": "decoder:0,1,2,3"}  # early exit at E: the first E layers

    # the search column keeps the candidate with the best validation perplexity, scored exhaustively
    for name in ("layerdrop", "baseline", "lrdrop"):
        candidates = [r for r in rows(tmp_path / f"search_{name}" / "search.csv") if int(r["keep"]) == 4]
        assert len(candidates) == 70  # C(8, 4)
        best = min(candidates, key=lambda r: float(r["perplexity"]))
        swept = {r["strategy"]: r["kept"] for r in rows(tmp_path / f"sweep_{name}" / "sweep.csv") if r["depth"] == "4"}
        assert swept["search"] == "decoder:" + best["kept"], (swept, best)
    # the learned column keeps the gated model's 4 layers with the highest learned keep probability
    gated = torch.load(tmp_path / "gated" / "checkpoint_best.pt", map_location="cpu", weights_only=True)["model"]
    logits = [gated[f"decoder.layers.{i}.{GATE_PARAMETER}"].item() for i in range(8)]
    swept = {r["strategy"]: r["kept"] for r in rows(tmp_path / "sweep_gated" / "sweep.csv") if r["depth"] == "4"}
    assert swept["learned"] == "decoder:" + ",".join(map(str, kept_layers("learned", 8, 4, state_dict=gated))), logits

    log_size = (tmp_path / "baseline" / "train.log").stat().st_size
    again = recipe("mini_lm.sh", tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("trained (skipping)") == 15 and again.stdout.count("swept (skipping)") == 15
    assert again.stdout.count("searched (skipping)") == 3
    assert (tmp_path / "baseline" / "train.log").stat().st_size == log_size


@pytest.mark.slow
def test_mini_mt_smoke_trains_sweeps_and_scores_bleu(tmp_path):
    """Slow (minutes: 5 models, with the continuation): run with --run-slow."""
    dictionary = ding_sample(tmp_path / "de-en")
    proc = recipe("mini_mt.sh", tmp_path / "out", DICTIONARY=str(dictionary))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "320 sentence pairs" in proc.stdout and "dictionary phrase pairs after the sentences" in proc.stdout
    got = results(tmp_path / "out" / "results_both" / "results.csv")
    labels = ("LayerDrop p=0.5", "baseline p=0", "depth distillation", "depth distillation, equal compute")
    assert set(got) == {(m, "every-other", d) for m in labels for d in (6, 3)} | {("3 layers from scratch", "every-other", 3)}
    assert all(0 <= bleu <= 100 for bleu in got.values())
    md = (tmp_path / "out" / "results_both" / "results.md").read_text()
    assert "LayerDrop pruned 6->3: share of its full BLEU" in md
    assert "depth distillation pruned 6->3 / 3 layers from scratch (BLEU, other / depth distillation)" in md
    assert "depth distillation, equal compute pruned 6->3 / 3 layers from scratch" in md
    # equal compute: 2/3 of the budget (the smoke's 6 updates)
    assert "num_updates 4 " in (tmp_path / "out" / "distill_eq" / "train.log").read_text()
    draws = (tmp_path / "out" / "distill" / "train.log").read_text()
    assert "depth_distillation_label_smoothed_cross_entropy" in draws and "1:1,2:2,3:3,4:4,5:5" in draws
    assert (tmp_path / "out" / "results_both" / "results.png").stat().st_size > 10000

    # a larger budget continues both trainings from their checkpoints and redoes the sweeps
    more = recipe("mini_mt.sh", tmp_path / "out", DICTIONARY=str(dictionary), SMOKE_UPDATES="9")
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert "trained (skipping)" not in more.stdout and "swept (skipping)" not in more.stdout
    for name, first, then in (("layerdrop", 6, 9), ("baseline", 6, 9), ("scratch3", 6, 9), ("distill", 6, 9),
                              ("distill_eq", 4, 6)):
        log = (tmp_path / "out" / name / "train.log").read_text()
        assert f"num_updates {first} " in log and f"num_updates {then} " in log, name
        assert log.count("Loaded checkpoint") == 1, name
        assert (tmp_path / "out" / name / "done").read_text().strip() == str(then)
    again = recipe("mini_mt.sh", tmp_path / "out", DICTIONARY=str(dictionary), SMOKE_UPDATES="9")
    # every model once, and its sweeps: both stacks (scratch3: both only; the smoke's STACKS is both)
    assert again.stdout.count("trained (skipping): 9 updates") == 4 and again.stdout.count("swept (skipping)") == 5
    assert again.stdout.count("trained (skipping): 6 updates") == 1


@pytest.mark.parametrize("name", ["mini_lm.sh", "mini_mt.sh"])
def test_a_budget_that_is_not_a_positive_number_is_refused_before_any_work(tmp_path, name):
    proc = subprocess.run(["bash", os.path.join(ROOT, "recipes", name)], capture_output=True, text=True,
                          env={**os.environ, "UPDATES": "3k", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable})
    assert proc.returncode == 2 and "UPDATES must be a positive number of updates, got '3k'" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["mini_lm.sh", "mini_mt.sh"])
def test_smoke_1_in_the_environment_is_smoke_and_another_value_is_refused(tmp_path, name):
    def help_with(smoke, *args):
        return subprocess.run(["bash", os.path.join(ROOT, "recipes", name), *args, "--help"], capture_output=True,
                              text=True, env={**os.environ, "PYTHON": sys.executable, "SMOKE": smoke})
    smoke, plain, flag = help_with("1"), help_with("0"), help_with("0", "--smoke")
    assert smoke.returncode == plain.returncode == flag.returncode == 0, smoke.stderr[-2000:]
    in_force = re.compile(r"^  UPDATES .*\n\s+= '(\d+)'", re.M)
    assert in_force.search(smoke.stdout).group(1) == in_force.search(flag.stdout).group(1)  # the --smoke budget
    assert int(in_force.search(smoke.stdout).group(1)) < int(in_force.search(plain.stdout).group(1))
    refused = help_with("yes")
    assert refused.returncode == 2 and "SMOKE must be 0 or 1 (or pass --smoke), got 'yes'" in refused.stderr


def test_mini_lm_model_names_select_models_and_an_unknown_name_is_refused_before_any_work(tmp_path):
    proc = recipe("mini_lm.sh", tmp_path / "out", MODEL_NAMES="layerdrop,lrdorp")
    assert proc.returncode == 2
    assert "MODEL_NAMES: no model 'lrdorp'; models: layerdrop baseline scratch4 gated lrdrop lrdrop_half early_exit" \
        in proc.stderr
    assert not (tmp_path / "out").exists()
    proc = subprocess.run(["bash", os.path.join(ROOT, "recipes", "mini_lm.sh"), "--help"], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable, "MODEL_NAMES": "lrdrop_half,layerdrop"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "models: lrdrop_half layerdrop (MODEL_NAMES)" in proc.stdout and "LRDROP_WEIGHTS" in proc.stdout
    proc = recipe("mini_lm.sh", tmp_path / "out", LRDROP_WEIGHTS="1 0.1")
    assert proc.returncode == 2 and "LRDROP_WEIGHTS must be three weights (output hidden attention), got '1 0.1'" \
        in proc.stderr
