"""LayerDrop with a reproducible draw (Fan, Grave & Joulin, ICLR 2020, arXiv 1909.11556).

During training each layer of a stack is skipped with probability ``p`` (or its own rate,
``drop_schedule``); a skipped layer is never called, so it costs neither forward nor backward
compute. Other structures (sub-layers, heads: ``drop_structure``) yield a partly run layer
instead. In eval mode every layer runs.

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

Iterating the list in training mode is a step: it takes the next micro-batch's draw. Code that
only inspects the layers should index them (``layers[i]``).

Several forward passes of one micro-batch (LR-Drop's two sub-models, ``modules/siamese_passes.py``)
set ``pass_index`` and ``hold_micro_batch``: each pass draws with its own index, and the micro-batch
count advances once, after the last pass. With a ``recorder`` set, iteration yields every slot
(a skipped layer as the identity) wrapped so that the recorder sees the residual stream after it.
In-place depth distillation (``modules/depth_passes.py``) sets ``forced_kept`` instead: that pass runs
exactly those layers, whatever the draw.
"""

import json
from typing import Iterable, List, Optional, Sequence

import torch
from fairseq.logging import metrics
from torch import nn

from .drop_schedule import RateRamp
from .drop_structure import LayerPlan, plan_step
from .seeded_draw import layer_uniforms  # noqa: F401  (re-exported: every drop decision compares these draws)
from .structured_layer import PlannedLayer, check_structured_layer


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


def layer_keep_mask(
    num_layers: int, p: float, seed: int, update: int, micro_batch: int = 0, stack: str = "decoder"
) -> torch.Tensor:
    """Which of ``num_layers`` layers run at this step: a bool tensor, True = keep.

    Each layer is kept independently with probability ``1 - p``. The result depends only on
    the arguments, in any process on any machine with the same torch CPU generator.
    """
    return layer_uniforms(num_layers, seed, update, micro_batch, stack) >= p


