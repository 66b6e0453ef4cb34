"""Self-speculative greedy decoding (LayerSkip, Elhoushi et al., ACL 2024, arXiv 2404.16710, Sec. 4).

The first E decoder layers and the model's own output head draft up to K tokens, one at a time;
layers E..N-1 then run once over the drafted positions (reusing the cached keys and values of layers
0..E-1 and the drafts' layer-E hidden states) and give the full model's prediction at each. The
longest prefix of drafts that the full model agrees with is kept, plus the full model's own next
token; the rejected positions are cropped from every layer's cache. Every kept token is the full
model's greedy choice, so the output is the one of ``--beam 1`` (in exact arithmetic; see
docs/self_speculative.md on floating point).

The decision rules of fairseq's ``SequenceGenerator`` at beam 1 are applied to every prediction,
drafts included: pad never chosen, ``--unk-penalty``, ``--min-len`` (not inside the prefix's width),
end of sentence forced at the maximum length (computed from the padded batch, as fairseq does),
prefix tokens forced (``--prefix-size``; a language model's prompt) below the maximum length, wherever
the sentence's prefix row is not pad, and the hypothesis ended by an end of sentence in the prefix,
``--temperature`` in the printed scores. A token forced by a rule is not drafted and not counted as a
draft. A batch is decoded one sentence at a time (the sentences accept different numbers of drafts);
its encoder runs once for the batch.

``draft_tokens=0`` decodes plain greedy through the same code (no drafts; every step runs all
layers on one position): the benchmark's second baseline. The command-line flag refuses 0.
"""

import math
import weakref

import torch
from fairseq.sequence_generator import SequenceGenerator

from .layer_range import DecoderLayerRange
from .speculative_stats import SpeculativeStats


class SelfSpeculativeGenerator(SequenceGenerator):
    """fairseq's generator, decoding greedily and self-speculatively (beam 1 only).

    Args (besides ``SequenceGenerator``'s): ``exit_layer`` E (drafts come from layers 0..E-1) and
    ``draft_tokens`` K (drafts per verification).
    """

    def __init__(self, models, tgt_dict, exit_layer, draft_tokens, **kwargs):
        super().__init__(models, tgt_dict, **kwargs)
        self.exit_layer, self.draft_tokens = exit_layer, draft_tokens
        decoder = self.model.models[0].decoder
        self.stats = SpeculativeStats(exit_layer, draft_tokens, len(decoder.layers))
        weakref.finalize(self, self.stats.log_summary)  # at the end of fairseq-generate / -interactive

    @torch.no_grad()
    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        if constraints is not None:
            raise ValueError("--self-speculative does not support --constraints")
        self.stats.start()
        net_input = sample["net_input"]
        src_tokens = net_input["src_tokens"]
        bsz, src_len = src_tokens.size()[:2]
        max_len = min(int(self.max_len_a * src_len + self.max_len_b), self.max_len - 1)  # fairseq's rule
        assert self.min_len <= max_len, "min_len cannot be larger than max_len, please adjust these!"
        encoder_outs = self.model.forward_encoder(net_input)
        bos = self.eos if bos_token is None else bos_token
        finalized = []
        for i in range(bsz):
            encoder_out = None
            if encoder_outs is not None:
                index = torch.tensor([i], dtype=torch.long, device=src_tokens.device)
                encoder_out = self.model.reorder_encoder_out(encoder_outs, index)[0]
            rules = _Rules(self, prefix_tokens, i, max_len)
            finalized.append([self._decode_sentence(encoder_out, bos, rules)])
        self.stats.sentences += bsz
        self.stats.stop()
        return finalized

    def _decode_sentence(self, encoder_out, bos, rules):
        stack = DecoderLayerRange(self.model.models[0].decoder, encoder_out, rules.max_len + 1)
        num_layers, exit_layer, eos, stats = len(stack.layers), self.exit_layer, self.eos, self.stats
        prompt = rules.prompt()
        tokens, scores = [bos] + prompt, []
        if prompt:  # the leading forced tokens: all layers over their positions at once
            lprobs = stack.log_probs(stack.run(stack.embed(tokens[:-1], 0), 0, num_layers, 0), self.temperature)
            scores = [float(rules.adjust(lprobs[step], step)[token]) for step, token in enumerate(prompt)]
        finished = prompt[-1:] == [eos]  # fairseq ends the hypothesis at an end of sentence in the prefix
        while not finished:
            cached = len(tokens) - 1  # positions whose keys and values every layer holds
            # draft: layers 0..E-1, one position at a time; a token forced by a rule is taken, not drafted
            hidden, chain, is_draft, token = [], [], [], tokens[-1]
            while True:
                step = cached + len(chain)
                hidden.append(stack.run(stack.embed([token], step), 0, exit_layer, step))
                forced = rules.forced(step)
                if step >= rules.max_len or (forced is None and sum(is_draft) == self.draft_tokens):
                    break  # the full model's pass decides the token here (or scores the forced end of sentence)
                if forced is None:
                    token = int(rules.adjust(stack.log_probs(hidden[-1], self.temperature)[0], step).argmax())
                else:
                    token = forced
                chain.append(token)
                is_draft.append(forced is None)
                if token == eos:
                    break
            # verify: layers E..N-1 over all drafted positions in one call
            x = stack.run(torch.cat(hidden, dim=0), exit_layer, num_layers, cached)
            lprobs = stack.log_probs(x, self.temperature)
            rows = [rules.adjust(lprobs[r], cached + r) for r in range(len(hidden))]
            choices = [rules.choose(row, cached + r) for r, row in enumerate(rows)]
            accepted = 0
            while accepted < len(chain) and chain[accepted] == choices[accepted]:
                accepted += 1
            new = chain[:accepted]
            drafts_kept = sum(is_draft[:accepted])
            stats.accepted += drafts_kept
            stats.forced += accepted - drafts_kept
            if accepted < len(hidden):  # the full model's own next token: a correction, a bonus, or forced
                new = new + [choices[accepted]]
                if rules.forced(cached + accepted) is None:
                    stats.chosen += 1
                else:
                    stats.forced += 1
            scores += [float(rows[r][token]) for r, token in enumerate(new)]
            tokens += new
            finished = new[-1] == eos
            stack.crop(cached + len(new))
            stats.drafted += sum(is_draft)
            stats.verifications += 1
            stats.tokens += len(new)
        return self._hypothesis(tokens[1:], scores)

    def _hypothesis(self, tokens, scores):
        positional = torch.tensor(scores)
        score = positional.sum()
        if self.normalize_scores:
            score = score / len(tokens) ** self.len_penalty
        return {"tokens": torch.tensor(tokens, dtype=torch.long), "score": score, "attention": torch.empty(0),
                "alignment": torch.empty(0), "positional_scores": positional}


