"""The gates' score-function estimator (Fan et al. arXiv 1909.11556 data-driven pruning, trained by
REINFORCE), checked against a gradient computed by hand and against the direction of one step."""

import math

import pytest
import torch
from torch import nn

from fairseq_layerdrop.criterions.layer_gate_loss import LayerGateLoss
from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER, GatedLayerDropList

LOGITS = [0.3, -0.2, 0.5, 0.0]
P, SEED, SAMPLE_SIZE, WEIGHT = 0.4, 1, 10, 0.5


class Stack(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.layers = GatedLayerDropList([nn.Linear(1, 1) for _ in logits], p=P, seed=SEED, stack="decoder")
        with torch.no_grad():
            for i, value in enumerate(logits):
                getattr(self.layers[i], GATE_PARAMETER).fill_(value)


class FixedLoss:
    """A task loss that does not depend on the gates (as a dropped layer's is not, pathwise)."""

    def forward(self, model, sample, reduce=True):
        for _ in model.layers:  # one training iteration of the stack: draws this step's mask
            pass
        return torch.tensor(sample["loss_per_token"] * SAMPLE_SIZE), SAMPLE_SIZE, {}


class GatedFixedLoss(LayerGateLoss, FixedLoss):
    def __init__(self):
        self.init_gates(WEIGHT, 0.9)


def hand_rates(logits):
    exps = [math.exp(g) for g in logits]
    return [len(logits) * P * e / sum(exps) for e in exps]


def hand_mask_probability(logits, kept):
    rates = hand_rates(logits)
    return math.prod((1 - r) if i in kept else r for i, r in enumerate(rates))


def hand_gradient(logits, kept, advantage):
    """d/dg_j of WEIGHT * SAMPLE_SIZE * advantage * log P(mask), with p_d = N p softmax(g)_d (no rate capped)."""
    n = len(logits)
    exps = [math.exp(g) for g in logits]
    s = [e / sum(exps) for e in exps]
    rates = [n * P * x for x in s]
    d_log_p = [-1 / (1 - r) if d in kept else 1 / r for d, r in enumerate(rates)]
    return [WEIGHT * SAMPLE_SIZE * advantage * sum(d_log_p[d] * n * P * s[d] * ((d == j) - s[j]) for d in range(n))
            for j in range(n)]


def one_step(update, loss_per_token, baseline):
    model, criterion = Stack(LOGITS), GatedFixedLoss()
    model.train()
    model.layers.set_num_updates(update)
    criterion.baseline = torch.tensor(baseline)
    loss, _, _ = criterion.forward(model, {"loss_per_token": loss_per_token})
    loss.backward()
    kept = model.layers.last_kept
    grads = [getattr(model.layers[i], GATE_PARAMETER).grad.item() for i in range(len(LOGITS))]
    return kept, grads


def mixed_update():
    """An update whose mask keeps some layers and drops others (so both terms of log P appear)."""
    for update in range(50):
        model = Stack(LOGITS)
        model.train()
        model.layers.set_num_updates(update)
        list(model.layers)
        if 0 < len(model.layers.last_kept) < len(LOGITS):
            return update
    raise AssertionError("no mixed mask in 50 updates")


def test_rates_are_the_hand_computed_softmax_rates():
    assert Stack(LOGITS).layers.drop_rates().tolist() == pytest.approx(hand_rates(LOGITS), rel=1e-6)
    assert max(hand_rates(LOGITS)) < 0.95  # no rate capped: the hand formula applies


@pytest.mark.parametrize("loss_per_token, baseline", [(3.0, 2.0), (2.0, 3.5)])
def test_gate_gradient_is_the_hand_computed_score_function_gradient(loss_per_token, baseline):
    kept, grads = one_step(mixed_update(), loss_per_token, baseline)
    expected = hand_gradient(LOGITS, kept, loss_per_token - baseline)
    assert grads == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert sum(abs(g) for g in expected) > 0.1


@pytest.mark.parametrize("loss_per_token, baseline, direction", [(3.0, 2.0, "less"), (2.0, 3.5, "more")])
def test_one_step_makes_a_worse_than_baseline_mask_less_likely_and_a_better_one_more(
    loss_per_token, baseline, direction
):
    kept, grads = one_step(mixed_update(), loss_per_token, baseline)
    stepped = [g - 0.05 * d for g, d in zip(LOGITS, grads)]  # one SGD step on the gates
    before, after = hand_mask_probability(LOGITS, kept), hand_mask_probability(stepped, kept)
    assert (after < before) if direction == "less" else (after > before), (before, after)


def test_no_advantage_no_gradient_and_the_baseline_moves_towards_the_loss():
    model, criterion = Stack(LOGITS), GatedFixedLoss()
    model.train()
    criterion.baseline = torch.tensor(2.0)
    loss, _, _ = criterion.forward(model, {"loss_per_token": 2.0})
    loss.backward()
    assert all(getattr(model.layers[i], GATE_PARAMETER).grad.item() == 0.0 for i in range(4))
    criterion.forward(model, {"loss_per_token": 3.0})
    assert criterion.baseline.item() == pytest.approx(0.9 * 2.0 + 0.1 * 3.0)
