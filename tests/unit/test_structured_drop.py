"""Structured LayerDrop (Fan et al. Fig. 4): sub-layers and heads; fairseq's forward when nothing drops."""

import copy

import pytest

from tests.helpers import build_model
import torch


from fairseq_layerdrop.modules.drop_structure import STRUCTURES, LayerPlan, plan_step
from fairseq_layerdrop.modules.structured_layer import attend, decoder_layer_forward, encoder_layer_forward

TINY = ["--arch", "transformer_layerdrop_tiny", "--dropout", "0.1", "--attention-dropout", "0.1",
        "--activation-dropout", "0.1"]


def mt_model(translation_data, *args):
    model, _ = build_model(translation_data, *TINY, *args)
    return model


def count_calls(modules):
    calls = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def inputs(model, batch=3, src_len=7, tgt_len=5):
    src = torch.randint(4, 20, (batch, src_len))
    return src, torch.full((batch,), src_len), torch.randint(4, 20, (batch, tgt_len))


@pytest.mark.parametrize("normalize_before", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_blockwise_forward_with_nothing_dropped_is_fairseqs_forward(translation_data, normalize_before, mode):
    flags = ["--encoder-normalize-before", "--decoder-normalize-before"] if normalize_before else []
    model = mt_model(translation_data, *flags)
    getattr(model, mode)()
    x, enc = torch.randn(7, 3, 64), torch.randn(9, 3, 64)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, -2:] = True
    future = torch.triu(torch.full((7, 7), float("-inf")), 1)
    enc_layer, dec_layer = model.encoder.layers[1], model.decoder.layers[1]
    assert enc_layer.normalize_before == dec_layer.normalize_before == normalize_before
    ones = LayerPlan(head_scale=torch.ones(4), encoder_head_scale=torch.ones(4))  # through functional_call
    for plan in (LayerPlan(), ones):
        torch.manual_seed(0)
        expected = enc_layer(x, encoder_padding_mask=pad)
        torch.manual_seed(0)
        got = encoder_layer_forward(enc_layer, plan, x, encoder_padding_mask=pad)
        assert torch.allclose(got, expected, atol=1e-6) and (plan is ones or torch.equal(got, expected))
        torch.manual_seed(0)
        expected, expected_attn, _ = dec_layer(x, enc, None, None, self_attn_mask=future, need_attn=True)
        torch.manual_seed(0)
        got, attn, _ = decoder_layer_forward(dec_layer, plan, x, enc, None, None, self_attn_mask=future, need_attn=True)
        assert torch.allclose(got, expected, atol=1e-6) and (plan is ones or torch.equal(got, expected))
        assert torch.allclose(attn, expected_attn, atol=1e-6)


@pytest.mark.parametrize("normalize_before", [False, True])
def test_a_dropped_block_passes_its_input_through(translation_data, normalize_before):
    flags = ["--encoder-normalize-before"] if normalize_before else []
    layer = mt_model(translation_data, *flags).encoder.layers[0].eval()
    x = torch.randn(5, 2, 64)
    assert torch.equal(encoder_layer_forward(layer, LayerPlan(attention=False, ffn=False), x), x)
    ffn_only = encoder_layer_forward(layer, LayerPlan(attention=False), x)
    assert torch.equal(ffn_only, encoder_layer_forward(layer, LayerPlan(attention=False, ffn=True), x))
    attn_then_ffn = encoder_layer_forward(layer, LayerPlan(), x)
    attn_only = encoder_layer_forward(layer, LayerPlan(ffn=False), x)
    assert torch.equal(encoder_layer_forward(layer, LayerPlan(attention=False), attn_only), attn_then_ffn)


def test_dropped_heads_contribute_nothing_and_kept_heads_are_rescaled(translation_data):
    """Head drop equals attention whose dropped heads' value rows are zero and kept rows scaled by 1/(1-p)."""
    attention = mt_model(translation_data).encoder.layers[0].self_attn.eval()
    x = torch.randn(6, 2, 64, requires_grad=True)
    scale = torch.tensor([0.0, 2.0, 0.0, 2.0])  # p = 0.5: heads 0 and 2 dropped
    got, _ = attend(attention, scale, query=x, key=x, value=x, need_weights=False)
    reference = copy.deepcopy(attention)
    rows = scale.repeat_interleave(attention.head_dim)
    with torch.no_grad():
        reference.v_proj.weight.mul_(rows[:, None])
        reference.v_proj.bias.mul_(rows)
    expected, _ = reference(query=x, key=x, value=x, need_weights=False)
    assert torch.allclose(got, expected, atol=1e-6)
    got.sum().backward()
    head_dim = attention.head_dim
    grad = attention.v_proj.weight.grad.view(4, head_dim, 64)
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0 and grad[1].abs().sum() > 0
    assert not torch.allclose(got, attention(query=x, key=x, value=x, need_weights=False)[0])


