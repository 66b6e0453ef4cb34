"""Naive references for the criteria's exact-value tests (not a test module).

A plugin LM run through an explicit list of kept layers by fairseq's own decoder loop over a plain
``ModuleList``, in eval mode (the tests use dropout 0): none of the plugin's draw, pass or record machinery
runs. The kept layers come from the seeded draw's definition (``layer_uniforms >= p``), the losses and
distances from their formulas, written here once more.
"""

import contextlib

import torch
from torch import nn

from fairseq_layerdrop.modules.seeded_draw import layer_uniforms
from tests.helpers import build_model

TINY_LM = ["--task", "language_modeling", "--tokens-per-sample", "16", "--arch", "transformer_lm_layerdrop_tiny",
           "--dropout", "0", "--attention-dropout", "0", "--activation-dropout", "0", "--seed", "1"]


def tiny_lm(lm_data, *args):
    """A tiny plugin LM without dropout, its task, and a batch of 4 rows whose tails are padded unevenly."""
    model, task = build_model(lm_data, *TINY_LM, *args)
    task.load_dataset("train")
    batches = task.get_batch_iterator(task.dataset("train"), max_sentences=4).next_epoch_itr(shuffle=False)
    sample = next(iter(batches))
    pad = task.target_dictionary.pad()
    tokens, target = sample["net_input"]["src_tokens"].clone(), sample["target"].clone()
    assert tokens.size(0) == 4 and tokens.size(1) >= 12 and not tokens.eq(pad).any()
    for row, cut in ((1, 3), (2, 7)):  # right padding, as fairseq's LM batches
        tokens[row, -cut:] = pad
        target[row, -cut:] = pad
    lengths = tokens.ne(pad).sum(1)
    sample = dict(sample, target=target, ntokens=int(target.ne(pad).sum()),
                  net_input=dict(sample["net_input"], src_tokens=tokens, src_lengths=lengths))
    return model, task, sample


def kept_layers(num_layers, p, seed, update, pass_index=0, micro_batch=0):
    """The layers a pass runs: the draw's definition (keep layer l iff its uniform is >= p)."""
    draws = layer_uniforms(num_layers, seed, update, micro_batch, "decoder", pass_index=pass_index)
    return [i for i in range(num_layers) if draws[i] >= p]


@contextlib.contextmanager
def only_layers(model, kept):
    """Inside: the model's decoder is fairseq's own loop over exactly the ``kept`` layers, in eval mode."""
    decoder = model.decoder
    full, was_training = decoder.layers, model.training
    decoder.layers = nn.ModuleList([full[i] for i in kept])
    model.eval()
    try:
        yield
    finally:
        decoder.layers = full
        model.train(was_training)


def naive_pass(model, sample, kept, head_weights=False):
    """One pass through ``kept``: ``(log-probabilities B x T x V, states, attention)``.

    ``states[j]``: the residual stream after the j-th kept layer (``states[0]``: the embeddings), T x B x C.
    ``attention[l]`` (with ``head_weights``): layer l's per-head self-attention probabilities, B x H x T x S,
    from fairseq's own attention code (its slow path, which returns every head).
    """
    captured = {}
    handles = []
    with only_layers(model, kept):
        if head_weights:
            for l in kept:
                def hook(module, args, kwargs, output, l=l):
                    captured[l] = (module, kwargs)
                handles.append(model.decoder.layers[kept.index(l)].self_attn.register_forward_hook(
                    hook, with_kwargs=True))
        try:
            out = model(**sample["net_input"])
        finally:
            for h in handles:
                h.remove()
        attention = {}
        for l, (module, kwargs) in captured.items():
            q = kwargs["query"]
            _, weights = module(query=q, key=q, value=q, key_padding_mask=kwargs.get("key_padding_mask"),
                                attn_mask=kwargs.get("attn_mask"), static_kv=True, need_weights=True,
                                need_head_weights=True)  # H x B x T x S
            attention[l] = weights.transpose(0, 1).float()
        lprobs = torch.log_softmax(out[0].float(), dim=-1)
    return lprobs, out[1]["inner_states"], attention


def nll_sum(lprobs, target, pad):
    """Cross-entropy summed over the non-padding target tokens."""
    picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -(picked * target.ne(pad)).sum()


def sym_kl(p_log, q_log):
    """(KL(p || q) + KL(q || p)) / 2 over the last dimension; 0 * log 0 = 0 (masked attention keys)."""
    p, q = p_log.exp(), q_log.exp()
    kl_pq = torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)
    kl_qp = torch.where(q > 0, q * (q_log - p_log), torch.zeros_like(q)).sum(-1)
    return (kl_pq + kl_qp) / 2
