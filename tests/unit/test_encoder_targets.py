"""scripts.scoring.encoder_targets: issue 25's three targets on a hand-made results.csv (means worked out by hand)."""

import csv

import pytest
from scripts.scoring import encoder_targets

FIELDS = ["task", "model", "strategy", "depth", "seed", "metric", "value", "epoch", "updates", "headline", "run"]
LD, BASE, SMALL = "LayerDrop p=0.5", "baseline p=0", "4 layers from scratch"


def write(path, runs):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for model, strategy, depth, test_values in runs:
            for seed, value in enumerate(test_values, 1):
                for subset, v in (("test", value), ("valid", 99.0)):  # valid rows must not be read for --subset test
                    writer.writerow(dict(task=f"wsd, {subset}", model=model, strategy=strategy, depth=depth, seed=seed,
                                         metric="accuracy", value=v, epoch=2, updates=10, headline=True, run=f"seed{seed}"))
                writer.writerow(dict(task="wsd, test", model=model, strategy=strategy, depth=depth, seed=seed,
                                     metric="loss", value=-1000, epoch=2, updates=10, headline=False, run=f"seed{seed}"))


def run(tmp_path, runs, capsys):
    path = tmp_path / "results.csv"
    write(path, runs)
    encoder_targets.main([str(path), "--layerdrop", LD, "--baseline", BASE, "--scratch", SMALL, "--full", "8",
                          "--half", "4", "--out", str(tmp_path / "t.md")])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| wsd")]
    assert (tmp_path / "t.md").read_text().count("| wsd") == 4
    return [(r[2], r[3], r[4].rstrip(" |")) for r in rows]


def test_met_and_missed_targets_from_seed_means(tmp_path, capsys):
    runs = [(LD, "full", 8, [40, 42, 44]),          # mean 42
            (LD, "every-other", 4, [38, 40]),       # mean 39
            (SMALL, "full", 4, [37, 39]),           # mean 38 -> +1.0, met
            (BASE, "full", 8, [44, 44]),            # mean 44 -> LayerDrop -2.0: missed
            (BASE, "top", 4, [40, 39]),             # mean 39.5 -> 39.5 / 44 = 0.898: missed; best strategy
            (BASE, "bottom", 4, [30, 32])]          # mean 31
    assert run(tmp_path, runs, capsys) == [("+1.0", ">= 0", "yes"), ("-0.5", ">= 0", "no"),
                                           ("0.898", ">= 0.90", "no"), ("-2.0", ">= -1", "no")]


def test_the_best_strategy_is_named_and_targets_met(tmp_path, capsys):
    runs = [(LD, "full", 8, [43.5]), (LD, "every-other", 4, [41]), (SMALL, "full", 4, [41]),
            (BASE, "full", 8, [44]), (BASE, "top", 4, [39.6]), (BASE, "symmetric", 4, [40.5])]
    assert run(tmp_path, runs, capsys) == [("+0.0", ">= 0", "yes"), ("+0.5", ">= 0", "yes"),
                                           ("0.900", ">= 0.90", "yes"), ("-0.5", ">= -1", "yes")]
    assert "baseline's best drop (symmetric)" in (tmp_path / "t.md").read_text()


def test_a_missing_model_is_named(tmp_path):
    path = tmp_path / "results.csv"
    write(path, [(LD, "full", 8, [40]), (LD, "every-other", 4, [40]), (BASE, "full", 8, [40]), (BASE, "top", 4, [40])])
    with pytest.raises(SystemExit, match="no runs of '4 layers from scratch', full, depth 4"):
        encoder_targets.main([str(path), "--layerdrop", LD, "--baseline", BASE, "--scratch", SMALL,
                              "--full", "8", "--half", "4"])


def test_without_top_dropping_that_target_is_not_run(tmp_path, capsys):
    runs = [(LD, "full", 8, [40]), (LD, "every-other", 4, [40]), (SMALL, "full", 4, [39]), (BASE, "full", 8, [40]),
            (BASE, "contribution", 4, [41])]
    assert run(tmp_path, runs, capsys) == [("+1.0", ">= 0", "yes"), ("-1.0", ">= 0", "no"),
                                           ("not run", ">= 0.90", "-"), ("+0.0", ">= -1", "yes")]
