"""Pruning the state dict of an encoder-only model (RoBERTa: ``encoder.sentence_encoder.layers.N.``): exactly the
kept layers, renumbered; the embeddings, the LM head and the classification heads untouched (by key and tensor)."""

from argparse import Namespace

import pytest
import torch

from fairseq_layerdrop.pruning.state_dict import PruningError, layer_indices, prune_state_dict

PARTS = ("self_attn.k_proj.weight", "fc1.weight", "final_layer_norm.bias")
OTHERS = ("encoder.sentence_encoder.embed_tokens.weight", "encoder.sentence_encoder.embed_positions.weight",
          "encoder.sentence_encoder.layernorm_embedding.weight", "encoder.lm_head.weight", "encoder.lm_head.bias",
          "encoder.lm_head.dense.weight", "classification_heads.mnli.dense.weight",
          "classification_heads.mnli.out_proj.bias")


def roberta_state(prefix="encoder.sentence_encoder", layers=4):
    state = {f"{prefix}.layers.{i}.{part}": torch.randn(3) for i in range(layers) for part in PARTS}
    state.update({key: torch.randn(3) for key in OTHERS})
    return state


@pytest.mark.parametrize("prefix", ["encoder.sentence_encoder", "decoder.sentence_encoder"])  # fairseq's old name
def test_roberta_keeps_the_listed_encoder_layers_renumbered_and_every_other_tensor(prefix):
    state = roberta_state(prefix)
    cfg = Namespace(encoder_layers=4, encoder_layers_to_keep="1,2", arch="roberta")
    pruned, new_cfg = prune_state_dict(state, cfg, {"encoder": [3, 0]})
    expected = {f"{prefix}.layers.0.{part}": state[f"{prefix}.layers.3.{part}"] for part in PARTS}
    expected.update({f"{prefix}.layers.1.{part}": state[f"{prefix}.layers.0.{part}"] for part in PARTS})
    expected.update({key: state[key] for key in OTHERS})
    assert sorted(pruned) == sorted(expected)
    assert all(pruned[key] is value for key, value in expected.items())
    assert (new_cfg.encoder_layers, new_cfg.encoder_layers_to_keep) == (2, None) and cfg.encoder_layers == 4
    assert layer_indices(pruned, "encoder") == {0, 1} and layer_indices(pruned, "decoder") == set()


def test_roberta_has_no_decoder_to_prune():
    with pytest.raises(PruningError, match="this model has no decoder"):
        prune_state_dict(roberta_state(), Namespace(encoder_layers=4), {"decoder": [0]})
    with pytest.raises(PruningError, match=r"kept layer\(s\) \[4\] out of range for the encoder \(it has 4 layers"):
        prune_state_dict(roberta_state(), Namespace(encoder_layers=4), {"encoder": [0, 4]})


def test_a_state_dict_with_two_encoder_layer_stacks_is_refused():
    state = {**roberta_state(), **roberta_state("encoder", layers=2)}
    with pytest.raises(PruningError, match="encoder layers under 2 names"):
        prune_state_dict(state, Namespace(encoder_layers=4), {"encoder": [0]})
