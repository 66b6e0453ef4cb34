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
