"""Run a fairseq transformer decoder in pieces: the embeddings, a range of layers, the output head.

Self-speculative decoding (LayerSkip, Elhoushi et al. 2024, arXiv 2404.16710) runs the first E layers
on one token at a time to draft, and layers E..N-1 on several positions at once to verify, each
range with its own part of one incremental state (fairseq's per-layer cache of keys and values).
fairseq's ``TransformerDecoderBase.forward`` runs all layers on the last position only; this class
calls the decoder's own modules in the order of its ``extract_features`` (embedding scale, optional
quant-noise, input projection, positions, embedding layer norm; then the layers; then the final layer
norm, output projection and ``output_layer``) and adds what the forward has not: a layer range,
several new positions with a causal mask against the cache, and cropping the cache
(``compat.crop_self_attention_cache``).
"""

import math

import torch

from ..compat import crop_self_attention_cache


class DecoderLayerRange:
    """One sentence's decoding state over a fairseq ``TransformerDecoderBase``.

    Args:
        decoder: the model's decoder (in eval mode).
        encoder_out: fairseq's encoder output dict for this one sentence, or None (language model).
        max_positions: how many positions to prepare position embeddings for.
    """

    def __init__(self, decoder, encoder_out, max_positions):
        self.decoder = decoder
        self.layers = [decoder.layers[i] for i in range(len(decoder.layers))]
        self.state = {}
        self.enc = self.padding_mask = None
        if encoder_out is not None and len(encoder_out["encoder_out"]) > 0:
            self.enc = encoder_out["encoder_out"][0]
        if encoder_out is not None and len(encoder_out.get("encoder_padding_mask", [])) > 0:
            self.padding_mask = encoder_out["encoder_padding_mask"][0]
        self.positions = None
        if decoder.embed_positions is not None:  # positions depend only on the index: no padding in one sentence
            dummy = torch.full((1, max_positions), decoder.dictionary.eos(), dtype=torch.long,
                               device=decoder.embed_tokens.weight.device)
            self.positions = decoder.embed_positions(dummy)

    def embed(self, tokens, start):
        """Embeddings of ``tokens`` (a list of ids) at positions ``start..``: shape (len, 1, C)."""
        d = self.decoder
        ids = torch.tensor([tokens], dtype=torch.long, device=d.embed_tokens.weight.device)
        x = d.embed_scale * d.embed_tokens(ids)
        if d.quant_noise is not None:
            x = d.quant_noise(x)
        if d.project_in_dim is not None:
            x = d.project_in_dim(x)
        if self.positions is not None:
            x += self.positions[:, start:start + len(tokens)]
        if d.layernorm_embedding is not None:
            x = d.layernorm_embedding(x)
        x = d.dropout_module(x)
        return x.transpose(0, 1)

    def run(self, x, first, last, cached):
        """Layers ``first..last-1`` on new positions ``x`` (T x 1 x C) after ``cached`` cached positions."""
        new = x.size(0)
        mask = None
        if new > 1:  # new position i sees the cache and new positions 0..i
            mask = torch.zeros(new, cached + new, dtype=x.dtype, device=x.device)
            mask[:, cached:] = torch.triu(torch.full((new, new), -math.inf, dtype=x.dtype, device=x.device), 1)
        for layer in self.layers[first:last]:
            x, _, _ = layer(x, self.enc, self.padding_mask, self.state, self_attn_mask=mask,
                            self_attn_padding_mask=None, need_attn=False, need_head_weights=False)
        return x

    def log_probs(self, x, temperature=1.0):
        """The output head on hidden states ``x`` (T x 1 x C): log-probabilities, shape (T, vocab)."""
        d = self.decoder
        if d.layer_norm is not None:
            x = d.layer_norm(x)
        x = x.transpose(0, 1)
        if d.project_out_dim is not None:
            x = d.project_out_dim(x)
        logits = d.output_layer(x)
        if temperature != 1.0:
            logits = logits.div_(temperature)
        return d.get_normalized_probs((logits, None), log_probs=True, sample=None)[0]

    def crop(self, length):
        """Forget every layer's cached keys and values beyond the first ``length`` positions."""
        for layer in self.layers:
            crop_self_attention_cache(layer.self_attn, self.state, length)
