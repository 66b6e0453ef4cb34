"""Self-speculative decoding is fairseq's greedy decoding: a seeded property test against fairseq's own
``SequenceGenerator`` at beam 1, and exact decoding statistics.

Tiny models are built in this process (fairseq's and the plugin's translation and language-model
architectures; pre-norm with and without the final layer norm, post-norm) and given new random weights for
every case, with a sharpened output layer (peaked, not uniform, predictions) and, at random, weakened layers
above the exit so that drafts are often accepted. Each case draws E, K, a batch, prefixes (with end of
sentence inside, pad gaps, rows shorter than the batch's width), ``--min-len``, ``--max-len-a/b``,
``--unk-penalty``, ``--temperature``, the length normalization; the hypotheses must be fairseq's token for
token, score for score (float tolerance: fairseq adds cumulative sums, we add per-position scores).

The statistics are checked against a second, naive implementation that shares no code with the generator:
the drafts are recomputed by the decoder truncated to its first E layers (fairseq's own forward over the
whole prefix, no cache), the full model's choices are fairseq's output itself. And in one case whose counts
are known by hand: layers above the exit that add exactly zero (so every draft is accepted) and
``--min-len`` = maximum length M, where each sentence takes M // (K + 1) + 1 verifications.
"""

import copy
import math
import random

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_layerdrop.decoding.self_speculative import SelfSpeculativeGenerator
from tests.helpers import build_model

WORDS = 12  # + fairseq's four special symbols
CASES = 40
SMALL = ["--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", "--decoder-attention-heads", "2",
         "--decoder-layerdrop", "0"]
MT = SMALL + ["--task", "translation", "-s", "src", "-t", "tgt", "--encoder-layers", "2", "--encoder-embed-dim", "16",
              "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--encoder-layerdrop", "0"]
LM = SMALL + ["--task", "language_modeling"]  # input and output width 512: project_in_dim and project_out_dim
ARCHITECTURES = {  # name: flags of fairseq-train
    "mt_prenorm": MT + ["--arch", "transformer_layerdrop", "--decoder-layers", "4", "--encoder-normalize-before",
                        "--decoder-normalize-before"],
    "mt_prenorm_no_final_norm": MT + ["--arch", "transformer_layerdrop", "--decoder-layers", "3",
                                      "--decoder-normalize-before", "--no-decoder-final-norm"],
    "mt_postnorm_fairseq": MT + ["--arch", "transformer", "--decoder-layers", "3"],
    "lm_prenorm": LM + ["--arch", "transformer_lm_layerdrop", "--decoder-layers", "4", "--decoder-normalize-before"],
    "lm_prenorm_no_final_norm_fairseq": LM + ["--arch", "transformer_lm", "--decoder-layers", "3",
                                              "--decoder-normalize-before", "--no-decoder-final-norm"],
    "lm_postnorm": LM + ["--arch", "transformer_lm_layerdrop", "--decoder-layers", "3"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    data = tmp_path_factory.mktemp("dicts")
    for name in ("dict.txt", "dict.src.txt", "dict.tgt.txt"):
        (data / name).write_text("".join(f"w{i} 1\n" for i in range(WORDS)))
    built = {}
    for name, flags in ARCHITECTURES.items():
        model, task = build_model(data, *flags)
        built[name] = (model.eval(), task.target_dictionary)
    decoders = {name: m.decoder for name, (m, _) in built.items()}
    for name, decoder in decoders.items():  # the models are what their names say
        assert decoder.layers[0].normalize_before == ("prenorm" in name), name
        assert (decoder.layer_norm is not None) == ("prenorm" in name and "no_final_norm" not in name), name
    return built


def randomize(model, rng, exit_layer, upper_scale, sharpness):
    """New random weights; the output layer sharpened; the layers above the exit scaled by ``upper_scale``
    where they add to the residual stream (0: they add exactly nothing)."""
    gen = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.size(1)))
            elif "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name in ("embed_tokens", "output_projection"):
            getattr(model.decoder, name).weight.mul_(sharpness if name == "output_projection" else math.sqrt(0.5))
        for layer in list(model.decoder.layers)[exit_layer:]:
            for module in (layer.self_attn.out_proj, getattr(layer, "encoder_attn", None), layer.fc2):
                module = getattr(module, "out_proj", module)
                if module is not None:
                    module.weight.mul_(upper_scale)
                    module.bias.mul_(upper_scale)


