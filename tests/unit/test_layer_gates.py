"""Learned layer gates (--layer-gates) and the gated criteria: budget, draws, gradients, on models built in
process (a gated checkpoint trained by fairseq-train: tests/integration/test_gated_training.py)."""

import pytest
import torch

from fairseq_layerdrop.modules.layer_drop import layer_uniforms
from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER, MAX_RATE, GatedLayerDropList, gated_drop_rates
from tests.helpers import PLUGIN, build_model


def gated_lm(lm_data, p=0.5, layers=6, *extra):
    return build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                       "--decoder-layerdrop", p, "--decoder-layers", layers, "--tokens-per-sample", 32,
                       "--layer-gates", "--criterion", "gated_cross_entropy", *extra)


def set_logits(stack, values):
    with torch.no_grad():
        for layer, value in zip([stack[i] for i in range(len(stack))], values):
            getattr(layer, GATE_PARAMETER).fill_(value)


@pytest.mark.parametrize("num_layers,p", [(2, 0.5), (6, 0.2), (8, 0.5), (12, 0.9)])
def test_rates_average_to_p_exactly_stay_under_the_cap_and_follow_the_logits(num_layers, p):
    generator = torch.Generator().manual_seed(num_layers)
    for scale in (0.0, 1.0, 10.0):  # uniform, moderate, and logits that push several rates over the cap
        logits = scale * torch.randn(num_layers, generator=generator)
        rates = gated_drop_rates(logits, p)
        assert abs(rates.mean().item() - p) < 1e-6, (scale, rates)
        assert rates.min() >= 0 and rates.max() <= MAX_RATE + 1e-6
        order = logits.argsort()
        assert all(rates[order[i]] <= rates[order[i + 1]] + 1e-6 for i in range(num_layers - 1))
    assert torch.allclose(gated_drop_rates(torch.zeros(num_layers), p), torch.full((num_layers,), p))
    assert gated_drop_rates(torch.tensor([10.0, 0.0, 0.0, 0.0]), 0.5).tolist() == pytest.approx(
        [MAX_RATE, (2 - MAX_RATE) / 3, (2 - MAX_RATE) / 3, (2 - MAX_RATE) / 3])


def test_training_draws_follow_the_learned_rates_and_eval_runs_the_plain_model(lm_data):
    model, _ = gated_lm(lm_data, 0.5, 4)
    layers = model.decoder.layers
    assert isinstance(layers, GatedLayerDropList)
    set_logits(layers, [-1.0, 0.0, 0.5, 2.0])
    rates = layers.drop_rates().detach()
    calls = [0] * 4
    for i in range(4):
        layers[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    tokens = torch.randint(4, 20, (2, 8))
    model.train()
    updates = 60
    with torch.no_grad():
        for update in range(updates):
            model.set_num_updates(update)
            model(tokens)
    expected = [sum(float(layer_uniforms(4, layers.seed, u, 0, "decoder")[i] < rates[i]) for u in range(updates))
                for i in range(4)]
    assert [updates - c for c in calls] == expected  # exactly the seeded draws compared with the learned rates
    assert expected[0] < expected[3], "the low-logit layer drops less often than the high-logit one"

    # eval: every layer runs, unscaled: the output is the ungated model's with the same weights
    plain, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                           "--decoder-layerdrop", 0.5, "--decoder-layers", 4, "--tokens-per-sample", 32)
    weights = {k: v for k, v in model.state_dict().items() if not k.endswith(GATE_PARAMETER)}
    plain.load_state_dict(weights)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], plain(tokens)[0])


def criterion_step(model, criterion, sample, update):
    model.train()
    model.set_num_updates(update)
    model.zero_grad()
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    return log


