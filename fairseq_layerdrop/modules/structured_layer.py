"""Run a fairseq transformer layer with some of its blocks dropped (Fan et al., Fig. 4).

fairseq's ``TransformerEncoderLayerBase`` and ``TransformerDecoderLayerBase`` run their blocks in
one ``forward``. To skip a block we run the layer block by block here, in terms of the layer's
own submodules (``self_attn``, ``fc1``/``fc2``, layer norms, dropout), in fairseq's order; a
dropped block is not called at all and the residual passes through it unchanged (with pre-norm
and post-norm alike: a post-norm block's layer norm belongs to the block). The layer's modules,
parameters and checkpoint keys stay fairseq's.

``PlannedLayer(layer, plan)`` is what a ``SeededLayerDropList`` yields in training for a layer
that runs only partly; a layer that runs fully is called as fairseq's own module. With nothing
dropped, ``encoder_layer_forward`` / ``decoder_layer_forward`` compute exactly fairseq's forward
(tested in train and eval mode, pre- and post-norm).

Heads: fairseq's ``MultiheadAttention`` calls ``F.multi_head_attention_forward`` in training, which
never calls ``out_proj`` as a module (hooks there do not fire). A head's output is linear in its
value vectors, so we scale the head's rows of ``v_proj`` (weight and bias) by 0 or 1 / (1 - p)
for the duration of the call (``torch.func.functional_call``); the gradient reaches the real
parameters through the scaling. This works on both of fairseq's attention paths.
"""

import torch
from torch.func import functional_call

from .drop_structure import LayerPlan


def attend(attention, head_scale, **kwargs):
    """Call a fairseq ``MultiheadAttention`` with its heads scaled by ``head_scale`` (None: as is)."""
    if head_scale is None:
        return attention(**kwargs)
    scale = head_scale.to(attention.v_proj.weight).repeat_interleave(attention.head_dim)
    params = {"v_proj.weight": attention.v_proj.weight * scale[:, None]}
    if attention.v_proj.bias is not None:
        params["v_proj.bias"] = attention.v_proj.bias * scale
    return functional_call(attention, params, args=(), kwargs=kwargs)


def residual_block(layer, x, norm, block, residual_weight=None):
    """One of fairseq's residual blocks: [norm] -> block -> dropout -> + residual -> [norm].

    The norm comes first with ``normalize_before`` (pre-norm), last otherwise (post-norm), as in
    fairseq's layers. ``block(x)`` returns ``(x, extra)``; returns ``(x, extra)``. ``residual_weight``
    is the decoder's optional ``w_resid`` (``--scale-resids``).
    """
    residual = x
    if layer.normalize_before:
        x = norm(x)
    x, extra = block(x)
    x = layer.dropout_module(x)
    if residual_weight is not None:
        residual = torch.mul(residual_weight, residual)
    x = layer.residual_connection(x, residual)
    if not layer.normalize_before:
        x = norm(x)
    return x, extra


def feed_forward(layer, x, ffn_layernorm=None):
    """fc1 -> activation -> activation dropout -> [ffn_layernorm] -> fc2; returns ``(x, fc2 output)``."""
    x = layer.activation_dropout_module(layer.activation_fn(layer.fc1(x)))
    if ffn_layernorm is not None:
        x = ffn_layernorm(x)
    x = layer.fc2(x)
    return x, x


def encoder_layer_forward(layer, plan: LayerPlan, x, encoder_padding_mask=None, attn_mask=None):
    """fairseq's ``TransformerEncoderLayerBase.forward``, block by block, running only ``plan``'s blocks."""
    if attn_mask is not None:
        attn_mask = attn_mask.masked_fill(attn_mask.to(torch.bool), -1e8 if x.dtype == torch.float32 else -1e4)
    if plan.attention:
        x, _ = residual_block(layer, x, layer.self_attn_layer_norm, lambda x: attend(
            layer.self_attn, plan.head_scale, query=x, key=x, value=x, key_padding_mask=encoder_padding_mask,
            need_weights=False, attn_mask=attn_mask))
    fc_result = None
    if plan.ffn:
        x, fc_result = residual_block(layer, x, layer.final_layer_norm, lambda x: feed_forward(layer, x))
    if layer.return_fc:
        return x, fc_result
    return x


def decoder_layer_forward(layer, plan: LayerPlan, x, encoder_out=None, encoder_padding_mask=None,
                          incremental_state=None, prev_self_attn_state=None, prev_attn_state=None,
                          self_attn_mask=None, self_attn_padding_mask=None, need_attn=False, need_head_weights=False):
    """fairseq's ``TransformerDecoderLayerBase.forward`` in training, block by block.

    "Attention" is the self-attention block followed by the encoder-attention block. Incremental
    decoding and ``--cross-self-attention`` are not supported (drops happen only in training;
    ``check_structured_layer`` refuses the latter at start).
    """
    if incremental_state is not None or prev_self_attn_state is not None or prev_attn_state is not None:
        raise RuntimeError("structured LayerDrop runs in training only, never in incremental decoding")
    need_attn = need_attn or need_head_weights

    def self_attention(x):
        x, attn = attend(layer.self_attn, plan.head_scale, query=x, key=x, value=x,
                         key_padding_mask=self_attn_padding_mask, need_weights=False, attn_mask=self_attn_mask)
        if layer.c_attn is not None:  # --scale-heads
            tgt_len, bsz = x.size(0), x.size(1)
            x = torch.einsum("tbhd,h->tbhd", x.view(tgt_len, bsz, layer.nh, layer.head_dim), layer.c_attn)
            x = x.reshape(tgt_len, bsz, layer.embed_dim)
        if layer.attn_ln is not None:  # --scale-attn
            x = layer.attn_ln(x)
        return x, attn

    attn = None
    if plan.attention:
        x, attn = residual_block(layer, x, layer.self_attn_layer_norm, self_attention)
        if layer.encoder_attn is not None and encoder_out is not None:
            x, attn = residual_block(layer, x, layer.encoder_attn_layer_norm, lambda x: attend(
                layer.encoder_attn, plan.encoder_head_scale, query=x, key=encoder_out, value=encoder_out,
                key_padding_mask=encoder_padding_mask, static_kv=True,
                need_weights=need_attn or (not layer.training and layer.need_attn), need_head_weights=need_head_weights))
    if plan.ffn:
        x, _ = residual_block(layer, x, layer.final_layer_norm, lambda x: feed_forward(layer, x, layer.ffn_layernorm),
                              residual_weight=layer.w_resid)
    return x, attn, None


def is_decoder_layer(layer) -> bool:
    return hasattr(layer, "encoder_attn")


def check_structured_layer(layer, structure: str) -> None:
    """Refuse, at start, layer options the block-wise forward does not reproduce."""
    if structure != "layer" and getattr(layer, "cross_self_attention", False):
        raise ValueError("--layerdrop-structure other than 'layer' does not support --cross-self-attention")


class PlannedLayer:
    """A layer bound to this step's plan; the stack calls it like the layer itself."""

    def __init__(self, layer, plan: LayerPlan):
        self.layer, self.plan = layer, plan

    def __call__(self, *args, **kwargs):
        forward = decoder_layer_forward if is_decoder_layer(self.layer) else encoder_layer_forward
        return forward(self.layer, self.plan, *args, **kwargs)
