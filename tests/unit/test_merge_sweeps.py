"""`fairseq-layerdrop report` (its main, in process): several depth sweeps into one table and plot, with the
reproduction's targets."""

import csv
import os

from fairseq_layerdrop.cli import report
from tests.helpers import run_main


def write_sweep(path, points):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["depth", "strategy", "kept", "parameters", "quality", "seconds"])
        writer.writeheader()
        for (depth, strategy), quality in points.items():
            writer.writerow({"depth": depth, "strategy": strategy, "kept": "decoder:0", "parameters": 10 * depth,
                             "quality": quality, "seconds": 1})
    return path


def merge(tmp_path, *args):
    return run_main(report.main, "--out", tmp_path / "out", *args, check=False)


def test_lm_targets_are_computed_from_the_every_other_points(tmp_path):
    ld = write_sweep(str(tmp_path / "ld.csv"), {(4, "every-other"): 110.0, (4, "top"): 500.0, (2, "every-other"): 150.0,
                                                (1, "every-other"): 300.0, (4, "bottom"): 400.0})
    # depth 4 is "full" here, 2 is "half"
    base = write_sweep(str(tmp_path / "base.csv"), {(4, "every-other"): 100.0, (2, "every-other"): 350.0,
                                                    (1, "every-other"): 900.0})
    small = write_sweep(str(tmp_path / "small.csv"), {(2, "every-other"): 140.0})
    proc = merge(tmp_path, "--metric", "perplexity", f"LD={ld}", f"base={base}", f"small={small}",
                 "--check-lm", "LD", "base", "small", "--full", "4", "--half", "2")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| LayerDrop pruned 4->2 / its full depth (ppl) | 1.364 | <= 1.15 | no |" in md
    assert "| baseline pruned 4->2 / its full depth (ppl) | 3.500 | >= 3 | yes |" in md
    assert "| LayerDrop pruned to 2 / 2 layers from scratch (ppl) | 1.071 | <= 1 | no |" in md
    assert "| LayerDrop / baseline at full depth (ppl) | 1.100 | <= 1.05 | no |" in md
    assert "| 4 | 110.00 | 500.00 | 400.00 | 100.00 |  |" in md  # a column per model and strategy
    with open(tmp_path / "out" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 9
    assert os.path.getsize(tmp_path / "out" / "results.png") > 10000


def test_a_missing_point_or_label_is_named(tmp_path):
    ld = write_sweep(str(tmp_path / "ld.csv"), {(6, "every-other"): 20.0})
    base = write_sweep(str(tmp_path / "base.csv"), {(6, "every-other"): 22.0, (3, "every-other"): 5.0})
    proc = merge(tmp_path, "--metric", "BLEU", f"LD={ld}", f"base={base}", "--check-mt", "LD", "base",
                 "--full", "6", "--half", "3")
    assert proc.returncode != 0 and "'LD' has no every-other result at depth 3" in proc.stderr
    proc = merge(tmp_path, "--metric", "BLEU", f"LD={ld}", "--check-mt", "LD", "nope", "--full", "6", "--half", "6")
    assert proc.returncode != 0 and "no model labelled 'nope'" in proc.stderr


def test_mt_targets_with_a_zero_bleu_at_full_depth_are_not_met_and_say_why(tmp_path):
    ld = write_sweep(str(tmp_path / "ld.csv"), {(6, "every-other"): 0.0, (3, "every-other"): 0.0})
    base = write_sweep(str(tmp_path / "base.csv"), {(6, "every-other"): 20.0, (3, "every-other"): 5.0})
    proc = merge(tmp_path, "--metric", "BLEU", f"LD={ld}", f"base={base}", "--check-mt", "LD", "base",
                 "--full", "6", "--half", "3")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| LayerDrop pruned 6->3: share of its full BLEU | undefined (0 at full depth) | >= 0.90 | no |" in md
    assert "| baseline pruned 6->3: share of its full BLEU | 0.250 |" in md


def test_lrdrop_targets_compare_with_the_layerdrop_model_and_the_equal_compute_one(tmp_path):
    lr = write_sweep(str(tmp_path / "lr.csv"), {(8, "every-other"): 180.0, (4, "every-other"): 190.0,
                                                (4, "top"): 170.0})
    half = write_sweep(str(tmp_path / "half.csv"), {(8, "every-other"): 205.0, (4, "every-other"): 210.0})
    ld = write_sweep(str(tmp_path / "ld.csv"), {(8, "every-other"): 200.0, (4, "every-other"): 185.0})
    proc = merge(tmp_path, "--metric", "perplexity", f"LR={lr}", f"LD={ld}", f"half={half}",
                 "--check-lrdrop", "LR", "LD", "--equal-compute", "half", "--full", "8", "--half", "4")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| LR-Drop / LayerDrop at full depth, same updates (ppl) | 0.900 | < 1 | yes |" in md
    assert "| LR-Drop, half the updates / LayerDrop at full depth, equal compute (ppl) | 1.025 | < 1 | no |" in md
    assert "| LR-Drop pruned 8->4 / its full depth (ppl) | 1.056 | <= 1.10 | yes |" in md  # every-other, not top
    assert "| LR-Drop / LayerDrop pruned to 4 (ppl) | 1.027 | < 1 | no |" in md
    # with the LM targets in the same report
    proc = merge(tmp_path, "--metric", "perplexity", f"LR={lr}", f"LD={ld}", f"half={half}",
                 "--check-lm", "LD", "half", "half", "--check-lrdrop", "LR", "LD", "--full", "8", "--half", "4")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "LayerDrop pruned 8->4 / its full depth" in md and "LR-Drop pruned 8->4" in md
    assert "equal compute" not in md


def test_lrdrop_check_refusals_are_named(tmp_path):
    lr = write_sweep(str(tmp_path / "lr.csv"), {(8, "every-other"): 180.0})
    proc = merge(tmp_path, "--metric", "perplexity", f"LR={lr}", "--equal-compute", "LR")
    assert proc.returncode == 2 and "--equal-compute names a model of the LR-Drop targets" in proc.stderr
    proc = merge(tmp_path, "--metric", "BLEU", f"LR={lr}", "--check-mt", "LR", "LR", "--check-lrdrop", "LR", "LR",
                 "--full", "8", "--half", "4")
    assert proc.returncode == 2 and "give one of them" in proc.stderr
    proc = merge(tmp_path, "--metric", "perplexity", f"LR={lr}", "--check-lrdrop", "LR", "LR")
    assert proc.returncode == 2 and "need --full and --half" in proc.stderr
