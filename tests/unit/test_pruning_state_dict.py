"""The state-dict pruning function and the layer-selection strategies."""

import argparse
import io

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_layerdrop.pruning import STRATEGIES, PruningError, kept_layers, prune_state_dict
from fairseq_layerdrop.pruning.state_dict import count_parameters
from fairseq_layerdrop.pruning.strategies import NEEDS


def toy_state(encoder=6, decoder=4):
    state = {"encoder.embed_tokens.weight": torch.randn(3, 2), "decoder.output_projection.weight": torch.randn(3, 2),
             "encoder.layer_norm.weight": torch.randn(2), "decoder.layer_norm.weight": torch.randn(2)}
    for stack, n in (("encoder", encoder), ("decoder", decoder)):
        for i in range(n):
            state[f"{stack}.layers.{i}.fc1.weight"] = torch.full((2, 2), float(i))
            state[f"{stack}.layers.{i}.self_attn.k_proj.bias"] = torch.full((2,), float(i))
    return state


def namespace(encoder=6, decoder=4):
    return argparse.Namespace(encoder_layers=encoder, decoder_layers=decoder, encoder_layers_to_keep=None,
                              decoder_layers_to_keep="0,1", arch="transformer")


def test_pruning_one_stack_renumbers_it_and_leaves_every_other_key_untouched():
    state = toy_state()
    pruned, cfg = prune_state_dict(state, namespace(), {"decoder": [3, 1]})
    assert sorted(k for k in pruned if k.startswith("decoder.layers.")) == [
        "decoder.layers.0.fc1.weight", "decoder.layers.0.self_attn.k_proj.bias",
        "decoder.layers.1.fc1.weight", "decoder.layers.1.self_attn.k_proj.bias",
    ]
    assert pruned["decoder.layers.0.fc1.weight"] is state["decoder.layers.3.fc1.weight"]  # order as given
    assert pruned["decoder.layers.1.fc1.weight"] is state["decoder.layers.1.fc1.weight"]
    untouched = [k for k in state if not k.startswith("decoder.layers.")]
    assert all(pruned[k] is state[k] for k in untouched)  # the whole encoder too (fairseq issue 1257)
    assert len(pruned) == len(untouched) + 4
    assert cfg.decoder_layers == 2 and cfg.encoder_layers == 6 and cfg.decoder_layers_to_keep is None


def test_both_stacks_and_the_input_config_is_not_modified():
    original = namespace()
    pruned, cfg = prune_state_dict(toy_state(), original, {"encoder": [0, 2, 5], "decoder": [0]})
    assert sorted({k.split(".")[2] for k in pruned if k.startswith("encoder.layers.")}) == ["0", "1", "2"]
    assert torch.equal(pruned["encoder.layers.2.fc1.weight"], torch.full((2, 2), 5.0))
    assert (cfg.encoder_layers, cfg.decoder_layers) == (3, 1)
    assert (original.encoder_layers, original.decoder_layers, original.decoder_layers_to_keep) == (6, 4, "0,1")


@pytest.mark.parametrize("make", [dict, lambda **kw: OmegaConf.create(kw)])
def test_dict_and_omegaconf_configs(make):
    cfg = make(_name="transformer_lm", decoder_layers=4, decoder_layers_to_keep=None)
    state = {k: v for k, v in toy_state().items() if k.startswith("decoder")}
    pruned, new = prune_state_dict(state, cfg, {"decoder": [1, 2]})
    assert new["decoder_layers"] == 2 and cfg["decoder_layers"] == 4
    assert torch.equal(pruned["decoder.layers.0.fc1.weight"], torch.full((2, 2), 1.0))


@pytest.mark.parametrize("kept, message", [
    ([0, 6], r"kept layer\(s\) \[6\] out of range for the encoder \(it has 6 layers: valid indices 0..5\)"),
    ([-1], r"out of range for the encoder"),
    ([1, 1], r"kept layer\(s\) \[1\] repeated in the list for the encoder"),
    ([], r"the kept-layer list of the encoder .* is empty"),
    (["a"], r"kept layer 'a' of the encoder .* is not an integer"),
    ([1.5], r"kept layer 1.5 of the encoder .* is not an integer"),
])
def test_bad_lists_are_refused_naming_the_stack_and_range(kept, message):
    with pytest.raises(PruningError, match=message):
        prune_state_dict(toy_state(), namespace(), {"encoder": kept})


