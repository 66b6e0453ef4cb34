"""The user tools refuse a file argument that is not what it should be, an output that cannot be
written, and a flag they would ignore, in one line naming it, before loading or scoring anything."""

import os

import pytest
from tests.helpers import fairseq


def tool(subcommand, *args):
    proc = fairseq("fairseq-layerdrop", subcommand, *args, check=False)
    assert proc.returncode != 0, proc.stdout[-1000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture
def not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    return path


def test_layer_contributions_refuses_bad_files_and_counts(lm_data, lm_checkpoint, not_a_checkpoint, tmp_path):
    assert tool("contributions", lm_checkpoint, lm_data, "--out", tmp_path / "no" / "s.json") == \
        f"fairseq-layerdrop contributions: --out {tmp_path / 'no' / 's.json'}: the directory {tmp_path / 'no'} does not exist; " \
        "create it first"
    assert "--out " in tool("contributions", lm_checkpoint, lm_data, "--out", not_a_checkpoint)
    assert tool("contributions", lm_checkpoint, tmp_path / "nodata").startswith(
        f"fairseq-layerdrop contributions: DATA {tmp_path / 'nodata'} is not a directory")
    assert tool("contributions", lm_checkpoint, lm_data, "--max-batches", "-1") == \
        "fairseq-layerdrop contributions: --max-batches must be 0 (the whole split) or more, got -1"
    assert tool("contributions", not_a_checkpoint, lm_data).startswith(
        f"fairseq-layerdrop contributions: cannot load {not_a_checkpoint} as a fairseq checkpoint")


def test_search_layers_refuses_an_out_that_is_a_file_or_holds_another_result(lm_data, lm_checkpoint, tmp_path):
    (tmp_path / "file").write_text("x")
    assert tool("search", lm_checkpoint, lm_data, "--keep", "2", "--out", tmp_path / "file") == \
        f"fairseq-layerdrop search: --out {tmp_path / 'file'} is a file; give a directory for search.csv and search.json"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text("[1, 2]")
    assert "is not a result with \"stacks\"" in tool("search", lm_checkpoint, lm_data, "--keep", "2",
                                                    "--out", tmp_path / "old")


def test_search_refuses_a_depth_or_a_result_file_that_does_not_fit_the_model_before_scoring(lm_data, lm_checkpoint,
                                                                                             tmp_path):
    # lm_checkpoint has 6 decoder layers; nothing is scored or written for a request that cannot be served
    out = tmp_path / "s"
    assert tool("search", lm_checkpoint, lm_data, "--keep", "5,9", "--out", out) == \
        "fairseq-layerdrop search: --keep must be in 1..6, got 9"
    assert tool("search", lm_checkpoint, lm_data, "--keep", "2", "--budget", "3", "--out", out) == \
        "fairseq-layerdrop search: --budget 3 is too small: C(6,2) = 15 subsets, and a greedy search over removals " \
        "needs 18 evaluations"  # greedy from 6 to 2 layers: 6 + 5 + 4 + 3 candidates
    assert not out.exists()
    out.mkdir()
    (out / "search.json").write_text('{"stacks": {"decoder": {"num_layers": 8, "kept": {"4": [0, 2, 4, 6]}}}}')
    assert tool("search", lm_checkpoint, lm_data, "--keep", "2", "--out", out) == \
        f"fairseq-layerdrop search: --out {out / 'search.json'} holds results for a decoder of 8 layers, not 6: " \
        "give another --out for this checkpoint"
    assert sorted(os.listdir(out)) == ["search.json"]  # no search.csv: refused before the search


def test_depth_sweep_refuses_flags_it_would_ignore_and_files_it_cannot_read(lm_data, lm_checkpoint, not_a_checkpoint,
                                                                              tmp_path):
    assert tool("sweep", lm_checkpoint, lm_data, "--stack", "encoder", "--out", tmp_path / "s") == \
        "fairseq-layerdrop sweep: --stack encoder: this language model has no encoder (its decoder is swept)"
    assert tool("sweep", lm_checkpoint, lm_data, "--metric", "ROUGE-L", "--out", tmp_path / "s") == \
        "fairseq-layerdrop sweep: --metric ROUGE-L scores translations; a language model is scored by perplexity"
    assert tool("sweep", not_a_checkpoint, lm_data, "--out", tmp_path / "s").startswith(
        f"fairseq-layerdrop sweep: {not_a_checkpoint} is not a fairseq checkpoint")
    (tmp_path / "taken").write_text("x")
    assert tool("sweep", lm_checkpoint, lm_data, "--out", tmp_path / "taken") == \
        f"fairseq-layerdrop sweep: --out {tmp_path / 'taken'} is a file; give a directory for sweep.csv, sweep.md, sweep.png"
    assert tool("sweep", lm_checkpoint, lm_data, "--strategies", "every-other,top:foo", "--out", tmp_path / "s") == \
        "fairseq-layerdrop sweep: --strategies top:foo: 'top' takes no ':foo'; give --strategies top"
    assert not (tmp_path / "s").exists()


def test_average_checkpoints_refuses_an_ignored_flag_and_a_wrong_file_and_keeps_the_user_dir_mark(
    lm_checkpoint, not_a_checkpoint, tmp_path
):
    import torch

    import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold)
    from fairseq_layerdrop.compat import LoadWithUserDirMark

    assert tool("average", "--inputs", lm_checkpoint, lm_checkpoint, "--num-epoch-checkpoints", "2",
                "--output", tmp_path / "avg.pt").startswith(
        "fairseq-layerdrop average: --num-epoch-checkpoints reads a directory")
    assert tool("average", "--inputs", lm_checkpoint, not_a_checkpoint, "--output",
                tmp_path / "avg.pt").startswith(
        f"fairseq-layerdrop average: {not_a_checkpoint} is not a fairseq checkpoint")
    fairseq("fairseq-layerdrop", "average", "--inputs", lm_checkpoint, lm_checkpoint, "--output", tmp_path / "avg.pt")
    averaged, original = (torch.load(p, weights_only=True)["model"] for p in (tmp_path / "avg.pt", lm_checkpoint))
    assert isinstance(getattr(averaged, "load_with_user_dir", None), LoadWithUserDirMark)  # plain fairseq says --user-dir
    assert all(torch.equal(averaged[k], original[k]) for k in original)  # the mean of two copies is the copy
    assert sorted(os.listdir(tmp_path)) == ["avg.pt", "notes.pt"]


