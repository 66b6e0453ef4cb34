"""Pruning on CUDA (Fan et al., arXiv 1909.11556): a model trained on the GPU with --fp16 and pruned on load
scores the same perplexity on CUDA as on the CPU, and an exported fairseq checkpoint loads in plain fairseq
on CUDA with the perplexity of pruning on load."""

import os
import re
import subprocess

import pytest

from tests.gpu.conftest import GPU_TRAIN
from tests.helpers import BIN, PLUGIN, fairseq

pytestmark = pytest.mark.gpu
LM = ["--task", "language_modeling", "--tokens-per-sample", "64"]
DIMS = ["--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "4",
        "--decoder-layers", "6"]


def perplexity(data, checkpoint, *args):
    proc = fairseq("fairseq-eval-lm", data, "--path", checkpoint, "--tokens-per-sample", "64", *args)
    log = proc.stdout + proc.stderr
    return float(re.search(r"Perplexity: ([0-9.]+)", log).group(1)), log


@pytest.fixture(scope="module")
def gpu_lm_checkpoint(lm_data, tmp_path_factory):
    """transformer_lm_layerdrop_tiny trained on CUDA with --fp16 and LayerDrop 0.5 for 3 epochs."""
    save_dir = tmp_path_factory.mktemp("gpu_lm")
    fairseq("fairseq-train", lm_data, *GPU_TRAIN, *LM, "--user-dir", PLUGIN, "--save-dir", save_dir, "--fp16",
            "--arch", "transformer_lm_layerdrop_tiny", "--decoder-layerdrop", "0.5", "--max-epoch", "3")
    return save_dir / "checkpoint_last.pt"


def test_pruned_perplexity_on_cuda_equals_the_cpu_one(lm_data, gpu_lm_checkpoint):
    prune = ["--user-dir", PLUGIN, "--task", "language_modeling_layerdrop", "--prune-to", "3"]
    on_cuda, log = perplexity(lm_data, gpu_lm_checkpoint, *prune)
    on_cpu, _ = perplexity(lm_data, gpu_lm_checkpoint, *prune, "--cpu")
    full, _ = perplexity(lm_data, gpu_lm_checkpoint, "--user-dir", PLUGIN)
    assert "pruning the decoder: keeping layers [0, 2, 4] of 6" in log
    assert abs(on_cuda - on_cpu) <= 1e-3 * on_cpu, (on_cuda, on_cpu)
    assert on_cuda != full, "pruning on load should change the perplexity"
    half, _ = perplexity(lm_data, gpu_lm_checkpoint, *prune, "--fp16")
    assert abs(half - on_cpu) <= 2e-2 * on_cpu, (half, on_cpu)


def test_export_of_a_cuda_trained_fairseq_lm_loads_in_plain_fairseq_on_cuda(lm_data, tmp_path):
    fairseq("fairseq-train", lm_data, *GPU_TRAIN, *LM, "--save-dir", tmp_path, "--fp16", "--arch", "transformer_lm",
            *DIMS, "--max-epoch", "2")  # fairseq's own architecture, trained without the plugin
    full = tmp_path / "checkpoint_last.pt"
    subprocess.run([os.path.join(BIN, "fairseq-layerdrop-prune"), full, tmp_path / "small.pt", "--prune-to", "3"],
                   check=True, capture_output=True, text=True)
    on_load, _ = perplexity(lm_data, full, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                            "--prune-to", "3")
    plain, log = perplexity(lm_data, tmp_path / "small.pt")  # no --user-dir: plain fairseq, on CUDA
    assert "--cpu" not in log
    assert plain == on_load
    assert os.path.getsize(tmp_path / "small.pt") < os.path.getsize(full)
