"""Learned per-layer drop rates: the data-driven pruning of Fan, Grave & Joulin (arXiv 1909.11556, Sec. 4).

Each layer d of a stack gets one learned drop logit g_d (a parameter stored with the layer, key
``decoder.layers.D.layerdrop_gate``, so pruning a checkpoint renumbers the gates with their
layers). The drop rates are a softmax over the stack, scaled so that their mean is the stack's
target rate p (``--decoder-layerdrop P``)::

    p_d = N * p * softmax(g)_d,   capped at MAX_RATE, the excess given to the uncapped layers

so the expected number of kept layers is N * (1 - p) exactly, at every step, whatever the logits.
(The paper also mentions computing p_d from the layer's activations; these gates are static per
layer, so that the kept set at inference is a fixed top-k and the draw stays a pure function of
the step, see ``layer_uniforms``.)

Training draws the step's seeded uniforms u_d and runs layer d iff u_d >= p_d; a dropped layer
does not run. A dropped layer has no pathwise gradient, so the gates learn by the score function
(REINFORCE): the list records log P(mask) = sum_d log(p_d if dropped else 1 - p_d), and the
gating criterion (``criterions/layer_gate_loss.py``) adds (loss - baseline) * log P(mask). It costs
no extra forward, is unbiased, and leaves the network untouched: in eval mode every layer runs
unscaled, so the full-depth model is exactly the plain model. Top-k by learned keep probability
1 - p_d (equivalently by logit) gives the kept layers at inference (``--prune-strategy learned``).
"""

from typing import List, Optional

import torch
from torch import nn

from .drop_structure import LayerPlan, plan_step
from .layer_drop import SeededLayerDropList

GATE_PARAMETER = "layerdrop_gate"
MAX_RATE = 0.95  # no layer is dropped more often than this, so every layer keeps getting trained


def gated_drop_rates(logits: torch.Tensor, p: float, max_rate: float = MAX_RATE) -> torch.Tensor:
    """Per-layer drop rates N * p * softmax(logits), capped at ``max_rate``, with mean exactly ``p``.

    Capping a rate frees budget; it is handed to the uncapped layers in proportion to their
    softmax weights (repeated until no rate exceeds the cap), so the mean stays ``p``.
    Differentiable in ``logits``.
    """
    if not 0.0 <= p <= max_rate:
        raise ValueError(f"a gated stack's drop rate must be in [0, {max_rate}], got {p}")
    weights = torch.softmax(logits, dim=0)
    budget = len(logits) * p
    capped = torch.zeros_like(weights, dtype=torch.bool)
    for _ in range(len(logits)):
        free_budget = budget - max_rate * capped.sum()
        free_weight = weights.masked_fill(capped, 0.0)
        rates = torch.where(capped, torch.full_like(weights, max_rate),
                            free_budget * free_weight / free_weight.sum().clamp_min(1e-12))
        over = rates > max_rate
        if not over.any():
            break
        capped = capped | over
    return rates


class GatedLayerDropList(SeededLayerDropList):
    """A seeded LayerDrop list whose per-layer rates are learned (see the module docstring).

    ``p`` is the mean drop rate; ``drop_rates()`` gives the current per-layer rates and
    ``keep_probabilities()`` their complements. After each training iteration,
    ``take_log_prob()`` returns (once) log P(the sampled mask), for the gating criterion.
    """

    def __init__(self, layers, p: float, seed: int, stack: str, draws_log: Optional[str] = None):
        super().__init__(layers, p=p, seed=seed, stack=stack, draws_log=draws_log)
        for layer in nn.ModuleList.__iter__(self):  # plain iteration: no draw
            if not hasattr(layer, GATE_PARAMETER):
                layer.register_parameter(GATE_PARAMETER, nn.Parameter(torch.zeros(())))
        self._log_prob: Optional[torch.Tensor] = None

    def logits(self) -> torch.Tensor:
        return torch.stack([getattr(layer, GATE_PARAMETER) for layer in nn.ModuleList.__iter__(self)])

    def drop_rates(self) -> torch.Tensor:
        return gated_drop_rates(self.logits(), self.p)

    def keep_probabilities(self) -> torch.Tensor:
        return 1.0 - self.drop_rates()

    def step_plans(self) -> List[LayerPlan]:
        """Whole-layer plans drawn against the learned rates; records log P(mask) for the criterion."""
        rates = self.drop_rates()
        plans = plan_step("layer", rates.detach().tolist(), self.seed, self.num_updates, self.micro_batch, self.stack)
        keep = torch.tensor([not plan.skipped for plan in plans])
        self._log_prob = torch.where(keep, torch.log1p(-rates), torch.log(rates.clamp_min(1e-12))).sum()
        return plans

    def take_log_prob(self) -> Optional[torch.Tensor]:
        """log P(mask) of the last training draw (None if there was none since the last call)."""
        log_prob, self._log_prob = self._log_prob, None
        return log_prob

    def extra_repr(self) -> str:
        return super().extra_repr() + ", learned rates"


