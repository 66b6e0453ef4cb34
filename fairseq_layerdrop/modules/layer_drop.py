"""LayerDrop with a reproducible draw (Fan, Grave & Joulin, ICLR 2020, arXiv 1909.11556).

During training each layer of a stack is skipped with probability ``p``; a skipped layer
is never called, so it costs neither forward nor backward compute. In eval mode every
layer runs.

Unlike fairseq's ``LayerDropModuleList``, which draws from the process-global RNG after
dropout has consumed a batch-dependent amount of it, the draw here is a pure function of
``(seed, update number, micro-batch index within the update, stack name)``. Every worker
of a distributed run therefore drops the same layers at the same step, and a run resumed
from a checkpoint repeats the choices of an uninterrupted one.

Usage::

    layers = SeededLayerDropList(layers, p=0.2, seed=1, stack="decoder")
    layers.set_num_updates(update)   # fairseq's trainer does this for every model module
    for layer in layers:             # in training mode, may skip some layers
        x = layer(x)
"""

import hashlib
from typing import Iterable, List

import torch
from fairseq.logging import metrics
from torch import nn


def check_layerdrop_rate(p: float, flag: str) -> float:
    """Return ``p`` if it is a valid LayerDrop rate, else raise naming the command-line flag."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be a number in [0, 1), got {p!r}") from None
    if not 0.0 <= p < 1.0:
        raise ValueError(
            f"{flag} must be in [0, 1) (the probability of skipping each layer), got {p}"
        )
    return p


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


def layer_keep_mask(
    num_layers: int, p: float, seed: int, update: int, micro_batch: int = 0, stack: str = "decoder"
) -> torch.Tensor:
    """Which of ``num_layers`` layers run at this step: a bool tensor, True = keep.

    Each layer is kept independently with probability ``1 - p``. The result depends only on
    the arguments, in any process on any machine with the same torch CPU generator.
    """
    return layer_uniforms(num_layers, seed, update, micro_batch, stack) >= p


class SeededLayerDropList(nn.ModuleList):
    """A ``ModuleList`` whose iteration skips layers by LayerDrop in training mode.

    Args:
        layers: the stack's layers, in order.
        p: probability of skipping each layer at a training step, in [0, 1).
        seed: the run's seed (``--seed``).
        stack: name of the stack ("encoder" or "decoder"); it decorrelates the stacks'
            draws and names the logged count of layers that ran (``enc_layers_ran``,
            ``dec_layers_ran`` in fairseq's training log lines).
    """

    def __init__(self, layers: Iterable[nn.Module], p: float, seed: int, stack: str):
        super().__init__(layers)
        self.p = float(p)
        self.seed = int(seed)
        self.stack = stack
        self.num_updates = 0
        self.micro_batch = 0
        self.last_kept: List[int] = list(range(len(self)))

    def set_num_updates(self, num_updates: int) -> None:
        if num_updates != self.num_updates:
            self.num_updates = num_updates
            self.micro_batch = 0

    def kept_layers(self) -> List[int]:
        """Indices of the layers that run at the current (update, micro-batch) draw."""
        if self.p == 0.0:
            return list(range(len(self)))
        mask = layer_keep_mask(
            len(self), self.p, self.seed, self.num_updates, self.micro_batch, self.stack
        )
        return mask.nonzero().flatten().tolist()

    def __iter__(self):
        layers = list(super().__iter__())
        if not self.training:
            return iter(layers)
        kept = self.kept_layers()
        self.micro_batch += 1
        self.last_kept = kept
        metrics.log_scalar(f"{self.stack[:3]}_layers_ran", len(kept), weight=1, round=2)
        return iter([layers[i] for i in kept])

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}, stack={self.stack!r}"


def attach_layerdrop(stack_module: nn.Module, p: float, seed: int, stack: str) -> None:
    """Replace ``stack_module.layers`` (a fairseq encoder or decoder) by a SeededLayerDropList.

    The layers themselves are kept, so parameter names and checkpoints are unchanged.
    Indexing (not iteration) is used to read fairseq's list, because iterating fairseq's
    own ``LayerDropModuleList`` in training mode would draw from the global RNG.
    """
    old = stack_module.layers
    layers = [old[i] for i in range(len(old))]
    stack_module.layers = SeededLayerDropList(layers, p=p, seed=seed, stack=stack)