@pytest.mark.parametrize("structure", STRUCTURES)
def test_each_structure_drops_at_each_layers_rate(structure):
    """Over 3000 pure draws, every layer's block and head drop frequencies match its (linear) rate."""
    rates, draws, heads = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], 3000, 4
    dropped = {"layer": [0] * 6, "attention": [0] * 6, "ffn": [0] * 6, "heads": [0] * 6, "enc_heads": [0] * 6}
    for update in range(draws):
        for i, plan in enumerate(plan_step(structure, rates, 7, update, 0, "decoder", heads, encoder_attention=True)):
            dropped["layer"][i] += plan.skipped
            dropped["attention"][i] += not plan.attention and not plan.skipped
            dropped["ffn"][i] += not plan.ffn and not plan.skipped
            for key, scale in (("heads", plan.head_scale), ("enc_heads", plan.encoder_head_scale)):
                if scale is not None:
                    dropped[key][i] += int((scale == 0).sum())
                    assert torch.allclose(scale[scale > 0], torch.tensor(1 / (1 - rates[i])))
    # binomial counts: sd of a frequency <= sqrt(0.25 / n); we allow 4.5 sd
    expect = {
        "layer": {"layer": rates, "sublayer": [r * r for r in rates], "head+layer": rates},
        "attention": {"sublayer": [r * (1 - r) for r in rates], "attention": rates},
        "ffn": {"sublayer": [r * (1 - r) for r in rates], "ffn": rates},
        "heads": {"head": rates, "head+layer": [r * (1 - r) for r in rates]},  # heads of layers that ran
        "enc_heads": {"head": rates, "head+layer": [r * (1 - r) for r in rates]},
    }
    for key, counts in dropped.items():
        n = draws * (heads if "heads" in key else 1)
        wanted = expect[key].get(structure, [0.0] * 6)
        tolerance = 4.5 * (0.25 / n) ** 0.5
        assert all(abs(c / n - w) < tolerance for c, w in zip(counts, wanted)), (key, counts, wanted)


def test_structures_draw_independently():
    """Sub-layer drops of attention and FFN are decorrelated (different draw names)."""
    both = sum(not p.attention and not p.ffn for u in range(2000) for p in plan_step("sublayer", [0.5] * 4, 1, u, 0, "encoder"))
    assert abs(both / 8000 - 0.25) < 4.5 * (0.25 * 0.75 / 8000) ** 0.5


@pytest.mark.parametrize("structure", ["sublayer", "attention", "ffn", "head+layer"])
def test_skipped_blocks_do_not_run(translation_data, structure):
    model = mt_model(translation_data, "--layerdrop-structure", structure, "--encoder-layerdrop", "0.5",
                     "--decoder-layerdrop", "0.5", "--dropout", "0")
    layers = model.decoder.layers
    each = [layers[i] for i in range(len(layers))]  # indexing: iterating the list in training mode is a step
    attn_calls, enc_attn_calls = count_calls([l.self_attn for l in each]), count_calls([l.encoder_attn for l in each])
    ffn_calls = count_calls([l.fc1 for l in each])
    model.train()
    src, src_len, prev = inputs(model)
    expected_attn, expected_ffn = [0] * 6, [0] * 6
    for update in range(12):
        model.set_num_updates(update)
        plans = plan_step(structure, layers.rates, layers.seed, update, 0, "decoder", 4, encoder_attention=True)
        for i, plan in enumerate(plans):
            expected_attn[i] += plan.attention
            expected_ffn[i] += plan.ffn
        logits, _ = model(src, src_len, prev)
        assert [p.describe() for p in layers.last_plans] == [p.describe() for p in plans]
    assert attn_calls == expected_attn and enc_attn_calls == expected_attn and ffn_calls == expected_ffn
    assert 0 < sum(expected_attn) + sum(expected_ffn) < 2 * 6 * 12


@pytest.mark.parametrize("structure", STRUCTURES)
def test_eval_mode_equals_zero_rate(translation_data, structure):
    dropping = mt_model(translation_data, "--layerdrop-structure", structure, "--encoder-layerdrop", "0.5",
                        "--decoder-layerdrop", "0.5")
    plain = mt_model(translation_data, "--encoder-layerdrop", "0", "--decoder-layerdrop", "0")
    plain.load_state_dict(dropping.state_dict())
    dropping.eval(), plain.eval()
    src, src_len, prev = inputs(dropping)
    for update in range(3):
        dropping.set_num_updates(update)
        assert torch.equal(dropping(src, src_len, prev)[0], plain(src, src_len, prev)[0])
    dropping.train()
    dropping.set_num_updates(4)
    assert not torch.equal(dropping(src, src_len, prev)[0], plain(src, src_len, prev)[0])


def test_parameters_and_checkpoint_keys_do_not_depend_on_the_structure(translation_data):
    keys = {s: list(mt_model(translation_data, "--layerdrop-structure", s).state_dict()) for s in STRUCTURES}
    assert all(k == keys["layer"] for k in keys.values())