@pytest.mark.parametrize("kind", ["lm", "translation"])
def test_gradients_reach_every_gate_only_through_the_estimator(kind, lm_data, translation_data):
    if kind == "lm":
        model, task = gated_lm(lm_data, 0.5, 6, "--criterion", "gated_cross_entropy")
        criterion_name, stacks = "gated_cross_entropy", [model.decoder.layers]
    else:
        model, task = build_model(translation_data, "--arch", "transformer_layerdrop_tiny", "--layer-gates",
                                  "--encoder-layerdrop", 0.3, "--decoder-layerdrop", 0.5,
                                  "--criterion", "gated_label_smoothed_cross_entropy", "--label-smoothing", 0.1)
        criterion_name, stacks = "gated_label_smoothed_cross_entropy", [model.encoder.layers, model.decoder.layers]
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parsed = options.parse_args_and_arch(options.get_training_parser(), [
        str(translation_data if kind != "lm" else lm_data), "--user-dir", PLUGIN, "--cpu", "--criterion",
        criterion_name, *(["--label-smoothing", "0.1", "--arch", "transformer_layerdrop_tiny"] if kind != "lm" else
                          ["--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny"])])
    criterion = task.build_criterion(convert_namespace_to_omegaconf(parsed).criterion)
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(task.dataset("valid"), max_tokens=400).next_epoch_itr(shuffle=False)))
    gates = [getattr(stack[i], GATE_PARAMETER) for stack in stacks for i in range(len(stack))]

    criterion_step(model, criterion, sample, 0)  # sets the baseline: zero advantage
    grads = []
    for update in range(1, 4):
        log = criterion_step(model, criterion, sample, update)
        grads.append(torch.stack([g.grad for g in gates]))
    assert all(torch.isfinite(g).all() for g in grads)
    assert (torch.stack(grads).abs().sum(0) > 0).all(), "every gate is in log P(mask), so each gets a gradient"
    for stack in stacks:
        keep = stack.keep_probabilities().tolist()
        assert [log[f"{stack.stack[:3]}_keep_{i}"] for i in range(len(stack))] == pytest.approx(keep)
        assert sum(keep) / len(keep) == pytest.approx(1 - stack.p)

    criterion.gate_weight = 0.0  # without the estimator nothing reaches the gates: no pathwise leak
    criterion_step(model, criterion, sample, 5)
    assert all(g.grad is None or not g.grad.any() for g in gates)


def test_gates_need_a_rate_and_the_gated_criterion_needs_gates(lm_data):
    with pytest.raises(ValueError, match="--layer-gates .* --decoder-layerdrop above 0"):
        gated_lm(lm_data, 0.0)
    with pytest.raises(ValueError, match="--layer-gates learns whole-layer rates: use --layerdrop-structure layer"):
        gated_lm(lm_data, 0.5, 6, "--layerdrop-structure", "sublayer")
    with pytest.raises(ValueError, match="--layer-gates .* drop the rate schedule"):
        gated_lm(lm_data, 0.5, 6, "--decoder-layerdrop-protect", "0")
    model, task = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                              "--tokens-per-sample", 32)
    from fairseq_layerdrop.criterions.layer_gate_loss import GatedCrossEntropyCriterion

    # the task has just built a model without gates (as fairseq-train does before the criterion): refused at once
    with pytest.raises(ValueError, match=r"--criterion gated_cross_entropy trains learned layer gates, which this "
                                         r"model \(TransformerLMLayerDrop\) does not have"):
        GatedCrossEntropyCriterion(task, sentence_avg=False)
    _, gated_task = gated_lm(lm_data)
    criterion = GatedCrossEntropyCriterion(gated_task, sentence_avg=False)
    with pytest.raises(ValueError, match=r"--gate-weight must be 0 or more"):
        GatedCrossEntropyCriterion(gated_task, sentence_avg=False, gate_weight=-1.0)
    with pytest.raises(ValueError, match=r"--gate-baseline-decay must be in \[0, 1\)"):
        GatedCrossEntropyCriterion(gated_task, sentence_avg=False, gate_baseline_decay=1.0)
    with pytest.raises(ValueError, match="build the model with --layer-gates"):  # a model it was not built with
        criterion(model, {"net_input": {"src_tokens": torch.randint(4, 20, (2, 8))},
                          "target": torch.randint(4, 20, (2, 8)), "ntokens": 16})