class SeededLayerDropList(nn.ModuleList):
    """A ``ModuleList`` whose iteration skips layers (or their blocks) by LayerDrop in training mode.

    Args:
        layers: the stack's layers, in order.
        p: probability of skipping each layer at a training step, in [0, 1).
        seed: the run's seed (``--seed``).
        stack: name of the stack ("encoder" or "decoder"); it decorrelates the stacks'
            draws and names the logged count of layers that ran (``enc_layers_ran``,
            ``dec_layers_ran`` in fairseq's training log lines).
        rates: one rate per layer (``drop_schedule.layer_drop_rates``); default ``p`` for all.
        ramp: the rates' factor over training (``drop_schedule.RateRamp``): at update t each layer's
            rate is ``rates[i] * ramp.factor(t)`` (``current_rates()``); default constant 1.
        structure: what is dropped (``drop_structure.STRUCTURES``); default whole layers.
        draws_log: if set, every training step appends its decisions as a JSON line to
            ``draws_log + ".rank<R>"`` (R = the distributed rank), to check workers and resumes.
    """

    def __init__(self, layers: Iterable[nn.Module], p: float, seed: int, stack: str,
                 rates: Optional[Sequence[float]] = None, structure: str = "layer", draws_log: Optional[str] = None,
                 ramp: Optional[RateRamp] = None):
        super().__init__(layers)
        self.p = float(p)
        self.seed = int(seed)
        self.stack = stack
        self.rates = [float(r) for r in rates] if rates is not None else [self.p] * len(self)
        self.ramp = ramp if ramp is not None else RateRamp()
        self.structure = structure
        self.draws_log = draws_log
        self.num_updates = 0
        self.micro_batch = 0
        self.pass_index = 0  # which forward pass of the micro-batch draws (LR-Drop's sub-models)
        self.hold_micro_batch = False  # True: this iteration is not the micro-batch's last pass
        self.recorder = None  # siamese_passes.PassRecorder while LR-Drop records the passes
        self.forced_kept: Optional[List[int]] = None  # depth distillation: this pass runs exactly these layers
        self.pass_label: Optional[int] = None  # depth distillation: the pass, in the draws log
        self.last_kept: List[int] = list(range(len(self)))
        self.last_plans: List[LayerPlan] = [LayerPlan() for _ in range(len(self))]

    @property
    def skips_parameters(self) -> bool:
        """Whether some parameters get no gradient at some steps (c10d DDP must then find unused ones)."""
        return self.structure != "head" and any(r > 0 for r in self.rates)

    def set_num_updates(self, num_updates: int) -> None:
        if num_updates != self.num_updates:
            self.num_updates = num_updates
            self.micro_batch = 0

    def current_rates(self) -> List[float]:
        """Each layer's drop rate at the current update: ``rates`` times the ramp's factor (a pure function of it)."""
        if self.ramp.constant:
            return list(self.rates)
        factor = self.ramp.factor(self.num_updates)
        return [r * factor for r in self.rates]

    def step_plans(self, pass_index: Optional[int] = None) -> List[LayerPlan]:
        """Every layer's plan at the current (update, micro-batch, pass) draw (default: ``self.pass_index``),
        or the forced sub-network's (``forced_kept``)."""
        if self.forced_kept is not None:
            kept = set(self.forced_kept)
            return [LayerPlan() if i in kept else LayerPlan(attention=False, ffn=False) for i in range(len(self))]
        rates = self.current_rates()
        if not any(r > 0 for r in rates):
            return [LayerPlan() for _ in range(len(self))]
        first = self[0]
        return plan_step(self.structure, rates, self.seed, self.num_updates, self.micro_batch, self.stack,
                         num_heads=first.self_attn.num_heads if len(self) else 0,
                         encoder_attention=getattr(first, "encoder_attn", None) is not None,
                         pass_index=self.pass_index if pass_index is None else pass_index)

    def kept_layers(self) -> List[int]:
        """Indices of the layers that run (at least partly) at the current draw."""
        return [i for i, plan in enumerate(self.step_plans()) if not plan.skipped]

    def __iter__(self):
        layers = list(super().__iter__())
        if not self.training:
            return iter(layers)
        plans = self.step_plans()
        kept = [i for i, plan in enumerate(plans) if not plan.skipped]
        self._log_draw(plans)
        if not self.hold_micro_batch:
            self.micro_batch += 1
        self.last_kept, self.last_plans = kept, plans
        short = self.stack[:3]
        metrics.log_scalar(f"{short}_layers_ran", len(kept), weight=1, round=2)
        if not self.ramp.constant:
            metrics.log_scalar(f"{short}_rate_factor", self.ramp.factor(self.num_updates), weight=1, round=4)
        if self.structure in ("sublayer", "attention", "ffn"):
            metrics.log_scalar(f"{short}_attn_ran", sum(p.attention for p in plans), weight=1, round=2)
            metrics.log_scalar(f"{short}_ffn_ran", sum(p.ffn for p in plans), weight=1, round=2)
        run = [layers[i] if plans[i].full else PlannedLayer(layers[i], plans[i]) for i in range(len(layers))]
        if self.recorder is not None:
            return iter([self.recorder.slot(self.stack, i, layers[i], run[i] if i in kept else None)
                         for i in range(len(layers))])
        return iter([run[i] for i in kept])

    def _log_draw(self, plans: List[LayerPlan]) -> None:
        if not self.draws_log:
            return
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        record = {"update": self.num_updates, "micro_batch": self.micro_batch, "stack": self.stack,
                  "plans": [plan.describe() for plan in plans]}
        if self.recorder is not None:
            record["pass"] = self.recorder.draw_label(self.pass_index)
        elif self.pass_label is not None:
            record["pass"] = self.pass_label
        if not self.ramp.constant:
            record["rate_factor"] = self.ramp.factor(self.num_updates)
        with open(f"{self.draws_log}.rank{rank}", "a") as f:
            f.write(json.dumps(record) + "\n")

    def __repr__(self) -> str:
        # ModuleList's repr iterates the list, which in training mode is a step that draws; fairseq prints
        # the model on rank 0 only, so that would shift rank 0's draws against the other workers'.
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}, stack={self.stack!r}, structure={self.structure!r}"


def attach_layerdrop(stack_module: nn.Module, p: float, seed: int, stack: str, rates: Optional[Sequence[float]] = None,
                     structure: str = "layer", draws_log: Optional[str] = None, ramp: Optional[RateRamp] = None) -> None:
    """Replace ``stack_module.layers`` (a fairseq encoder or decoder) by a SeededLayerDropList.

    The layers themselves are kept, so parameter names and checkpoints are unchanged.
    Indexing (not iteration) is used to read fairseq's list, because iterating fairseq's
    own ``LayerDropModuleList`` in training mode would draw from the global RNG.
    """
    old = stack_module.layers
    layers = [old[i] for i in range(len(old))]
    for layer in layers:
        check_structured_layer(layer, structure)
    stack_module.layers = SeededLayerDropList(layers, p=p, seed=seed, stack=stack, rates=rates,
                                              structure=structure, draws_log=draws_log, ramp=ramp)
