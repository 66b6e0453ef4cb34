"""Where the early-exit loss sends gradients, and which exits a LayerDrop step has (criterions/early_exit_loss.py).

Models and criteria are built in this process from fairseq-train's flags; each test takes seconds.
"""

import pytest
import torch
from fairseq.criterions.cross_entropy import CrossEntropyCriterion

from fairseq_layerdrop.criterions.early_exit_loss import EarlyExitCrossEntropyCriterion
from tests.helpers import build_model

LM = ["--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny", "--tokens-per-sample", "16",
      "--decoder-layers", "4", "--dropout", "0", "--seed", "3"]


def lm_sample(task, batch=3, length=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(task.dictionary.nspecial, len(task.dictionary), (batch, length + 1), generator=generator)
    return {"net_input": {"src_tokens": tokens[:, :-1].contiguous(), "src_lengths": torch.full((batch,), length)},
            "target": tokens[:, 1:].contiguous(), "ntokens": batch * length}


def gradients(model, criterion, sample, update=0):
    model.train()
    model.zero_grad()
    model.set_num_updates(update)
    loss, _, log = criterion(model, sample)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, log


def layer_grads(grads, layer):
    return {k: v for k, v in grads.items() if f"decoder.layers.{layer}." in k}


@pytest.fixture(scope="module")
def lm(lm_data):
    model, task = build_model(lm_data, *LM, "--decoder-layerdrop", "0")
    return model, task, lm_sample(task)


def test_scale_zero_is_plain_cross_entropy_exactly(lm):
    model, task, sample = lm
    plain, _ = gradients(model, CrossEntropyCriterion(task, False), sample)
    zero, log = gradients(model, EarlyExitCrossEntropyCriterion(task, False, early_exit_scale=0.0), sample)
    assert plain.keys() == zero.keys() and all(torch.equal(plain[k], zero[k]) for k in plain)
    assert all(log[f"exit_{e}_n"] == 12 * 3 for e in (1, 2, 3))  # the exits are still measured and logged
    assert all(float(log[f"exit_{e}"]) > 0 for e in (1, 2, 3))


def test_layers_above_an_exit_get_only_the_final_term(lm):
    """Rotational R = 3 at update 0 of L = 4: only exit 0 is on; e = [1, 10], weights 1/11 and 10/11."""
    model, task, sample = lm
    plain, _ = gradients(model, CrossEntropyCriterion(task, False), sample)
    criterion = EarlyExitCrossEntropyCriterion(task, False, early_exit_scale=1.0, early_exit_curriculum="rotational",
                                               early_exit_rotation_interval=3)
    ee, log = gradients(model, criterion, sample, update=0)
    assert [log[f"exit_{e}_n"] > 0 for e in (1, 2, 3)] == [True, False, False]
    def deviation(layer):  # largest gap between the gradient and the final term's share of plain cross-entropy's
        return max((ee[k] - g * 10 / 11).abs().max().item() for k, g in layer_grads(plain, layer).items())

    scale = max(g.abs().max().item() for g in plain.values())
    above = max(deviation(layer) for layer in (1, 2, 3))  # above the exit: the final layer's term alone
    assert above < 1e-5 * scale
    assert deviation(0) > 1e-2 * scale  # the exit's own layer also gets the exit term
    # the objective is the weighted sum of the logged losses
    assert float(log["exit_objective"]) == pytest.approx((float(log["exit_1"]) + 10 * float(log["loss"])) / 11, rel=1e-5)


def test_a_dropped_layer_has_no_exit(lm_data):
    model, task = build_model(lm_data, *LM, "--decoder-layerdrop", "0.5")
    sample = lm_sample(task)
    criterion = EarlyExitCrossEntropyCriterion(task, False, early_exit_scale=1.0)
    seen_top_dropped = seen_middle_dropped = False
    model.train()
    for update in range(40):
        model.set_num_updates(update)
        with torch.no_grad():
            _, _, log = criterion(model, sample)
        ran = model.decoder.layers.last_kept
        exits = [e for e in (1, 2, 3) if log[f"exit_{e}_n"] > 0]
        assert exits == [layer + 1 for layer in ran[:-1]]  # every layer that ran but the top one that ran
        seen_top_dropped |= 3 not in ran and len(ran) > 1
        seen_middle_dropped |= any(layer not in ran for layer in (0, 1, 2)) and 3 in ran
    assert seen_top_dropped and seen_middle_dropped


def test_the_criteria_refuse_models_without_a_plugin_decoder(lm):
    _, task, sample = lm
    criterion = EarlyExitCrossEntropyCriterion(task, False)
    with pytest.raises(ValueError, match="need a decoder of this plugin: --arch transformer_lm_layerdrop"):
        criterion(torch.nn.Linear(2, 2), sample)
