"""The LayerDrop mechanics: a reproducible draw, the right rate, skipped layers that never run."""

import subprocess
import sys

import pytest
import torch
from tests.helpers import ROOT, build_model


from fairseq_layerdrop.modules import check_layerdrop_rate, layer_keep_mask


def lm_model(lm_data, p, layers=6):
    model, task = build_model(
        lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
        "--decoder-layerdrop", p, "--decoder-layers", layers, "--tokens-per-sample", 32,
    )
    return model, task


def count_calls(layers):
    calls = [0] * len(layers)
    for i in range(len(layers)):
        layers[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_same_seed_update_and_stack_give_same_draw_in_another_process():
    here = [layer_keep_mask(12, 0.5, 7, u, 0, s).tolist() for u in range(20) for s in ("encoder", "decoder")]
    code = (
        "from fairseq_layerdrop.modules import layer_keep_mask\n"
        "print([layer_keep_mask(12, 0.5, 7, u, 0, s).tolist() for u in range(20) for s in ('encoder', 'decoder')])"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert str(here) == there.stdout.strip()
    assert len({str(m) for m in here}) > 10, "draws should vary with the update and the stack"
    assert layer_keep_mask(12, 0.5, 8, 0).tolist() != layer_keep_mask(12, 0.5, 7, 0).tolist() or \
        layer_keep_mask(12, 0.5, 8, 1).tolist() != layer_keep_mask(12, 0.5, 7, 1).tolist()


def test_each_layer_is_skipped_at_rate_p(lm_data):
    p, updates = 0.3, 600
    model, _ = lm_model(lm_data, p)
    layers = model.decoder.layers
    calls = count_calls(layers)
    tokens = torch.randint(4, 20, (2, 8))
    model.train()
    with torch.no_grad():
        for update in range(updates):
            model.set_num_updates(update)
            model(tokens)
    # Binomial(updates, p) per layer: sd = sqrt(p(1-p)/updates) = 0.019; we allow 4.5 sd.
    tolerance = 4.5 * (p * (1 - p) / updates) ** 0.5
    drop_rates = [1 - c / updates for c in calls]
    assert all(abs(r - p) < tolerance for r in drop_rates), drop_rates


def test_skipped_layer_gets_no_forward_and_no_gradient(lm_data):
    model, _ = lm_model(lm_data, 0.5)
    layers = model.decoder.layers
    calls = count_calls(layers)
    seed = layers.seed
    update = next(u for u in range(100) if 0 < int(layer_keep_mask(6, 0.5, seed, u, 0, "decoder").sum()) < 6)
    expected = layer_keep_mask(6, 0.5, seed, update, 0, "decoder").tolist()
    model.train()
    model.set_num_updates(update)
    logits, _ = model(torch.randint(4, 20, (2, 8)))
    logits.sum().backward()
    assert [c == 1 for c in calls] == expected
    for i, kept in enumerate(expected):
        grads = [p.grad for p in layers[i].parameters()]
        assert all((g is not None) == kept for g in grads), (i, kept)


def test_micro_batches_of_one_update_draw_afresh_and_a_new_update_restarts_the_sequence(lm_data):
    model, _ = lm_model(lm_data, 0.5, layers=12)
    layers = model.decoder.layers
    model.train()
    model.set_num_updates(5)
    first = [(list(layers), layers.last_kept)[1] for _ in range(3)]
    assert first == [layer_keep_mask(12, 0.5, layers.seed, 5, m, "decoder").nonzero().flatten().tolist() for m in range(3)]
    model.set_num_updates(6)
    model.set_num_updates(5)  # e.g. a resumed run: update 5 starts again at micro-batch 0
    list(layers)
    assert layers.last_kept == first[0]


def test_eval_mode_runs_every_layer(lm_data):
    model, _ = lm_model(lm_data, 0.9)
    calls = count_calls(model.decoder.layers)
    model.eval()
    with torch.no_grad():
        for update in range(20):
            model.set_num_updates(update)
            model(torch.randint(4, 20, (2, 8)))
    assert calls == [20] * 6


def test_zero_rate_runs_every_layer_in_training(lm_data):
    model, _ = lm_model(lm_data, 0.0)
    calls = count_calls(model.decoder.layers)
    model.train()
    for update in range(10):
        model.set_num_updates(update)
        model(torch.randint(4, 20, (2, 8)))
    assert calls == [10] * 6


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "half"])
def test_invalid_rate_is_refused_naming_the_flag(bad):
    with pytest.raises(ValueError, match=r"--decoder-layerdrop must be"):
        check_layerdrop_rate(bad, "--decoder-layerdrop")


def test_valid_rates_pass():
    assert check_layerdrop_rate("0.2", "--encoder-layerdrop") == 0.2
    assert check_layerdrop_rate(0, "--encoder-layerdrop") == 0.0
