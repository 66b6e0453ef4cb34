"""The `gpu` marker: tests that need CUDA. They skip, with the reason, where torch sees no GPU (CI, the
2-core machine); scripts/gpu_check.sh runs them on the GPU machine (docs/gpu.md)."""

import pytest
import torch

from tests.helpers import TRAIN_COMMON

# fairseq-train's common flags with fairseq's default device (CUDA when torch sees one) instead of --cpu
GPU_TRAIN = [flag for flag in TRAIN_COMMON if flag != "--cpu"]
NO_CUDA = "needs CUDA: torch.cuda.is_available() is False here (run scripts/gpu_check.sh on a GPU machine)"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped with the reason where torch sees no GPU")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
