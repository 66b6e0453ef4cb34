"""recipes/mini_bert.sh: its help and refusals, and (slow) the --smoke run end to end: PTB and a WordNet sample,
three masked-LM encoders pre-trained, pruned (every-other, and by layer contribution), fine-tuned on both tasks,
reported; a rerun skips everything, and a larger budget redoes the pruning and fine-tuning of what it continues."""

import csv
import json
import os
import subprocess
import sys

import pytest
from tests.helpers import ROOT


def recipe(*args, **env):
    return subprocess.run(["bash", os.path.join(ROOT, "recipes", "mini_bert.sh"), *map(str, args)],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "FORCE_CPU": "1", **env})


def test_help_lists_the_settings_and_mistakes_are_refused_before_any_work(tmp_path):
    proc = recipe("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("UPDATES", "BASELINE_STRATEGIES", "SEEDS", "FT_TRAIN", "FT_LR", "GLOSSES", "WORDNET", "MODEL_NAMES"):
        assert f"\n  {name} " in proc.stdout
    assert "data train prune finetune report" in proc.stdout
    smoke = recipe("--help", "--smoke")
    assert "= 'every-other,contribution'  (full: 'top,bottom,symmetric,every-other,contribution'" in smoke.stdout
    work = tmp_path / "work"
    for env, message in (({"SEEDS": "1,two"}, "SEEDS: 'two' is not a number"),
                         ({"BASELINE_STRATEGIES": "top,middle"}, "BASELINE_STRATEGIES: no strategy 'middle'"),
                         ({"MODEL_NAMES": "layerdrop,bert"}, "MODEL_NAMES: no model 'bert'"),
                         ({"UPDATES": "3k"}, "UPDATES must be a positive number")):
        proc = recipe("--work-dir", work, **env)
        assert proc.returncode == 2 and message in proc.stderr, (env, proc.stderr)
    assert not work.exists()


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # minutes: 3 pre-trainings, 3 exports and a layer scoring, 12 fine-tunings, then reruns
def test_smoke_run_pretrains_prunes_finetunes_reports_and_resumes(tmp_path):
    proc = recipe("--smoke", "--work-dir", tmp_path, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = {(r["model"], r["strategy"], r["depth"], r["task"]): float(r["value"]) for r in rows(tmp_path / "results.csv")}
    configurations = {("LayerDrop p=0.5", "full", "8"), ("LayerDrop p=0.5", "every-other", "4"),
                      ("baseline p=0", "full", "8"), ("baseline p=0", "every-other", "4"),
                      ("baseline p=0", "contribution", "4"), ("4 layers from scratch", "full", "4")}
    tasks = {f"{t}, {s}" for t in ("supersense", "definition_match") for s in ("valid", "test")}
    assert set(got) == {c + (t,) for c in configurations for t in tasks}
    assert all(0 <= v <= 100 for v in got.values())
    assert (tmp_path / "results.png").stat().st_size > 5000
    # the targets checked on the test means: four rows per task; the smoke run has no top-dropping
    targets = [line for line in (tmp_path / "targets.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert sorted(line.split(" | ")[0][2:] for line in targets) == ["definition_match"] * 4 + ["supersense"] * 4
    assert sum("| not run | >= 0.90 | - |" in line for line in targets) == 2
    # the contribution strategy kept the 4 layers that changed their input most (scored on the pre-training valid set)
    scores = json.loads((tmp_path / "ft/baseline/contributions.json").read_text())["stacks"]["encoder"]["scores"]
    top = sorted(sorted(range(8), key=lambda i: -scores[i])[:4])
    log = (tmp_path / "ft/baseline/pruned/d4_contribution.pt.log").read_text()
    assert f"encoder: kept layers {','.join(map(str, top))}" in log, (scores, log)
    # each model pre-trained with its own LayerDrop rate (roberta_layerdrop's default 0.2 is never used)
    assert "encoder_layerdrop=0.5" in (tmp_path / "layerdrop/train.log").read_text()
    assert "encoder_layerdrop=0.0" in (tmp_path / "baseline/train.log").read_text()

    again = recipe("--smoke", "--work-dir", tmp_path, OMP_NUM_THREADS="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("trained (skipping)") == 3 and again.stdout.count("fine-tuned (skipping)") == 12
    assert again.stdout.count("already") >= 3  # data, and the pruned checkpoints

    # a larger budget continues scratch4 and redoes its fine-tuning (and nothing of the others)
    more = recipe("--smoke", "--work-dir", tmp_path, OMP_NUM_THREADS="1", SMOKE_UPDATES="9", MODEL_NAMES="scratch4")
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert "fine-tuned (skipping)" not in more.stdout
    assert (tmp_path / "ft/scratch4/pretrained_updates").read_text().strip() == "9"
    assert (tmp_path / "ft/baseline/pretrained_updates").read_text().strip() == "6"
