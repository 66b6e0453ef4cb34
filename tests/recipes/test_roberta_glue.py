"""recipes/roberta_glue.sh: its help and refusals; the fine-tuning commands it gives fairseq-train (recorded by a
stand-in, after a real data stage on a GLUE sample) carry fairseq's published settings per task; and (slow) the
--smoke run end to end: a tiny RoBERTa trained, pruned, fine-tuned on three tasks, reported, and a rerun that skips."""

import csv
import os
import stat
import subprocess
import sys

import pytest
import torch
from tests.helpers import ROOT

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes fairseq checkpoints hold, for torch.load)
from scripts.data import recipe_samples

RECORDER = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$RECORD_DIR/$(basename "$0").$(date +%s%N)"
if [[ $(basename "$0") == fairseq-layerdrop && $1 == prune ]]; then touch "$3"; fi
"""


def recipe(*args, **env):
    return subprocess.run(["bash", os.path.join(ROOT, "recipes", "roberta_glue.sh"), *map(str, args)],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "FORCE_CPU": "1", **env})


def test_help_lists_the_settings_and_mistakes_are_refused_before_any_work(tmp_path):
    proc = recipe("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("CHECKPOINT", "ARCH", "DEPTHS", "STRATEGIES", "TASKS", "SEEDS", "ENCODER_JSON", "VOCAB_BPE", "DICT",
                 "UPDATES_FROM"):
        assert f"\n  {name} " in proc.stdout
    assert "Stages, in order (each is skipped when WORK_DIR/done/STAGE exists): data prune finetune report" in proc.stdout
    work = tmp_path / "work"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    for env, message in (({}, "set CHECKPOINT to the RoBERTa checkpoint"),
                         ({"CHECKPOINT": str(tmp_path / "nope.pt")}, "nope.pt: no such file"),
                         ({"CHECKPOINT": str(checkpoint), "TASKS": "RTE,WNLI"}, "TASKS: no GLUE task 'WNLI'"),
                         ({"CHECKPOINT": str(checkpoint), "BATCH_SIZE": "8"}, "set UPDATES_FROM=data too"),
                         ({"CHECKPOINT": str(checkpoint), "SEEDS": "1,x"}, "SEEDS: 'x' is not a number")):
        proc = recipe("--work-dir", work, **env)
        assert proc.returncode == 2 and message in proc.stderr, (env, proc.stderr)
    assert not work.exists()


def recorded(directory, command):
    calls = []
    for path in sorted(directory.glob(command + ".*")):
        calls.append(path.read_text().split("\0")[:-1])
    return calls


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_finetuning_runs_carry_the_published_settings(tmp_path):
    data = recipe_samples.write_glue(str(tmp_path / "glue"))
    bin_dir, record = tmp_path / "bin_stub", tmp_path / "calls"
    bin_dir.mkdir()
    record.mkdir()
    for name in ("fairseq-train", "fairseq-layerdrop"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(stat.S_IRWXU)
    checkpoint = tmp_path / "roberta.base" / "model.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"stand-in")
    proc = recipe("--data-dir", data, "--work-dir", tmp_path / "work", "--stage", "data,prune,finetune",
                  CHECKPOINT=str(checkpoint), LAYERS="12", TASKS="RTE,STS-B,MNLI", STRATEGIES="every-other,top",
                  FAIRSEQ_BIN=str(bin_dir), RECORD_DIR=str(record), WORKERS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RTE: train 48, valid 16, test 8" in proc.stdout  # the data stage ran for real
    prunes = recorded(record, "fairseq-layerdrop")
    assert sorted(call[3:] for call in prunes) == [["--encoder-prune-to", "6", "--prune-strategy", s]
                                                   for s in ("every-other", "top")]
    assert {call[1] for call in prunes} == {str(checkpoint)}
    runs = recorded(record, "fairseq-train")
    # per task: the full depth once, and depth 6 with each strategy
    assert len(runs) == 3 * 3
    by = {(call[0].rsplit("/", 1)[1], flag(call, "--encoder-layers"), flag(call, "--restore-file")): call for call in runs}
    work = tmp_path / "work"
    rte = by[("RTE-bin", "12", str(checkpoint))]
    assert (flag(rte, "--lr"), flag(rte, "--batch-size"), flag(rte, "--total-num-update"), flag(rte, "--warmup-updates"),
            flag(rte, "--max-epoch"), flag(rte, "--num-classes")) == ("2e-5", "16", "2036", "122", "10", "2")
    for name, value in (("--arch", "roberta_base"), ("--task", "sentence_prediction"), ("--max-positions", "512"),
                        ("--init-token", "0"), ("--separator-token", "2"), ("--adam-betas", "(0.9, 0.98)"),
                        ("--adam-eps", "1e-06"), ("--weight-decay", "0.1"), ("--dropout", "0.1"),
                        ("--attention-dropout", "0.1"), ("--clip-norm", "0.0"), ("--lr-scheduler", "polynomial_decay"),
                        ("--best-checkpoint-metric", "accuracy"), ("--max-tokens", "4400"), ("--encoder-layerdrop", "0")):
        assert flag(rte, name) == value, name
    for name in ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--find-unused-parameters",
                 "--maximize-best-checkpoint-metric", "--cpu", "--no-save"):
        assert name in rte
    assert ("RTE-bin", "6", str(work / "pruned" / "d6_top.pt")) in by
    sts = by[("STS-B-bin", "6", str(work / "pruned" / "d6_every-other.pt"))]
    assert "--regression-target" in sts and "--report-pearson-and-spearman" in sts
    assert flag(sts, "--num-classes") == "1" and flag(sts, "--best-checkpoint-metric") == "loss"
    assert "--maximize-best-checkpoint-metric" not in sts and flag(sts, "--lr") == "2e-5"
    assert (flag(sts, "--total-num-update"), flag(sts, "--warmup-updates")) == ("3598", "214")
    mnli = by[("MNLI-bin", "12", str(checkpoint))]
    assert flag(mnli, "--valid-subset") == "valid,valid1" and flag(mnli, "--num-classes") == "3"
    assert (flag(mnli, "--lr"), flag(mnli, "--batch-size"), flag(mnli, "--total-num-update")) == ("1e-5", "32", "123873")
    assert (work / "finetune/MNLI/d12_full/seed1/run.json").is_file()
    assert (work / "finetune/RTE/d6_top/seed1/done").is_file()


@pytest.mark.slow  # about a minute: a tiny RoBERTa pre-trained, pruned and fine-tuned 6 times
def test_smoke_run_trains_prunes_finetunes_reports_and_resumes(tmp_path):
    proc = recipe("--smoke", "--work-dir", tmp_path, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pruned = torch.load(tmp_path / "pruned" / "d2_every-other.pt", map_location="cpu", weights_only=True)["model"]
    full = torch.load(tmp_path / "pretrained" / "checkpoint_last.pt", map_location="cpu", weights_only=True)["model"]
    key = "encoder.sentence_encoder.layers.{}.fc1.weight"
    assert key.format(1) in pruned and key.format(2) not in pruned
    assert torch.equal(pruned[key.format(1)], full[key.format(2)])  # every other layer: 0 and 2 of 4
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    headline = {(r["task"], r["depth"], r["strategy"]): float(r["value"]) for r in rows if r["headline"] == "True"}
    assert set(headline) == {(t, d, s) for t in ("CoLA", "STS-B", "MNLI-m", "MNLI-mm")
                             for d, s in (("4", "full"), ("2", "every-other"))}
    assert {r["metric"] for r in rows if r["task"] == "CoLA"} == {"mcc", "accuracy"}
    assert all(-100 <= v <= 100 for v in headline.values())
    assert "| tiny roberta | every-other | 2 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 5000
    again = recipe("--smoke", "--work-dir", tmp_path, OMP_NUM_THREADS="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("fine-tuned (skipping)") == 6 and again.stdout.count("binarized already") == 3
    assert "pruned already" in again.stdout and "training a tiny RoBERTa" not in again.stdout
