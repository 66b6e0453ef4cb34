"""fairseq-train on CUDA with the plugin: LayerDrop with --fp16 and --bf16, every --layerdrop-structure, and
the learned gates with their criterion (Fan et al., arXiv 1909.11556): finite, falling losses, and the logged
counts of what ran show that layers were skipped."""

import math

import pytest

from tests.gpu.conftest import GPU_TRAIN
from tests.helpers import PLUGIN, fairseq, json_logs

pytestmark = pytest.mark.gpu
LM = ["--task", "language_modeling", "--tokens-per-sample", "64", "--arch", "transformer_lm_layerdrop_tiny"]
STRUCTURES = ["layer", "sublayer", "attention", "ffn", "head", "head+layer"]


def train(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *GPU_TRAIN, "--user-dir", PLUGIN, "--save-dir", save_dir, *args)
    log = proc.stdout + proc.stderr
    assert "CUDA enviroments for all 1 workers" in log, "fairseq-train did not train on CUDA:\n" + log[-3000:]
    return log


def assert_learns(log, drop=0.3):
    epochs = [e["train_loss"] for e in json_logs(log, "train")]
    assert all(math.isfinite(x) for x in epochs) and len(epochs) >= 2, epochs
    assert epochs[-1] < epochs[0] - drop, epochs


@pytest.mark.parametrize("precision", ["--fp16", "--bf16"])
def test_layerdrop_trains_on_cuda_in_half_precision(lm_data, tmp_path, precision):
    log = train(lm_data, tmp_path, *LM, precision, "--decoder-layerdrop", "0.5", "--max-epoch", "4")
    assert_learns(log)
    inner = json_logs(log, "train_inner")
    ran = [r["dec_layers_ran"] for r in inner]
    mean = sum(ran) / len(ran)  # 6 layers kept with probability 0.5 each: mean 3, sd 1.22 per update
    assert abs(mean - 3) < 4 * 1.22 / len(ran) ** 0.5 + 0.05, (mean, ran)
    assert all(math.isfinite(r["loss"]) for r in inner)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_structure_trains_on_cuda_with_fp16(translation_data, tmp_path, structure):
    log = train(translation_data, tmp_path, "--arch", "transformer_layerdrop_tiny", "--fp16",
                "--layerdrop-structure", structure, "--encoder-layerdrop", "0.5", "--decoder-layerdrop", "0.5",
                "--max-epoch", "3")
    assert_learns(log, drop=0.2)
    inner = json_logs(log, "train_inner")
    counts = {k for r in inner for k in r if k.endswith("_ran")}
    assert counts, f"no count of what ran is logged for {structure}: {sorted(inner[-1])}"
    full = {k: max(r[k] for r in inner if k in r) for k in counts}
    skipped = any(sum(r[k] for r in inner if k in r) < full[k] * len(inner) for k in counts)
    # "head" drops attention heads inside layers that all run: its logged counts stay full
    assert skipped == (structure != "head"), (structure, full)


def test_gates_train_with_their_criterion_on_cuda(lm_data, tmp_path):
    log = train(lm_data, tmp_path, *LM, "--fp16", "--decoder-layerdrop", "0.5", "--layer-gates",
                "--criterion", "gated_cross_entropy", "--max-epoch", "4")
    assert_learns(log)
    last = json_logs(log, "train")[-1]
    keep = [v for k, v in last.items() if "_keep_" in k]
    assert len(keep) == 6 and all(0 < v <= 1 for v in keep), last
    assert abs(sum(keep) / len(keep) - 0.5) < 0.02, keep  # the gates keep the budget: mean keep rate 1 - p
