"""scripts/scoring/finetune_results.py on run directories written here: fairseq-train's JSON validation lines, the
epoch the best-checkpoint metric chooses, mean and spread over seeds, and refusals."""

import csv
import json

import pytest

from scripts.scoring import finetune_results
from tests.helpers import run_main


def valid_line(subset, epoch, **values):
    payload = {"epoch": epoch, **{f"{subset}_{k}": str(v) for k, v in values.items()}}
    return f"2026-01-01 00:00:00 | INFO | {subset} | {json.dumps(payload)}\n"


def write_run(root, name, run, lines):
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "run.json").write_text(json.dumps(run))
    (directory / "train.log").write_text("2026-01-01 | INFO | train | {\"epoch\": 1}\n" + "".join(lines))
    return directory


def rte(seed, depth, strategy, accuracies):
    return ({"task": "RTE", "model": "m", "depth": depth, "strategy": strategy, "seed": seed, "metrics": ["accuracy"],
             "select": "accuracy", "maximize": True},
            [valid_line("valid", e, loss=1.0, accuracy=a, num_updates=10 * e) for e, a in enumerate(accuracies, 1)])


def test_scores_are_taken_at_the_chosen_epoch_and_summarized_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    for seed, accuracies in ((1, [60, 70, 65]), (2, [50, 55, 80]), (3, [66, 62, 64])):
        write_run(runs, f"rte/d4_full/seed{seed}", *rte(seed, 4, "full", accuracies))
    write_run(runs, "rte/d2_every-other/seed1", *rte(1, 2, "every-other", [40, 41, 41]))
    # STS-B: selected on the lowest loss, reported as Pearson and Spearman (nan when predictions are constant)
    write_run(runs, "sts/d4_full/seed1",
              {"task": "STS-B", "model": "m", "depth": 4, "strategy": "full", "seed": 1,
               "metrics": ["pearson", "spearman"], "select": "loss", "maximize": False},
              [valid_line("valid", 1, loss=0.9, pearson="nan", spearman="nan"),
               valid_line("valid", 2, loss=0.5, pearson=81.5, spearman=80.0),
               valid_line("valid", 3, loss=0.7, pearson=85.0, spearman=84.0)])
    # MNLI: two dev sets, the epoch chosen on the first
    write_run(runs, "mnli/d4_full/seed1",
              {"task": "MNLI", "model": "m", "depth": 4, "strategy": "full", "seed": 1, "metrics": ["accuracy"],
               "select": "accuracy", "maximize": True, "subsets": {"valid": "MNLI-m", "valid1": "MNLI-mm"}},
              [valid_line("valid", 1, accuracy=70), valid_line("valid1", 1, accuracy=72),
               valid_line("valid", 2, accuracy=75), valid_line("valid1", 2, accuracy=71)])
    proc = run_main(finetune_results.main, runs, "--out", tmp_path / "out", "--title", "GLUE")
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    got = {(r["task"], r["depth"], r["seed"], r["metric"]): (float(r["value"]), int(r["epoch"])) for r in rows}
    assert got[("RTE", "4", "2", "accuracy")] == (80.0, 3)
    assert got[("RTE", "2", "1", "accuracy")] == (41.0, 2)  # the first of equal scores, as fairseq keeps it
    assert got[("STS-B", "4", "1", "pearson")] == (81.5, 2) and got[("STS-B", "4", "1", "spearman")] == (80.0, 2)
    assert got[("MNLI-m", "4", "1", "accuracy")] == (75.0, 2) and got[("MNLI-mm", "4", "1", "accuracy")] == (71.0, 2)
    md = (tmp_path / "out" / "results.md").read_text()
    # RTE at full depth over three seeds: 70, 80, 66 -> mean 72.0, sample std 7.2
    # columns in the order of the run directories (mnli, rte, sts)
    assert "| m | full | 4 | 75.0 | 71.0 | 72.0 ± 7.2 [66.0, 80.0] | 81.5 |" in md
    assert "| m | every-other | 2 |  |  | 41.0 |  |" in md
    assert "RTE (accuracy)" in md and "STS-B (pearson)" in md and md in proc.stdout
    assert (tmp_path / "out" / "results.png").stat().st_size > 5000


def test_a_run_without_validation_or_metric_is_refused_naming_it(tmp_path):
    run, lines = rte(1, 4, "full", [60])
    write_run(tmp_path / "a", "rte", run, [])
    proc = run_main(finetune_results.main, tmp_path / "a", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "no validation of the subset 'valid' (did the run finish?)" in proc.stderr
    write_run(tmp_path / "b", "rte", {**run, "metrics": ["mcc"]}, lines)
    proc = run_main(finetune_results.main, tmp_path / "b", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "no 'mcc' in the validation of 'valid'" in proc.stderr
    proc = run_main(finetune_results.main, tmp_path / "none", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "no run.json below" in proc.stderr


@pytest.mark.parametrize("line", ["not json at all | valid | {oops\n", "2026 | INFO | valid | {\"epoch\": 1, \"valid_accuracy\": \"x\"}\n"])
def test_broken_lines_are_skipped_or_refused(tmp_path, line):
    run, lines = rte(1, 4, "full", [60])
    write_run(tmp_path / "r", "rte", run, [line] + lines)
    proc = run_main(finetune_results.main, tmp_path / "r", "--out", tmp_path / "out", check=False)
    if "oops" in line:
        assert proc.returncode == 0  # not a JSON payload: not a validation line
    else:
        assert proc.returncode == 1 and "the best-checkpoint metric 'accuracy' is missing" in proc.stderr