def random_case(rng, kind, vocab, max_positions):
    pad, eos, unk = 1, 2, 3
    bsz = rng.randint(1, 4)
    words = lambda: rng.choice(range(4, vocab)) if rng.random() > 0.1 else unk  # noqa: E731
    if kind == "mt":
        lengths = [rng.randint(1, 6) for _ in range(bsz)]
        width = max(lengths) + 1
        src = torch.full((bsz, width), pad, dtype=torch.long)
        for i, n in enumerate(lengths):  # left-padded, ending with end of sentence, as fairseq batches them
            src[i, width - n - 1:] = torch.tensor([words() for _ in range(n)] + [eos])
        src_lengths = torch.tensor([n + 1 for n in lengths])
    prefix = None
    if kind == "lm" or rng.random() < 0.6:
        width = rng.randint(1, 6)
        prefix = torch.full((bsz, width), pad, dtype=torch.long)
        for i in range(bsz):
            n = rng.randint(0 if kind == "mt" else 1, width)
            start = width - n if rng.random() < 0.15 else 0  # now and then a row that starts with pad
            # (an end of sentence after a pad makes fairseq's own generator fail an assertion: not drawn)
            row = [eos if rng.random() < 0.15 and start == 0 else words() for _ in range(n)]
            prefix[i, start:start + n] = torch.tensor(row, dtype=torch.long)
    if kind == "lm":  # the prompt is the source, as fairseq's language-modeling task passes it
        src, src_lengths = prefix.clone(), prefix.ne(pad).sum(1)
        if rng.random() < 0.2:  # and now and then a caller that forces no prefix
            prefix = None
    max_len_a = rng.choice([0, 0.5, 1])
    max_len_b = rng.randint(1, 9)
    max_len = min(int(max_len_a * src.size(1) + max_len_b), max_positions - 1)
    options = dict(beam_size=1, max_len_a=max_len_a, max_len_b=max_len_b,
                   min_len=rng.choice([1, 1, rng.randint(1, max_len)]),
                   unk_penalty=rng.choice([0.0, -3.0, 2.0]), temperature=rng.choice([1.0, 1.0, 0.7]),
                   normalize_scores=rng.random() < 0.8, len_penalty=rng.choice([1.0, 0.5]))
    sample = {"net_input": {"src_tokens": src, "src_lengths": src_lengths}}
    if kind == "mt":
        sample["net_input"]["prev_output_tokens"] = torch.full((bsz, 1), eos)
    return sample, prefix, options, max_len


class NaiveRules:
    """fairseq's rules at beam 1, restated from fairseq/sequence_generator.py (not the generator's code)."""

    def __init__(self, tgt_dict, options, prefix_row, width, max_len):
        self.pad, self.eos, self.unk = tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()
        self.o, self.row, self.width, self.max_len = options, prefix_row, width, max_len

    def forced(self, step):
        if step >= self.max_len:
            return self.eos
        if step < self.width and self.row[step] != self.pad:
            return self.row[step]
        return None

    def choose(self, lprobs, step):
        if self.forced(step) is not None:
            return self.forced(step)
        lprobs = lprobs.clone()
        lprobs[self.pad] = -math.inf
        lprobs[self.unk] -= self.o["unk_penalty"]
        if step < self.o["min_len"] and not (step < self.width and step < self.max_len):  # not in the prefix
            lprobs[self.eos] = -math.inf
        return int(lprobs.argmax())


