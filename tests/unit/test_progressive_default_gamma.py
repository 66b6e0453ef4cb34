"""The default gamma of ``--layerdrop-schedule progressive`` (modules/drop_schedule.py) is Zhang & He's.

Progressive Layer Dropping (Zhang & He, NeurIPS 2020, arXiv 2010.13369) keeps layer i = 1..L at update t with
probability 1 - i (1 - theta(t)) / L, theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar, and uses gamma = 0.001
(DeepSpeed's PLD default and recommended value). The other tests pass gamma explicitly; these take the default,
through the functions and through fairseq-train's flags without --layerdrop-pld-gamma."""

import math
from types import SimpleNamespace

import pytest

from fairseq_layerdrop.modules.drop_options import stack_ramp
from fairseq_layerdrop.modules.drop_schedule import RateRamp, rate_ramp
from tests.helpers import build_model

GAMMA = 0.001  # Zhang & He 2020; DeepSpeed's PLD_GAMMA_DEFAULT


def pld_drop_rate(i, num_layers, theta_bar, t, gamma=GAMMA):
    """1 - keep probability of layer i (1-based) at update t, the paper's formula."""
    theta = (1 - theta_bar) * math.exp(-gamma * t) + theta_bar
    return 1 - (1 - i * (1 - theta) / num_layers)


@pytest.mark.parametrize("ramp", [RateRamp("progressive"), rate_ramp("progressive"),
                                  stack_ramp(SimpleNamespace(layerdrop_schedule="progressive"))],
                         ids=["RateRamp", "rate_ramp", "flags without --layerdrop-pld-gamma"])
def test_the_default_gamma_is_zhang_and_hes(ramp):
    assert ramp.gamma == GAMMA
    for t in (0, 1, 250, 1000, 4000):
        assert ramp.factor(t) == pytest.approx(1 - math.exp(-GAMMA * t), rel=1e-12, abs=0)
    assert ramp.factor(1000) == pytest.approx(0.6321205588)  # 1 - 1/e, the module docstring's example


def test_fairseq_train_flags_without_gamma_give_the_papers_rates(lm_data):
    model, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                           "--tokens-per-sample", "64", "--decoder-layerdrop", "0.5",
                           "--layerdrop-schedule", "progressive")
    layers = model.decoder.layers
    num_layers = len(layers.rates)
    for t in (0, 700, 3000):
        layers.set_num_updates(t)
        # theta_bar = 1 - p = 0.5: the top layer's rate tends to p
        expected = [pld_drop_rate(i, num_layers, 0.5, t) for i in range(1, num_layers + 1)]
        assert layers.current_rates() == pytest.approx(expected, rel=1e-9, abs=1e-12)
