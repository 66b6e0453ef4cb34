"""LayerSkip's exponential depth curve and time ramp, and Progressive Layer Dropping's schedule
(modules/drop_schedule.py), against hand-computed numbers; a list resumed mid-ramp repeats the rates and draws."""

import math
from types import SimpleNamespace

import pytest
from torch import nn

from fairseq_layerdrop.modules.drop_schedule import RateRamp, layer_drop_rates, rate_ramp
from fairseq_layerdrop.modules.layer_drop import SeededLayerDropList


def test_layerskip_depth_curve_reaches_p_at_the_top():
    # D(l) = exp(l ln2 / (L - 1)) - 1 = 2 ** (l / (L - 1)) - 1; L = 5: 0, 2^0.25 - 1, 2^0.5 - 1, 2^0.75 - 1, 1
    assert layer_drop_rates(5, 0.4, "exponential") == pytest.approx(
        [0.0, 0.4 * 0.189207115, 0.4 * 0.414213562, 0.4 * 0.681792831, 0.4])
    assert layer_drop_rates(5, 0.4, "exponential")[-1] == 0.4  # exact at the top
    assert layer_drop_rates(1, 0.3, "exponential") == [0.3]


def test_layerskip_time_ramp():
    ramp = RateRamp("exponential", ramp_updates=100)
    assert ramp.factor(0) == 0.0
    assert ramp.factor(50) == pytest.approx(math.sqrt(2) - 1)  # exp(50 ln2 / 100) - 1
    assert ramp.factor(25) == pytest.approx(0.189207115)
    assert ramp.factor(100) == ramp.factor(5000) == 1.0
    assert RateRamp("uniform").factor(7) == 1.0 and RateRamp("uniform").constant


def test_progressive_layer_dropping():
    # theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar, theta_bar = 1 - p; keep_i = 1 - i (1 - theta(t)) / L
    p, gamma, num_layers, t = 0.5, 0.01, 4, 100
    theta = (1 - (1 - p)) * math.exp(-gamma * t) + (1 - p)  # 0.5 e^-1 + 0.5 = 0.68394
    keep = [1 - i * (1 - theta) / num_layers for i in range(1, num_layers + 1)]
    assert keep == pytest.approx([0.92099, 0.84197, 0.76296, 0.68394], abs=1e-5)
    depth_rates = layer_drop_rates(num_layers, p, "progressive")
    assert depth_rates == pytest.approx([0.125, 0.25, 0.375, 0.5])
    factor = RateRamp("progressive", gamma=gamma).factor(t)
    assert factor == pytest.approx(1 - math.exp(-1))
    assert [r * factor for r in depth_rates] == pytest.approx([1 - k for k in keep])
    assert RateRamp("progressive", gamma=gamma).factor(0) == 0.0


class _Layer(nn.Linear):
    """A stand-in for a transformer layer: what the list reads of one (its attention's head count)."""

    def __init__(self):
        super().__init__(2, 2)
        self.self_attn = SimpleNamespace(num_heads=1)


def _stack(ramp, rates):
    return SeededLayerDropList([_Layer() for _ in rates], p=max(rates), seed=5, stack="decoder",
                               rates=rates, ramp=ramp)


@pytest.mark.parametrize("schedule, ramp", [
    ("exponential", RateRamp("exponential", ramp_updates=40)),
    ("progressive", RateRamp("progressive", gamma=0.05)),
])
def test_a_list_resumed_mid_ramp_repeats_the_rates_and_draws(schedule, ramp):
    rates = layer_drop_rates(6, 0.6, schedule)
    straight, resumed = _stack(ramp, rates), _stack(ramp, rates)
    straight.train(), resumed.train()
    seen = {}
    for update in range(60):
        straight.set_num_updates(update)
        list(straight)
        seen[update] = (straight.current_rates(), straight.last_kept)
    assert seen[0][0] == [0.0] * 6 and seen[59][0] != seen[20][0]  # the ramp moved the rates
    assert seen[5][1] == list(range(6))  # early in the ramp nothing is dropped at this seed
    assert any(len(kept) < 6 for _, kept in seen.values())
    for update in range(20, 60):  # a fresh list, as after loading a checkpoint at update 20
        resumed.set_num_updates(update)
        list(resumed)
        assert (resumed.current_rates(), resumed.last_kept) == seen[update]
    assert straight.current_rates() == pytest.approx([r * ramp.factor(59) for r in rates])


@pytest.mark.parametrize("args, message", [
    (("exponential", -3), r"--layerdrop-ramp-updates must be a whole number of updates, 0 or more"),
    (("progressive", 10), r"--layerdrop-ramp-updates does not apply to --layerdrop-schedule progressive"),
    (("uniform", None, 0.01), r"--layerdrop-pld-gamma only applies to --layerdrop-schedule progressive"),
    (("progressive", None, 0.0), r"--layerdrop-pld-gamma must be a number above 0"),
    (("progressive", None, float("inf")), r"--layerdrop-pld-gamma must be a number above 0"),
])
def test_bad_ramp_options_name_the_flag(args, message):
    with pytest.raises(ValueError, match=message):
        rate_ramp(*args)
