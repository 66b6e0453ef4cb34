"""The seeded uniform draws behind every drop decision (LayerDrop, Fan et al., arXiv 1909.11556).

A draw is a pure function of ``(seed, update, micro-batch, name)``, never of the process-global
RNG, so every worker of a distributed run makes the same decisions and a resumed run repeats them.
"""

import hashlib

import torch


def _draw_seed(seed: int, update: int, micro_batch: int, stack: str) -> int:
    key = f"{int(seed)}:{int(update)}:{int(micro_batch)}:{stack}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def layer_uniforms(
    num_layers: int, seed: int, update: int, micro_batch: int = 0, stack: str = "decoder"
) -> torch.Tensor:
    """``num_layers`` uniform draws in [0, 1) for this step, a pure function of the arguments.

    Every drop decision of a step (fixed rate, per-layer rates, learned rates) compares these
    draws with a rate, so all of them share the reproducibility of the draw.
    """
    generator = torch.Generator().manual_seed(_draw_seed(seed, update, micro_batch, stack))
    return torch.rand(num_layers, generator=generator)
