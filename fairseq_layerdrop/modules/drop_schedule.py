"""Per-layer LayerDrop rates: a schedule over depth, an explicit list, protected layers.

Fan, Grave & Joulin (arXiv 1909.11556) use one rate p for every layer, and derive it from the
depth r you mean to prune an N-layer stack to: ``p* = 1 - r / N``. Stochastic depth (Huang et al.
2016; timm's ``drop_path``, torchtune's ``get_scale``) raises the rate linearly with depth, from 0
at the bottom to p at the top. Fan et al.'s Figure 5 shows the first and last layers matter most,
so some layers may be protected (rate 0). This module turns those choices into one rate per layer:

    layer_drop_rates(6, 0.2, "linear")           # [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]
    layer_drop_rates(6, 0.2, protect=[0, 5])     # [0.0, 0.2, 0.2, 0.2, 0.2, 0.0]
    rate_for_target_depth(12, 6)                  # 0.5

Bad input raises ``ValueError`` naming the command-line flag it came from.
"""

from typing import List, Optional, Sequence

SCHEDULES = ("uniform", "linear", "linear-reverse")


def rate_for_target_depth(num_layers: int, depth: int, flag: str = "--decoder-layerdrop-target-depth") -> float:
    """Fan et al.'s ``p* = 1 - r / N``: the rate whose expected kept depth is ``depth`` of ``num_layers``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= num_layers:
        raise ValueError(f"{flag} must be a depth from 1 to {num_layers} (the stack's layers), got {depth!r}")
    return 1.0 - depth / num_layers


def parse_number_list(text, flag: str, kind=float) -> List:
    """``"0,0.1, 0.2"`` -> ``[0.0, 0.1, 0.2]``; a list passes through; refuse anything else naming ``flag``."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        return [kind(str(item).strip()) for item in items]
    except ValueError:
        raise ValueError(f"{flag} must be a comma-separated list of {kind.__name__}s, got {text!r}") from None


def _check_rate(p: float, flag: str) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{flag} must be in [0, 1) (the probability of skipping), got {p}")
    return p


def layer_drop_rates(
    num_layers: int,
    p: float,
    schedule: str = "uniform",
    rates: Optional[Sequence[float]] = None,
    protect: Sequence[int] = (),
    flags: str = "--decoder-layerdrop",
) -> List[float]:
    """One drop rate per layer (bottom first).

    Args:
        num_layers: the stack's depth N.
        p: the rate (uniform), or the top rate of ``linear`` and the bottom rate of ``linear-reverse``.
        schedule: ``uniform`` (the paper), ``linear`` (i / (N - 1) * p, stochastic depth) or
            ``linear-reverse`` ((N - 1 - i) / (N - 1) * p).
        rates: an explicit list of N rates; replaces ``p`` and ``schedule``.
        protect: layer indices never dropped (rate 0).
        flags: the flag prefix named by errors (``--decoder-layerdrop`` -> ``--decoder-layerdrop-rates``, ...).
    """
    if rates is not None:
        rates = [_check_rate(float(r), f"{flags}-rates") for r in rates]
        if len(rates) != num_layers:
            raise ValueError(f"{flags}-rates must list one rate per layer: {num_layers} rates, got {len(rates)}")
    else:
        p = _check_rate(float(p), flags)
        if schedule not in SCHEDULES:
            raise ValueError(f"--layerdrop-schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        steps = [i / (num_layers - 1) if num_layers > 1 else 1.0 for i in range(num_layers)]
        if schedule == "linear-reverse":
            steps = steps[::-1]
        rates = [p if schedule == "uniform" else p * s for s in steps]
    for i in protect:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers:
            raise ValueError(f"{flags}-protect must list layer indices from 0 to {num_layers - 1}, got {i!r}")
        rates[i] = 0.0
    return rates
