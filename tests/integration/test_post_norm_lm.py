"""Post-norm and pre-norm plugin LMs: what each flag builds, checked against fairseq's own transformer_lm, a hand
computation of the post-norm block, and a checkpoint written by fairseq-train.

fairseq decides the norm this way (read in fairseq/models/transformer_lm.py): ``--arch transformer_lm`` (and our
``transformer_lm_layerdrop``) take the config's default, post-norm, unless ``--decoder-normalize-before``; every
named variant runs ``base_lm_architecture``, which sets pre-norm whatever the flags say. ``--decoder-post-norm``
makes any plugin LM post-norm."""

import pytest
import torch

from tests.helpers import PLUGIN, TRAIN_COMMON, build_model, fairseq, load_models

LM = ["--task", "language_modeling", "--tokens-per-sample", "32"]
SMALL = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
         "--decoder-attention-heads", "4", "--decoder-input-dim", "32", "--decoder-output-dim", "32"]


def norms(model):
    """(layer norm before each block?, final layer norm?) of a built decoder, every layer alike."""
    layers = list(model.decoder.layers)
    assert len({layer.normalize_before for layer in layers}) == 1
    return layers[0].normalize_before, model.decoder.layer_norm is not None


def tokens(task, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(task.dictionary.nspecial, len(task.dictionary), (3, 11), generator=generator)


def post_norm_by_hand(decoder, tokens, post=True):
    """The decoder's logits computed from its modules: x = LN(x + block(x)) for each block (post-norm), or
    x = x + block(LN(x)) (pre-norm order, for contrast); then the output projection, no final layer norm."""
    for layer in decoder.layers:  # the plain block: none of fairseq's optional extras
        assert layer.attn_ln is None and layer.ffn_layernorm is None and layer.w_resid is None and layer.c_attn is None
    x = decoder.embed_scale * decoder.embed_tokens(tokens)
    if decoder.project_in_dim is not None:
        x = decoder.project_in_dim(x)
    x = (x + decoder.embed_positions(tokens)).transpose(0, 1)
    length = tokens.size(1)
    future = torch.triu(torch.full((length, length), float("-inf")), 1)

    def attention(h):
        return layer.self_attn(query=h, key=h, value=h, attn_mask=future, need_weights=False)[0]

    def feed_forward(h):
        return layer.fc2(layer.activation_fn(layer.fc1(h)))

    for layer in decoder.layers:
        if post:
            x = layer.self_attn_layer_norm(x + attention(x))
            x = layer.final_layer_norm(x + feed_forward(x))
        else:
            x = x + attention(layer.self_attn_layer_norm(x))
            x = x + feed_forward(layer.final_layer_norm(x))
    x = x.transpose(0, 1)
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return decoder.output_projection(x)


def test_a_post_norm_lm_from_fairseq_train_is_post_norm_in_its_checkpoint_and_in_what_it_computes(lm_data, tmp_path):
    # the tiny variant, which fairseq's base_lm_architecture would make pre-norm
    fairseq("fairseq-train", lm_data, *TRAIN_COMMON, *LM, "--save-dir", tmp_path, "--user-dir", PLUGIN,
            "--arch", "transformer_lm_layerdrop_tiny", "--decoder-post-norm", *SMALL, "--max-update", "2")
    state = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    cfg = state["cfg"]["model"]
    assert cfg["decoder_post_norm"] is True and cfg["decoder_normalize_before"] is False
    assert not [key for key in state["model"] if key.startswith("decoder.layer_norm.")]  # no final layer norm
    block_norms = ("self_attn_layer_norm", "final_layer_norm")  # each layer's two norms, after its blocks here
    assert {f"decoder.layers.{i}.{norm}.weight" for i in range(2) for norm in block_norms} <= set(state["model"])

    model, task = load_models(lm_data, tmp_path / "checkpoint_last.pt", parser="eval_lm")
    assert norms(model) == (False, False)
    batch = tokens(task)
    with torch.no_grad():
        logits = model(batch)[0]
        by_hand = post_norm_by_hand(model.decoder, batch)
        pre_norm_order = post_norm_by_hand(model.decoder, batch, post=False)
    assert torch.allclose(logits, by_hand, atol=1e-5), (logits - by_hand).abs().max()
    assert not torch.allclose(logits, pre_norm_order, atol=1e-2)  # the hand computation tells the two apart


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_at_rate_0_each_norm_computes_exactly_what_fairseqs_transformer_lm_computes(lm_data, norm):
    ours_flag, theirs_flag = {"pre": ("--decoder-normalize-before",) * 2, "post": ("--decoder-post-norm", None)}[norm]
    ours, task = build_model(lm_data, *LM, "--arch", "transformer_lm_layerdrop", "--decoder-layerdrop", "0", *SMALL,
                             ours_flag)
    theirs, _ = build_model(lm_data, *LM, "--arch", "transformer_lm", *SMALL, *([theirs_flag] if theirs_flag else []))
    expected = (True, True) if norm == "pre" else (False, False)
    assert norms(ours) == norms(theirs) == expected
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    batch = tokens(task, seed=1)
    with torch.no_grad():
        assert torch.equal(ours(batch)[0], theirs(batch)[0])


def test_each_architecture_builds_the_norm_its_flags_say_and_contradicting_flags_are_refused(lm_data):
    def built(arch, *flags):
        return norms(build_model(lm_data, *LM, "--arch", arch, *SMALL, *flags)[0])

    assert built("transformer_lm_layerdrop") == (False, False)  # fairseq's config default, as transformer_lm
    assert built("transformer_lm_layerdrop", "--decoder-post-norm") == (False, False)
    assert built("transformer_lm_layerdrop_tiny") == (True, True)  # base_lm_architecture: pre-norm
    assert built("transformer_lm_layerdrop_tiny", "--decoder-post-norm") == (False, False)
    for arch in ("transformer_lm_layerdrop", "transformer_lm_layerdrop_tiny"):
        with pytest.raises(ValueError, match="--decoder-post-norm .* --decoder-normalize-before .*: give one of them"):
            build_model(lm_data, *LM, "--arch", arch, *SMALL, "--decoder-post-norm", "--decoder-normalize-before")
