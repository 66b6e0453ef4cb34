"""transformer_lm_layerdrop through fairseq-train / fairseq-eval-lm with --user-dir."""

import re

import pytest
from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq, json_logs

LM = ["--task", "language_modeling", "--tokens-per-sample", "64"]
DIMS = [
    "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "4",
    "--decoder-layers", "6", "--decoder-input-dim", "64", "--decoder-output-dim", "64",
]


def train(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *TRAIN_COMMON, *LM, "--save-dir", save_dir, *args)
    return proc.stdout + proc.stderr


def perplexity(data, checkpoint, *args):
    proc = fairseq("fairseq-eval-lm", data, "--path", checkpoint, "--cpu", "--tokens-per-sample", "64", *args)
    return float(re.search(r"Perplexity: ([0-9.]+)", proc.stdout + proc.stderr).group(1))


def test_lm_learns_with_layerdrop_and_eval_lm_runs_every_layer(lm_data, tmp_path):
    log = train(lm_data, tmp_path, "--user-dir", PLUGIN, "--arch", "transformer_lm_layerdrop_tiny",
                "--decoder-layerdrop", "0.5", "--max-epoch", "4")
    epochs = json_logs(log, "train")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.3, [e["train_loss"] for e in epochs]
    ran = [r["dec_layers_ran"] for r in json_logs(log, "train_inner")]
    mean = sum(ran) / len(ran)
    assert abs(mean - 3) < 4 * 1.22 / len(ran) ** 0.5 + 0.05, (mean, ran)
    ppl = perplexity(lm_data, tmp_path / "checkpoint_last.pt", "--user-dir", PLUGIN)
    assert ppl < 2 ** epochs[0]["train_loss"]


def test_zero_rate_computes_exactly_what_fairseq_transformer_lm_computes(lm_data, tmp_path):
    ours = train(lm_data, tmp_path / "ours", "--user-dir", PLUGIN, "--arch", "transformer_lm_layerdrop",
                 "--decoder-layerdrop", "0", *DIMS, "--max-epoch", "1")
    theirs = train(lm_data, tmp_path / "fairseq", "--arch", "transformer_lm", *DIMS, "--max-epoch", "1")
    losses = lambda log: [r["loss"] for r in json_logs(log, "train_inner")]  # noqa: E731
    assert losses(ours) == losses(theirs) and len(losses(ours)) >= 4
    assert perplexity(lm_data, tmp_path / "ours/checkpoint_last.pt", "--user-dir", PLUGIN) == \
        perplexity(lm_data, tmp_path / "fairseq/checkpoint_last.pt")


@pytest.mark.parametrize("value", ["1", "2.5", "-1"])
def test_lm_rate_outside_unit_interval_is_refused_at_start(lm_data, tmp_path, value):
    proc = fairseq("fairseq-train", lm_data, *TRAIN_COMMON, *LM, "--save-dir", tmp_path, "--user-dir", PLUGIN,
                   "--arch", "transformer_lm_layerdrop_tiny", "--decoder-layerdrop", value, check=False)
    assert proc.returncode != 0
    assert "--decoder-layerdrop must be in [0, 1)" in proc.stderr, proc.stderr[-2000:]
