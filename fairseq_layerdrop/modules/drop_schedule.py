"""Per-layer LayerDrop rates: a schedule over depth and over training, an explicit list, protected layers.

Fan, Grave & Joulin (arXiv 1909.11556) use one rate p for every layer, and derive it from the
depth r you mean to prune an N-layer stack to: ``p* = 1 - r / N``. Stochastic depth (Huang et al.
2016; timm's ``drop_path``, torchtune's ``get_scale``) raises the rate linearly with depth, from 0
at the bottom to p at the top. Fan et al.'s Figure 5 shows the first and last layers matter most,
so some layers may be protected (rate 0). Two schedules also vary over training:

- ``exponential``, LayerSkip's depth curve (Elhoushi et al., ACL 2024, arXiv 2404.16710, Sec. 4.1.1):
  ``p_l = p * D(l)`` with ``D(l) = exp(l ln2 / (L - 1)) - 1`` for layer l = 0..L-1, so 0 at the bottom
  and p at the top; with ``--layerdrop-ramp-updates T`` it is multiplied by their time curriculum
  ``S(t) = exp(t ln2 / T) - 1`` for update t < T, and 1 from T on (0 at the start, p_l at T).
- ``progressive``, Progressive Layer Dropping (Zhang & He, NeurIPS 2020, arXiv 2010.13369): the keep
  probability of layer i = 1..L at update t is ``1 - i (1 - theta(t)) / L`` with
  ``theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar``. We set ``theta_bar = 1 - p``, so the top layer's
  rate tends to p; the drop rate is then ``(i p / L) (1 - exp(-gamma t))`` (``--layerdrop-pld-gamma``).

Every schedule is depth rates (``layer_drop_rates``) times a factor of the update number alone
(``RateRamp``), so each step's draw stays a pure function of seed and step, and a resumed run
repeats the rates of an uninterrupted one. This module turns those choices into one rate per layer:

    layer_drop_rates(6, 0.2, "linear")           # [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]
    layer_drop_rates(6, 0.2, protect=[0, 5])     # [0.0, 0.2, 0.2, 0.2, 0.2, 0.0]
    layer_drop_rates(3, 0.2, "exponential")      # [0.0, 0.2 * (sqrt(2) - 1), 0.2]
    RateRamp("progressive", gamma=0.001).factor(1000)   # 1 - exp(-1)
    rate_for_target_depth(12, 6)                  # 0.5

Bad input raises ``ValueError`` naming the command-line flag it came from.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

SCHEDULES = ("uniform", "linear", "linear-reverse", "exponential", "progressive")
PLD_GAMMA = 0.001  # Zhang & He's (and DeepSpeed's) default gamma


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
        p: the rate (uniform), or the top rate of ``linear``, ``exponential`` and ``progressive``
            (its rate once the time factor is 1), and the bottom rate of ``linear-reverse``.
        schedule: ``uniform`` (the paper), ``linear`` (i / (N - 1) * p, stochastic depth),
            ``linear-reverse`` ((N - 1 - i) / (N - 1) * p), ``exponential`` ((exp(i ln2 / (N - 1)) - 1) * p,
            LayerSkip) or ``progressive`` ((i + 1) / N * p, PLD's depth profile; its time factor is ``RateRamp``),
            for layer i = 0..N-1.
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
        elif schedule == "exponential":
            steps = [2.0 ** s - 1.0 for s in steps]  # exp(s ln2) - 1, exact at both ends
        elif schedule == "progressive":
            steps = [(i + 1) / num_layers for i in range(num_layers)]
        rates = [p if schedule == "uniform" else p * s for s in steps]
    for i in protect:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers:
            raise ValueError(f"{flags}-protect must list layer indices from 0 to {num_layers - 1}, got {i!r}")
        rates[i] = 0.0
    return rates


@dataclass(frozen=True)
class RateRamp:
    """The time factor of a stack's rates: ``rate_l(t) = rate_l * factor(t)`` at update t.

    ``schedule="progressive"``: ``1 - exp(-gamma t)`` (Zhang & He's theta(t) with theta_bar = 1 - p).
    Any other schedule: LayerSkip's ``exp(t ln2 / ramp_updates) - 1`` while t < ``ramp_updates``, then 1;
    ``ramp_updates=0`` means no ramp (always 1).
    """

    schedule: str = "uniform"
    ramp_updates: int = 0
    gamma: float = PLD_GAMMA

    def factor(self, update: int) -> float:
        if self.schedule == "progressive":
            return 1.0 - math.exp(-self.gamma * update)
        if self.ramp_updates and update < self.ramp_updates:
            return 2.0 ** (update / self.ramp_updates) - 1.0  # exp(t ln2 / T) - 1
        return 1.0

    @property
    def constant(self) -> bool:
        return self.schedule != "progressive" and not self.ramp_updates

    def describe(self) -> str:
        if self.schedule == "progressive":
            return f"times 1 - exp(-{self.gamma} t)"
        if self.ramp_updates:
            return f"times exp(t ln2 / {self.ramp_updates}) - 1 until update {self.ramp_updates}"
        return ""


def rate_ramp(schedule: str, ramp_updates=None, gamma=None) -> RateRamp:
    """The ``RateRamp`` of the options, refusing bad values naming the flag."""
    if ramp_updates not in (None, 0):
        if isinstance(ramp_updates, bool) or not isinstance(ramp_updates, int) or ramp_updates < 0:
            raise ValueError(f"--layerdrop-ramp-updates must be a whole number of updates, 0 or more, got {ramp_updates!r}")
        if schedule == "progressive":
            raise ValueError("--layerdrop-ramp-updates does not apply to --layerdrop-schedule progressive, whose rates "
                             "rise with --layerdrop-pld-gamma: give one or the other")
    if gamma is not None:
        if schedule != "progressive":
            raise ValueError(f"--layerdrop-pld-gamma only applies to --layerdrop-schedule progressive, not {schedule!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0 or math.isinf(gamma):
            raise ValueError(f"--layerdrop-pld-gamma must be a number above 0 (Zhang & He use {PLD_GAMMA}), got {gamma!r}")
    return RateRamp(schedule=schedule, ramp_updates=int(ramp_updates or 0),
                    gamma=float(gamma) if gamma is not None else PLD_GAMMA)
