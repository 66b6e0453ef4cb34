"""``--bf16`` on a GPU (compat.py, 14): fairseq 0.12 turns it into ``--tpu``; the plugin keeps it on CUDA when
no TPU can be meant. Checked through fairseq-train's own parser and ``distributed_utils.call_main``, with CUDA
and torch_xla's presence stubbed (the real CUDA run is tests/gpu/test_cuda_training.py)."""

import importlib.util

import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils

from fairseq_layerdrop import compat
from tests.helpers import PLUGIN


def train_cfg(*flags):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "data", "--user-dir", PLUGIN, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
        "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "100", *flags])
    return convert_namespace_to_omegaconf(args)


def common_seen_by_main(cfg):
    seen = {}
    distributed_utils.call_main(cfg, lambda c: seen.update(tpu=c.common.tpu, bf16=c.common.bf16,
                                                         dist_tpu=c.distributed_training.tpu))
    return seen


@pytest.fixture
def no_xla(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_xla" else find_spec(name, *a))


def test_fairseq_itself_takes_bf16_for_a_tpu():
    cfg = train_cfg("--bf16")
    assert cfg.common.bf16 and cfg.common.tpu  # what the wrapper exists to undo


def test_bf16_trains_on_cuda_when_a_gpu_is_there_and_torch_xla_is_not(monkeypatch, no_xla):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common_seen_by_main(train_cfg("--bf16")) == {"tpu": False, "bf16": True, "dist_tpu": False}


@pytest.mark.parametrize("cuda, cpu_flag", [(False, []), (True, ["--cpu"])])
def test_bf16_without_a_usable_gpu_is_left_as_fairseq_decides(monkeypatch, no_xla, cuda, cpu_flag):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert common_seen_by_main(train_cfg("--bf16", *cpu_flag))["tpu"] is True


def test_bf16_with_torch_xla_installed_is_left_for_the_tpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = train_cfg("--bf16")
    assert compat.keep_bf16_on_cuda(cfg, xla_installed=True) is False and cfg.common.tpu is True


def test_fp16_and_plain_runs_are_untouched(monkeypatch, no_xla):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common_seen_by_main(train_cfg("--fp16")) == {"tpu": False, "bf16": False, "dist_tpu": False}
    assert compat.keep_bf16_on_cuda(train_cfg()) is False