class _Rules:
    """fairseq ``SequenceGenerator``'s decision rules at beam 1 for one sentence of a batch.

    ``prefix_tokens`` is the batch's (B x P, pad where a row has no prefix token), ``max_len`` the
    batch's maximum length. At step ``s`` fairseq forces end of sentence if ``s >= max_len``, else the
    row's prefix token if ``s < P`` and it is not pad; ``--min-len`` and suppressed tokens apply only
    outside the prefix's width (``s >= P`` or ``s >= max_len``), whatever the row holds there.
    """

    def __init__(self, generator, prefix_tokens, index, max_len):
        self.g, self.max_len = generator, max_len
        self.width = 0 if prefix_tokens is None else prefix_tokens.size(1)
        self.row = [] if prefix_tokens is None else prefix_tokens[index].tolist()

    def forced(self, step):
        """The token a rule forces at ``step``, or None."""
        if step >= self.max_len:
            return self.g.eos
        if step < self.width and self.row[step] != self.g.pad:
            return self.row[step]
        return None

    def prompt(self):
        """The leading run of forced prefix tokens, up to the first end of sentence in it."""
        tokens = []
        for step in range(min(self.width, self.max_len)):
            if self.row[step] == self.g.pad:
                break
            tokens.append(self.row[step])
            if tokens[-1] == self.g.eos:
                break
        return tokens

    def adjust(self, lprobs, step):
        """fairseq's changes to the log-probabilities predicted at ``step`` (all but prefix forcing)."""
        g = self.g
        lprobs[lprobs != lprobs] = -math.inf
        lprobs[g.pad] = -math.inf
        lprobs[g.unk] -= g.unk_penalty
        if step >= self.max_len:
            eos = lprobs[g.eos].clone()
            lprobs.fill_(-math.inf)
            lprobs[g.eos] = eos
        if not (step < self.width and step < self.max_len):  # fairseq's prefix branch skips these
            if step < g.min_len:
                lprobs[g.eos] = -math.inf
            if g.token_indices_to_suppress is not None:
                lprobs[g.token_indices_to_suppress] = -math.inf
        return lprobs

    def choose(self, lprobs, step):
        """fairseq's greedy choice at ``step`` from the adjusted log-probabilities."""
        forced = self.forced(step)
        return int(lprobs.argmax()) if forced is None else forced