def test_a_stack_the_model_lacks_is_refused():
    with pytest.raises(PruningError, match="this model has no encoder"):
        prune_state_dict(toy_state(), {"decoder_layers": 4}, {"encoder": [0]})


def test_strategies():
    assert kept_layers("every-other", 16, 8) == list(range(0, 16, 2))
    assert kept_layers("alternate", 16, 8) == kept_layers("every-other", 16, 8)
    assert kept_layers("every-other", 6, 4) == [0, 1, 3, 4]
    assert kept_layers("top", 8, 3) == [0, 1, 2]
    assert kept_layers("bottom", 8, 3) == [5, 6, 7]
    assert kept_layers("symmetric", 8, 3) == [0, 1, 7]
    assert kept_layers("symmetric", 8, 4) == [0, 1, 6, 7]
    for name in (name for name in STRATEGIES if not NEEDS[name]):  # data-driven ones: tests of their own
        for n in (1, 5, 12):
            for r in range(1, n + 1):
                kept = kept_layers(name, n, r)
                assert len(kept) == r == len(set(kept)) and all(0 <= i < n for i in kept), (name, n, r)
        assert kept_layers(name, 7, 7) == list(range(7))


@pytest.mark.parametrize("keep", [0, 9, -1, 2.0, True])
def test_bad_target_depth_is_refused(keep):
    with pytest.raises(PruningError, match=r"cannot prune the decoder to .* it has 8, so choose 1 to 8"):
        kept_layers("top", 8, keep)


def test_unknown_strategy_is_refused_listing_the_known_ones():
    with pytest.raises(PruningError, match="unknown pruning strategy 'middle'; choose from .*every-other"):
        kept_layers("middle", 8, 4)


def test_pruning_requests_read_every_option_and_refuse_conflicts():
    from fairseq_layerdrop.pruning.options import pruning_requests

    def options(**given):
        fields = dict(encoder_layers_to_keep=None, decoder_layers_to_keep=None, layers_to_keep=None, prune_to=None,
                      encoder_prune_to=None, decoder_prune_to=None, prune_strategy="top")
        return argparse.Namespace(**{**fields, **given})

    stacks = ("encoder", "decoder")
    requests = pruning_requests(options(encoder_prune_to=2, decoder_layers_to_keep="3,1"), namespace(), stacks)
    assert requests["encoder"].kept(6) == [0, 1] and requests["decoder"].kept(4) == [3, 1]
    plain = argparse.Namespace(encoder_layers=6, decoder_layers=4)
    both = pruning_requests(options(prune_to=2), plain, stacks)
    assert both["encoder"].kept(6) == [0, 1] and both["decoder"].kept(4) == [0, 1]
    model_level = pruning_requests(options(), namespace(), stacks)  # fairseq's decoder_layers_to_keep="0,1"
    assert list(model_level) == ["decoder"] and model_level["decoder"].kept(4) == [0, 1]
    with pytest.raises(PruningError, match="the encoder is pruned twice: by --encoder-prune-to and by --prune-to"):
        pruning_requests(options(encoder_prune_to=2, prune_to=3), plain, stacks)
    with pytest.raises(PruningError, match="--encoder-prune-to: this model has no encoder"):
        pruning_requests(options(encoder_prune_to=2), {"decoder_layers": 4}, ("decoder",))


def test_count_parameters_counts_a_tied_tensor_once_and_survives_a_save():
    """Tied embeddings are saved under two names; fairseq counts them once, and so must the sweep's column."""
    embed = torch.randn(10, 4)
    state = {"decoder.embed_tokens.weight": embed, "decoder.output_projection.weight": embed,
             "decoder.layers.0.fc1.weight": torch.randn(3, 4), "decoder.layers.0.fc1.bias": torch.randn(3),
             "decoder.version": torch.tensor([3.0]), "steps": torch.tensor([7])}
    assert count_parameters(state) == 40 + 12 + 3 + 1  # the integer buffer is not a parameter
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert count_parameters(torch.load(buffer, weights_only=True)) == 56
    state["decoder.output_projection.weight"] = embed.clone()  # untied: two tensors
    assert count_parameters(state) == 96
