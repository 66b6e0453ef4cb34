"""The seeded uniform draws behind every drop decision (LayerDrop, Fan et al., arXiv 1909.11556).

A draw is a pure function of ``(seed, update, micro-batch, name, pass)``, never of the process-global
RNG, so every worker of a distributed run makes the same decisions and a resumed run repeats them.
``pass_index`` numbers the forward passes of one micro-batch (LR-Drop runs two, each with its own
draw, ``criterions/lr_drop_loss.py``); pass 0 is the draw of plain training.
"""

import hashlib

import torch


def _draw_seed(seed: int, update: int, micro_batch: int, stack: str, pass_index: int = 0) -> int:
    key = f"{int(seed)}:{int(update)}:{int(micro_batch)}:{stack}"
    if pass_index:
        key += f":pass{int(pass_index)}"
    key = key.encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def layer_uniforms(
    num_layers: int, seed: int, update: int, micro_batch: int = 0, stack: str = "decoder", pass_index: int = 0
) -> torch.Tensor:
    """``num_layers`` uniform draws in [0, 1) for this step, a pure function of the arguments.

    Every drop decision of a step (fixed rate, per-layer rates, learned rates) compares these
    draws with a rate, so all of them share the reproducibility of the draw.
    """
    generator = torch.Generator().manual_seed(_draw_seed(seed, update, micro_batch, stack, pass_index))
    return torch.rand(num_layers, generator=generator)
