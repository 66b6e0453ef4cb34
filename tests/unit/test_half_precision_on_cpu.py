"""``--fp16`` (and ``--bf16`` without torch_xla) cannot train on the CPU: the plugin refuses them when fairseq-train
starts (compat.py, 14), naming the flag, where fairseq would stop with a traceback after reading the data. Checked
through fairseq-train's parser and ``distributed_utils.call_main``, with CUDA and torch_xla stubbed; the command
itself: tests/integration/test_half_precision_on_cpu.py."""

import copy
import functools
import importlib.util

import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils
from fairseq_cli import train as fairseq_train
from fairseq_cli import validate as fairseq_validate

from fairseq_layerdrop import compat
from tests.helpers import PLUGIN

FP16 = ("--fp16 cannot train on the CPU ({where}): fairseq's FP16 optimizer keeps the fp32 copy of the weights on "
        "CUDA, and would stop with 'Torch not compiled with CUDA enabled' after reading the data. Drop --fp16 to "
        "train in fp32 on the CPU, or train on a GPU")
BF16 = ("--bf16 cannot train on the CPU ({where}): fairseq 0.12 trains bfloat16 on a TPU (torch_xla, not installed), "
        "and this plugin on CUDA. Drop --bf16 to train in fp32 on the CPU, or train on a GPU")


def train_cfg(*flags):
    return copy.deepcopy(_parsed(*flags))  # call_main may change it (compat.keep_bf16_on_cuda)


@functools.lru_cache(maxsize=None)
def _parsed(*flags):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "data", "--user-dir", PLUGIN, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
        "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "100", *flags])
    return convert_namespace_to_omegaconf(args)


def refusal(cfg):
    with pytest.raises(ValueError) as refused:
        distributed_utils.call_main(cfg, fairseq_train.main)  # refused before fairseq-train's main runs
    return str(refused.value)


@pytest.fixture
def no_xla(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_xla" else find_spec(name, *a))


@pytest.mark.parametrize("cuda", [False, True])
def test_fp16_and_bf16_training_on_the_cpu_is_refused_naming_the_flag(monkeypatch, no_xla, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert refusal(train_cfg("--fp16", "--cpu")) == FP16.format(where="--cpu is given")
    assert refusal(train_cfg("--bf16", "--cpu")) == BF16.format(where="--cpu is given")


def test_without_a_gpu_the_flags_are_refused_without_cpu_too(monkeypatch, no_xla):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert refusal(train_cfg("--fp16")) == FP16.format(where="torch sees no GPU")
    assert refusal(train_cfg("--bf16")) == BF16.format(where="torch sees no GPU")


def test_what_can_run_is_left_alone(monkeypatch, no_xla):
    refuse = compat.refuse_half_precision_training_on_cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert refuse(train_cfg("--fp16"), fairseq_train.main) is None  # a GPU
    assert refuse(train_cfg("--bf16"), fairseq_train.main) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert refuse(train_cfg("--memory-efficient-fp16", "--cpu"), fairseq_train.main) is None  # trains on the CPU
    assert refuse(train_cfg("--fp16", "--cpu"), fairseq_validate.main) is None  # no optimizer: runs on the CPU
    assert refuse(train_cfg("--cpu"), fairseq_train.main) is None
    assert refuse(train_cfg("--bf16", "--cpu"), fairseq_train.main, xla_installed=True) is None  # a TPU is meant
