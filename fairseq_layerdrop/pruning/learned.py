"""``--prune-strategy learned``: keep the R layers with the highest learned keep probability.

The data-driven pruning of Fan et al. (arXiv 1909.11556): a model trained with ``--layer-gates``
(``modules/layer_gates.py``) stores one gate logit per layer in its checkpoint
(``decoder.layers.D.layerdrop_gate``, a drop logit); a layer's keep probability 1 - p_d falls
as its logit rises, so the R lowest logits are the top R by keep probability (ties, e.g. at the
rate cap, go to the lower logit, then the lower index). The kept layers run in their original order.
"""

from typing import List

import torch

from ..modules.layer_gates import GATE_PARAMETER, gated_drop_rates
from .state_dict import PruningError, config_get
from .strategies import register_strategy


def gate_logits(state_dict, stack: str, num_layers: int) -> torch.Tensor:
    """The learned gate logits of ``stack`` in a model state dict; a clear error if it has none."""
    keys = [f"{stack}.layers.{i}.{GATE_PARAMETER}" for i in range(num_layers)]
    missing = [k for k in keys if k not in state_dict]
    if len(missing) == num_layers:
        raise PruningError(f"--prune-strategy learned: the checkpoint's {stack} has no learned layer gates "
                           "(train it with --layer-gates and a gated criterion)")
    if missing:
        raise PruningError(f"--prune-strategy learned: the checkpoint's {stack} lacks gates {missing}")
    return torch.stack([state_dict[k].detach().float().reshape(()) for k in keys])


def learned_keep_probabilities(state_dict, cfg, stack: str, num_layers: int) -> torch.Tensor:
    """Per-layer keep probabilities 1 - p_d of a gated checkpoint, from its logits and its rate flag."""
    p = config_get(cfg, f"{stack}_layerdrop")
    if p is None:
        p = config_get(config_get(cfg, stack), "layerdrop")
    return 1.0 - gated_drop_rates(gate_logits(state_dict, stack, num_layers), float(p))


@register_strategy("learned", needs=("state_dict",))
def learned(num_layers: int, keep: int, stack: str = "decoder", state_dict=None, **context) -> List[int]:
    """The ``keep`` layers with the highest learned keep probability (Fan et al. data-driven pruning)."""
    logits = gate_logits(state_dict, stack, num_layers).tolist()
    if keep < num_layers and len(set(logits)) == 1:
        raise PruningError(
            f"--prune-strategy learned: every gate of the checkpoint's {stack} still has its initial value "
            f"{logits[0]}, so the gates never learned (was it trained with --layer-gates but a plain --criterion, "
            "or --gate-weight 0?). Retrain with --criterion gated_cross_entropy (or "
            "gated_label_smoothed_cross_entropy), or choose another --prune-strategy (every-other, top, ...)"
        )
    ranked = sorted(range(num_layers), key=lambda i: (logits[i], i))
    return sorted(ranked[:keep])