def attach_layer_gates(stack_module: nn.Module, flag: str) -> None:
    """Turn a stack's ``SeededLayerDropList`` (see ``attach_layerdrop``) into a ``GatedLayerDropList``.

    ``flag`` names the stack's rate option for the error raised when the rate is 0 (nothing to learn).
    """
    old = stack_module.layers
    if not isinstance(old, SeededLayerDropList):
        raise TypeError("attach_layer_gates needs a stack prepared by attach_layerdrop")
    if old.structure != "layer":
        raise ValueError(f"--layer-gates learns whole-layer rates: use --layerdrop-structure layer, "
                         f"not {old.structure!r}")
    if any(abs(rate - old.p) > 1e-12 for rate in old.rates):
        raise ValueError(f"--layer-gates learns how to spread {flag} over the layers itself: drop the rate "
                         f"schedule, per-layer rates and protected layers of this stack")
    if not 0.0 < old.p <= MAX_RATE:
        raise ValueError(f"--layer-gates learns how to spread {flag} over the layers: give {flag} in (0, {MAX_RATE}]"
                         f", got {old.p}")
    layers = [old[i] for i in range(len(old))]
    stack_module.layers = GatedLayerDropList(layers, p=old.p, seed=old.seed, stack=old.stack, draws_log=old.draws_log)


def gated_stacks(model: nn.Module) -> List[GatedLayerDropList]:
    """The model's gated layer lists, encoder first."""
    return [m for m in model.modules() if isinstance(m, GatedLayerDropList)]


def add_layer_gates(model: nn.Module, flags) -> None:
    """``--layer-gates``: gate every stack of ``model`` whose LayerDrop rate is above 0.

    ``flags`` maps each stack name ("encoder", "decoder") to its rate flag, for error messages.
    """
    stacks = {name: getattr(model, name) for name in flags if hasattr(model, name)}
    dropping = [name for name, stack in stacks.items() if getattr(stack.layers, "p", 0.0) > 0.0]
    if not dropping:
        raise ValueError(f"--layer-gates learns how to spread the LayerDrop rate over the layers: give "
                         f"{' or '.join(flags[name] for name in stacks)} above 0")
    for name in dropping:
        attach_layer_gates(stacks[name], flags[name])


def configured_criterion(args):
    """The ``--criterion`` of a model's config, or None where the config does not say."""
    try:
        name = getattr(args, "criterion", None)
    except Exception:  # an omegaconf interpolation with no root to resolve it against
        return None
    return name if isinstance(name, str) and not name.startswith("${") else None


def trains_layer_gates(criterion: str) -> bool:
    """Whether the registered fairseq criterion ``criterion`` trains learned layer gates."""
    from fairseq.criterions import CRITERION_REGISTRY

    return bool(getattr(CRITERION_REGISTRY.get(criterion), "trains_layer_gates", False))


def check_gated_training(args) -> None:
    """Refuse, when training starts, gates nothing trains and a gated criterion with nothing to train.

    Without a gated criterion the gates get no gradient at all: every logit stays 0 and
    ``--prune-strategy learned`` would keep the first layers (the ``top`` strategy) without a word.
    """
    criterion = configured_criterion(args)
    if criterion is None:
        return
    gates = bool(getattr(args, "layer_gates", False))
    if gates and not trains_layer_gates(criterion):
        raise ValueError(
            f"--layer-gates learns each layer's drop rate, but --criterion {criterion} does not train the gates: "
            "they would stay at their initial value and --prune-strategy learned would have nothing to go by. "
            "Use --criterion gated_cross_entropy (or gated_label_smoothed_cross_entropy), or drop --layer-gates"
        )
    if not gates and trains_layer_gates(criterion):
        plain = criterion[len("gated_"):] if criterion.startswith("gated_") else "cross_entropy"
        raise ValueError(f"--criterion {criterion} trains learned layer gates: add --layer-gates (with a LayerDrop "
                         f"rate above 0), or use --criterion {plain}")