# Issue 23: the same refusals for a data directory that is not the checkpoint's and an output below a file, in
# process through the dispatcher the console script calls (each refusal comes before any scoring).

REMEDY = "give the binarized data directory the checkpoint was trained on (fairseq-preprocess --destdir)"


def refused(*argv):
    """The one line ``fairseq-layerdrop ARGV`` ends with, run in process; it must end in a refusal, not a traceback."""
    from fairseq_layerdrop.cli import main as dispatcher
    from tests.helpers import run_main

    proc = run_main(dispatcher.main, *argv, check=False)  # an exception would fail the test with its traceback
    assert proc.returncode == 1, (proc.stdout[-1000:], proc.stderr[-1000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def scoring_tools(checkpoint, data, tmp_path, *extra):
    """The three tools that read DATA, each with an output it would write in tmp_path."""
    return {"sweep": ["sweep", checkpoint, data, "--out", tmp_path / "sweep_out", *extra],
            "search": ["search", checkpoint, data, "--keep", "2", "--out", tmp_path / "search_out", *extra],
            "contributions": ["contributions", checkpoint, data, "--out", tmp_path / "scores.json", *extra]}


def test_data_that_is_not_the_checkpoints_is_refused_naming_it_and_nothing_is_written(
    lm_data, translation_data, lm_checkpoint, mt_checkpoint, tmp_path
):
    import shutil

    import torch

    empty = tmp_path / "empty"
    empty.mkdir()
    other_vocabulary = tmp_path / "other_vocabulary"
    shutil.copytree(lm_data, other_vocabulary)
    with open(other_vocabulary / "dict.txt", "a") as f:
        f.write("unseenword 1\n")
    state = torch.load(lm_checkpoint, map_location="cpu", weights_only=True)
    rows = state["model"]["decoder.embed_tokens.weight"].shape[0]

    def lm_without_dict(data, holds):
        return f"DATA {data} has no dict.txt, which a language model (task language_modeling) reads: {holds}; {REMEDY}"

    def mt_without_pair(data, holds):
        return (f"DATA {data} has no SPLIT.SRC-TGT.* files to take the language pair of a translation model "
                f"(task translation) from: {holds}; {REMEDY}")

    cases = [
        (lm_checkpoint, empty, [], lm_without_dict(empty, "it holds no fairseq-preprocess output")),
        (lm_checkpoint, translation_data, [], lm_without_dict(
            translation_data, "it holds translation data (src-tgt: dict.src.txt, dict.tgt.txt)")),
        (mt_checkpoint, empty, [], mt_without_pair(empty, "it holds no fairseq-preprocess output")),
        (mt_checkpoint, lm_data, [], mt_without_pair(
            lm_data, "it holds language-model data (dict.txt, no SPLIT.SRC-TGT.* files)")),
        # one more dictionary line than the checkpoint's embedding rows (dict.txt + fairseq's 4 special symbols)
        (lm_checkpoint, other_vocabulary, [], f"DATA {other_vocabulary}: its dict.txt makes a vocabulary of {rows + 1} "
                                             f"symbols, but the checkpoint's embeddings have {rows}: not the data "
                                             f"this model was trained on; {REMEDY}"),
        (lm_checkpoint, lm_data, ["--subset", "nosuch"], f"--subset nosuch: DATA {lm_data} has no nosuch split "
                                                         "(nosuch.idx and nosuch.bin)"),
        (mt_checkpoint, translation_data, ["--subset", "nosuch"],
         f"--subset nosuch: DATA {translation_data} has no nosuch split of src-tgt (nosuch.src-tgt.src.idx and .bin)"),
    ]
    for checkpoint, data, extra, message in cases:
        for tool, argv in scoring_tools(checkpoint, data, tmp_path, *extra).items():
            assert refused(*argv) == f"fairseq-layerdrop {tool}: {message}", (tool, data, extra)
    assert sorted(os.listdir(tmp_path)) == ["empty", "other_vocabulary"]  # no --out of any tool


def test_an_output_below_a_file_is_refused_naming_that_file(lm_data, lm_checkpoint, tmp_path):
    blocker = tmp_path / "notes"
    blocker.write_text("a file, not a directory\n")
    below = blocker / "sub"
    assert refused("prune", lm_checkpoint, below / "small.pt", "--prune-to", "2") == \
        f"error: cannot write {below / 'small.pt'}: {blocker} is a file, not a directory"
    assert refused("average", "--inputs", lm_checkpoint, lm_checkpoint, "--output", below / "avg.pt") == \
        f"fairseq-layerdrop average: --output {below / 'avg.pt'}: {blocker} is a file, not a directory"
    assert refused("contributions", lm_checkpoint, lm_data, "--out", below / "s.json") == \
        f"fairseq-layerdrop contributions: --out {below / 's.json'}: {blocker} is a file, not a directory"
    assert refused("search", lm_checkpoint, lm_data, "--keep", "2", "--out", below) == \
        f"fairseq-layerdrop search: --out {below}: {blocker} is a file, not a directory"
    assert refused("sweep", lm_checkpoint, lm_data, "--out", below) == \
        f"fairseq-layerdrop sweep: --out {below}: {blocker} is a file, not a directory"
    assert sorted(os.listdir(tmp_path)) == ["notes"] and blocker.read_text() == "a file, not a directory\n"


def test_a_failed_sweep_says_why_in_one_line_and_leaves_no_out_directory(lm_data, lm_checkpoint, tmp_path):
    out = tmp_path / "sweep"
    # fairseq-eval-lm's own refusal, not its config and traceback
    message = refused("sweep", lm_checkpoint, lm_data, "--out", out, "--depths", "2", "--strategies", "top",
                      "--fairseq-args", "--tokens-per-sample 64 --no-such-flag")
    assert message.startswith("fairseq-layerdrop sweep: fairseq-eval-lm failed: fairseq-eval-lm: error: unrecognized "
                              "arguments: --no-such-flag (nothing was written; to see its whole log, run: ")
    assert not out.exists()
    # fairseq-eval-lm's default --tokens-per-sample (1024) exceeds this model's positions (64): it evaluates no
    # token and reports perplexity 1.00, which the sweep refuses rather than tabulates
    assert refused("sweep", lm_checkpoint, lm_data, "--out", out, "--depths", "2", "--strategies", "top") == (
        "fairseq-layerdrop sweep: fairseq-eval-lm evaluated 0 tokens of valid (it skips blocks longer than the "
        "model's positions; its --tokens-per-sample is 1024 unless given): pass --fairseq-args \"--tokens-per-sample "
        "N\" with the N the model was trained with; nothing was written")
    assert not out.exists()


def test_a_sweeps_metric_column_lets_report_refuse_another_metric(lm_data, lm_checkpoint, tmp_path, monkeypatch):
    import csv

    from fairseq_layerdrop.cli import sweep
    from fairseq_layerdrop.cli import main as dispatcher
    from tests.helpers import run_main

    # the scoring stubbed (it is fairseq-eval-lm's, tested elsewhere): perplexity 100 + 10 per removed layer
    monkeypatch.setattr(sweep, "evaluate_lm", lambda checkpoint, data, keep_args, args: 100.0 + 10 * (
        6 - len(keep_args[1].split(","))))
    run_main(dispatcher.main, "sweep", lm_checkpoint, lm_data, "--out", tmp_path / "s", "--depths", "3,6",
             "--strategies", "top,every-other")
    with open(tmp_path / "s" / "sweep.csv", newline="") as f:
        rows = [(r["depth"], r["strategy"], r["quality"], r["metric"]) for r in csv.DictReader(f)]
    assert rows == [("3", "top", "130.0", "perplexity"), ("3", "every-other", "130.0", "perplexity"),
                    ("6", "top", "100.0", "perplexity"), ("6", "every-other", "100.0", "perplexity")]
    assert refused("report", "--out", tmp_path / "r", "--metric", "BLEU", f"LM={tmp_path / 's' / 'sweep.csv'}") == (
        f"fairseq-layerdrop report: --metric BLEU, but {tmp_path / 's' / 'sweep.csv'} (LM) holds perplexity scores; "
        "give --metric perplexity, or sweeps of BLEU")
    assert not (tmp_path / "r").exists()