def naive_counts(drafter, encoder_out, hypothesis, rules, draft_tokens, temperature):
    """The statistics of self-speculative decoding of one sentence, given fairseq's greedy hypothesis, with the
    drafts recomputed from scratch by the truncated decoder; and what happened (``bonus``, ``eos_in_prefix``)."""
    eos = rules.eos
    counts = dict(drafted=0, accepted=0, verifications=0, chosen=0, forced=0, tokens=0, bonus=0, eos_in_prefix=0)
    lead = 0  # the leading forced prefix: decoded before any verification
    while lead < len(hypothesis) and lead < rules.max_len and rules.forced(lead) is not None:
        lead += 1
        if hypothesis[lead - 1] == eos:
            counts["eos_in_prefix"] = 1
            return counts
    pos = lead
    while pos < len(hypothesis):
        chain, is_draft = [], []
        while True:
            step = pos + len(chain)
            forced = rules.forced(step)
            if step >= rules.max_len or (forced is None and sum(is_draft) == draft_tokens):
                break
            if forced is None:
                prev = torch.tensor([[eos] + hypothesis[:pos] + chain])
                logits = drafter(prev, encoder_out=encoder_out)[0][0, -1] / temperature
                token = rules.choose(torch.log_softmax(logits.float(), -1), step)
            else:
                token = forced
            chain.append(token)
            is_draft.append(forced is None)
            if token == eos:
                break
        accepted = 0
        while accepted < len(chain) and chain[accepted] == hypothesis[pos + accepted]:
            accepted += 1
        counts["drafted"] += sum(is_draft)
        counts["accepted"] += sum(is_draft[:accepted])
        counts["forced"] += accepted - sum(is_draft[:accepted])
        counts["verifications"] += 1
        produced = accepted
        if not (accepted == len(chain) and chain and chain[-1] == eos):
            produced += 1
            if rules.forced(pos + accepted) is None:
                counts["chosen"] += 1
                counts["bonus"] += accepted == len(chain) and any(is_draft)
            else:
                counts["forced"] += 1
        pos += produced
    assert pos == len(hypothesis)
    counts["tokens"] = len(hypothesis) - lead
    return counts


def truncated(model, exit_layer):
    drafter = copy.deepcopy(model)
    drafter.decoder.layers = torch.nn.ModuleList(list(drafter.decoder.layers)[:exit_layer])
    drafter.decoder.num_layers = exit_layer
    return drafter


