"""Per-exit weights of the early-exit loss, and LayerSkip's curricula (Elhoushi et al., ACL 2024, arXiv 2404.16710).

LayerSkip trains one output head (the decoder's final layer norm and the shared output projection) after
every decoder layer l = 0..L-1 and sums the exits' cross-entropies with normalized weights that grow with
depth. We use the ``sum_l`` scale of the authors' training code (torchtune ``modules/early_exit_loss.py``),
written as a closed form over the full depth:

    e(l)     = e_scale * (l + 1)(l + 2) / 2     for an intermediate exit, l < L - 1   (= e_scale * sum_{i=1}^{l+1} i)
    e(L - 1) = L (L + 1) / 2                    for the final layer (never scaled)
    w(t, l)  = C(t, l) e(l) / sum_i C(t, i) e(i)

C(t, l) is 1 when exit l is on at update t, else 0; the final layer is always on, so the weights sum to 1,
and ``e_scale = 0`` gives the final layer weight 1: plain cross-entropy. An exit is off when the curriculum
switches it off, or when LayerDrop skipped its layer at that step (see ``criterions/early_exit_loss.py``).
Unlike torchtune, e(l) does not depend on which other exits are on. Curricula, functions of the update
number t alone (so a resumed run repeats them):

- ``rotational`` with interval R: exit l is on iff ``(l - t) mod R == 0`` (every R-th exit, shifted by one
  layer per update, so each exit is on once every R updates);
- ``gradual`` over T updates: exit l is on iff ``t (L - 1) >= T (L - 1 - l)``, i.e. from update
  T (L - 1 - l) / (L - 1) on: the exits switch on from the top down, the lowest at update T.

    exit_weights(4, [0, 1, 2], 1.0)    # e = [1, 3, 6, 10] -> [0.05, 0.15, 0.3, 0.5]
"""

from typing import List, Sequence

CURRICULA = ("none", "rotational", "gradual")
ROTATION_INTERVAL = 2  # default R of the rotational curriculum
# The largest e_scale. The final layer's share of the loss is 1 / (1 + e_scale (L - 1) / 3) with every exit
# on: at 1e6 it is still above float32's resolution (2^-24 of the total) for up to about 50 layers; LayerSkip
# uses scales of about 0.1 to 1. Near 1e308 the unnormalized weights overflow to inf (the loss is then NaN).
MAX_SCALE = 1e6


def exit_scale(layer: int, num_layers: int, e_scale: float) -> float:
    """e(l), the unnormalized weight of the exit after layer ``layer`` (0-based) of ``num_layers``."""
    if layer == num_layers - 1:
        return num_layers * (num_layers + 1) / 2
    return e_scale * (layer + 1) * (layer + 2) / 2


def exit_weights(num_layers: int, exits: Sequence[int], e_scale: float) -> List[float]:
    """Normalized weights of the intermediate ``exits`` (0-based layers below the top) followed by the final layer's.

    The returned list has ``len(exits) + 1`` entries summing to 1; the last one is the final layer's.
    """
    raw = [exit_scale(layer, num_layers, e_scale) for layer in exits] + [exit_scale(num_layers - 1, num_layers, e_scale)]
    total = sum(raw)
    return [r / total for r in raw]


def exit_enabled(layer: int, num_layers: int, update: int, curriculum: str = "none",
                 rotation_interval: int = 1, gradual_updates: int = 0) -> bool:
    """C(t, l): whether the curriculum switches on the exit after layer ``layer`` at update ``update``."""
    if layer >= num_layers - 1 or curriculum == "none":
        return True
    if curriculum == "rotational":
        return (layer - update) % rotation_interval == 0
    if curriculum == "gradual":
        return update * (num_layers - 1) >= gradual_updates * (num_layers - 1 - layer)
    raise ValueError(f"--early-exit-curriculum must be one of {', '.join(CURRICULA)}, got {curriculum!r}")


def check_early_exit_options(e_scale, curriculum, rotation_interval=None, gradual_updates=None):
    """Refuse bad early-exit options, naming the flag; return ``(rotation_interval, gradual_updates)`` resolved
    (rotational defaults to R = ROTATION_INTERVAL)."""
    if isinstance(e_scale, bool) or not isinstance(e_scale, (int, float)) or not 0.0 <= e_scale < float("inf"):
        raise ValueError(f"--early-exit-scale must be a number, 0 or more (0: plain cross-entropy), got {e_scale!r}")
    if e_scale > MAX_SCALE:
        raise ValueError(f"--early-exit-scale must be at most {MAX_SCALE:g}, got {e_scale!r}: the final layer's share "
                         "of the loss is 1 / (1 + e_scale (L - 1) / 3), which above that falls toward float32's "
                         "precision (a deep model then stops training its final layer), and near 1e308 the weights "
                         "overflow")
    if curriculum not in CURRICULA:
        raise ValueError(f"--early-exit-curriculum must be one of {', '.join(CURRICULA)}, got {curriculum!r}")
    if rotation_interval is not None:
        if curriculum != "rotational":
            raise ValueError("--early-exit-rotation-interval only applies to --early-exit-curriculum rotational")
        if isinstance(rotation_interval, bool) or not isinstance(rotation_interval, int) or rotation_interval < 1:
            raise ValueError(f"--early-exit-rotation-interval must be a whole number, 1 or more, got {rotation_interval!r}")
    if gradual_updates is not None:
        if curriculum != "gradual":
            raise ValueError("--early-exit-gradual-updates only applies to --early-exit-curriculum gradual")
        if isinstance(gradual_updates, bool) or not isinstance(gradual_updates, int) or gradual_updates < 1:
            raise ValueError(f"--early-exit-gradual-updates must be a whole number of updates, 1 or more, "
                             f"got {gradual_updates!r}")
    elif curriculum == "gradual":
        raise ValueError("--early-exit-curriculum gradual needs --early-exit-gradual-updates T "
                         "(the update by which every exit is on)")
    if curriculum == "rotational" and rotation_interval is None:
        rotation_interval = ROTATION_INTERVAL
    return rotation_interval or 1, gradual_updates or 0