def test_self_speculative_is_fairseq_greedy_on_random_models(models):
    rng = random.Random(20261201)
    names = list(models)
    seen = dict(eos_in_prefix=0, bonus=0, accepted=0, rejected=0, max_len_reached=0, sentences=0)
    for case in range(CASES):
        name = names[case % len(names)]
        model, tgt_dict = models[name]
        depth = len(model.decoder.layers)
        exit_layer = rng.randint(1, depth - 1)
        draft_tokens = rng.choice([0, 1, 2, 3, 4, 6])
        randomize(model, rng, exit_layer, upper_scale=rng.choice([0.0, 0.1, 1.0]), sharpness=rng.uniform(2, 8))
        sample, prefix, options, max_len = random_case(rng, name[:2], len(tgt_dict), model.max_decoder_positions())
        where = f"case {case} ({name}, E={exit_layer}, K={draft_tokens}, {options}, prefix {prefix})"

        expected = SequenceGenerator([model], tgt_dict, **options).generate([model], sample, prefix_tokens=prefix)
        generator = SelfSpeculativeGenerator([model], tgt_dict, exit_layer=exit_layer, draft_tokens=draft_tokens,
                                             **options)
        found = generator.generate([model], sample, prefix_tokens=prefix)
        assert len(found) == len(expected)
        for i, (ours, theirs) in enumerate(zip(found, expected)):
            ours, theirs = ours[0], theirs[0]
            assert ours["tokens"].tolist() == theirs["tokens"].tolist(), f"{where}, sentence {i}"
            assert torch.allclose(ours["positional_scores"], theirs["positional_scores"], atol=1e-4), where
            assert math.isclose(float(ours["score"]), float(theirs["score"]), abs_tol=1e-4), where

        # the statistics, from a naive second implementation
        drafter = truncated(model, exit_layer)
        encoder_outs = None
        if name.startswith("mt"):
            encoder_outs = drafter.encoder(sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
        totals = {}
        for i, hypo in enumerate(expected):
            tokens = hypo[0]["tokens"].tolist()
            width = 0 if prefix is None else prefix.size(1)
            row = [] if prefix is None else prefix[i].tolist()
            rules = NaiveRules(tgt_dict, options, row, width, max_len)
            encoder_out = None if encoder_outs is None else drafter.encoder.reorder_encoder_out(
                encoder_outs, torch.tensor([i]))
            counts = naive_counts(drafter.decoder, encoder_out, tokens, rules, draft_tokens, options["temperature"])
            totals = {key: totals.get(key, 0) + value for key, value in counts.items()}
            seen["max_len_reached"] += len(tokens) == max_len + 1
        s = generator.stats
        keys = ("drafted", "accepted", "verifications", "chosen", "forced", "tokens")
        assert {key: getattr(s, key) for key in keys} == {key: totals[key] for key in keys}, where
        assert s.tokens == s.accepted + s.chosen + s.forced and s.chosen <= s.verifications, where
        assert s.sentences == len(expected)
        seen["sentences"] += s.sentences
        seen["accepted"] += s.accepted
        seen["rejected"] += s.drafted - s.accepted
        seen["bonus"] += totals["bonus"]
        seen["eos_in_prefix"] += totals["eos_in_prefix"]
    # the cases reached what they are for
    assert all(count > 0 for count in seen.values()), seen


@pytest.mark.parametrize("max_len, draft_tokens", [(10, 4), (9, 4), (7, 1), (6, 6), (5, 8)])
def test_counts_when_every_draft_is_accepted(models, max_len, draft_tokens):
    """Layers above the exit that add exactly zero (pre-norm: x + 0) make the drafts the full model's
    choices; ``--min-len`` = the maximum length M makes each sentence M tokens and the end of sentence
    forced at M. A verification at position p takes min(K, M - p) drafts, all accepted, and the full
    model's bonus token; so a sentence takes M // (K + 1) + 1 verifications, the last one yielding only the
    forced end of sentence."""
    model, tgt_dict = models["lm_prenorm"]
    exit_layer = 2
    randomize(model, random.Random(max_len * 10 + draft_tokens), exit_layer, upper_scale=0.0, sharpness=4)
    prompts = torch.tensor([[5, 6], [7, 8], [9, 4]])  # prompts of one length: --min-len applies after them
    sample = {"net_input": {"src_tokens": prompts, "src_lengths": prompts.ne(1).sum(1)}}
    options = dict(beam_size=1, max_len_a=0, max_len_b=max_len, min_len=max_len)
    generator = SelfSpeculativeGenerator([model], tgt_dict, exit_layer=exit_layer, draft_tokens=draft_tokens,
                                         **options)
    found = generator.generate([model], sample, prefix_tokens=prompts)
    expected = SequenceGenerator([model], tgt_dict, **options).generate([model], sample, prefix_tokens=prompts)
    assert [h[0]["tokens"].tolist() for h in found] == [h[0]["tokens"].tolist() for h in expected]
    assert all(len(h[0]["tokens"]) == max_len + 1 for h in found)

    sentences = 3
    generated = sentences * (max_len + 1 - 2)
    # per sentence, after its prompt of n tokens: positions n..M-1 drafted in runs of K with a bonus token after
    # each run, then the forced end of sentence at M
    verifications = sum((max_len - n) // (draft_tokens + 1) + 1 for n in (2, 2, 2))
    s = generator.stats
    assert s.tokens == generated
    assert s.verifications == verifications
    assert s.drafted == s.accepted == generated - verifications
    assert s.chosen == verifications - sentences and s.forced == sentences
    assert s.acceptance_rate == 1.0
