"""Self-speculative greedy decoding (LayerSkip, Elhoushi et al., ACL 2024, arXiv 2404.16710, Sec. 4).

The first E decoder layers and the model's own output head draft up to K tokens, one at a time;
layers E..N-1 then run once over the drafted positions (reusing the cached keys and values of layers
0..E-1 and the drafts' layer-E hidden states) and give the full model's prediction at each. The
longest prefix of drafts that the full model agrees with is kept, plus the full model's own next
token; the rejected positions are cropped from every layer's cache. Every kept token is the full
model's greedy choice, so the output is the one of ``--beam 1`` (in exact arithmetic; see
docs/self_speculative.md on floating point).

The decision rules of fairseq's ``SequenceGenerator`` at beam 1 are applied to every prediction,
drafts included: pad never chosen, ``--unk-penalty``, ``--min-len``, end of sentence forced at the
maximum length (computed from the padded batch, as fairseq does), prefix tokens (language models:
the prompt) forced, ``--temperature`` in the printed scores. A batch is decoded one sentence at a
time (the sentences accept different numbers of drafts); its encoder runs once for the batch.

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
            prefix = []
            if prefix_tokens is not None:
                row = prefix_tokens[i]
                prefix = row[row.ne(self.pad)].tolist()
            finalized.append([self._decode_sentence(encoder_out, bos, prefix, prefix_tokens, max_len)])
        self.stats.sentences += bsz
        self.stats.stop()
        return finalized

    def _adjust(self, lprobs, step, prefix_tokens, max_len):
        """fairseq's rules at beam 1 for the prediction made at ``step`` (all but prefix forcing)."""
        lprobs[lprobs != lprobs] = -math.inf
        lprobs[self.pad] = -math.inf
        lprobs[self.unk] -= self.unk_penalty
        if step >= max_len:
            eos = lprobs[self.eos].clone()
            lprobs.fill_(-math.inf)
            lprobs[self.eos] = eos
        in_prefix = prefix_tokens is not None and step < prefix_tokens.size(1) and step < max_len
        if not in_prefix:
            if step < self.min_len:
                lprobs[self.eos] = -math.inf
            if self.token_indices_to_suppress is not None:
                lprobs[self.token_indices_to_suppress] = -math.inf
        return lprobs

    def _decode_sentence(self, encoder_out, bos, prefix, prefix_tokens, max_len):
        model = self.model.models[0]
        stack = DecoderLayerRange(model.decoder, encoder_out, max_len + 1)
        num_layers, exit_layer = len(stack.layers), self.exit_layer
        prefix = prefix[:max_len]  # fairseq forces prefix tokens only below the maximum length
        tokens, scores = [bos] + prefix, []
        if prefix:  # the prompt: all layers over its positions at once
            x = stack.run(stack.embed(tokens[:-1], 0), 0, num_layers, 0)
            lprobs = stack.log_probs(x, self.temperature)
            for step, token in enumerate(prefix):
                scores.append(float(self._adjust(lprobs[step], step, prefix_tokens, max_len)[token]))
        finished = False
        while not finished:
            cached = len(tokens) - 1  # positions whose keys and values every layer holds
            # draft: layers 0..E-1, one position at a time, through the output head
            hidden, drafts, token = [], [], tokens[-1]
            for j in range(self.draft_tokens):
                step = cached + j
                h = stack.run(stack.embed([token], step), 0, exit_layer, step)
                hidden.append(h)
                lprobs = self._adjust(stack.log_probs(h, self.temperature)[0], step, prefix_tokens, max_len)
                token = int(lprobs.argmax())
                drafts.append(token)
                if token == self.eos or step >= max_len:
                    break
            if not drafts or drafts[-1] != self.eos:  # the last draft's own position, for the full model's next token
                step = cached + len(drafts)
                hidden.append(stack.run(stack.embed([token], step), 0, exit_layer, step))
            # verify: layers E..N-1 over all drafted positions in one call
            x = stack.run(torch.cat(hidden, dim=0), exit_layer, num_layers, cached)
            lprobs = stack.log_probs(x, self.temperature)
            predictions = []
            for r in range(len(hidden)):
                row = self._adjust(lprobs[r], cached + r, prefix_tokens, max_len)
                predictions.append((int(row.argmax()), row))
            accepted = 0
            while accepted < len(drafts) and drafts[accepted] == predictions[accepted][0]:
                accepted += 1
            new = drafts[:accepted]
            if accepted < len(hidden):
                new = new + [predictions[accepted][0]]
            for r, token in enumerate(new):
                scores.append(float(predictions[r][1][token]))
            tokens += new
            finished = new[-1] == self.eos
            stack.crop(cached + len(new))
            self.stats.drafted += len(drafts)
            self.stats.accepted += accepted
            self.stats.verifications += 1
            self.stats.tokens += len(new)
        return self._hypothesis(tokens[1:], scores)

    def _hypothesis(self, tokens, scores):
        positional = torch.tensor(scores)
        score = positional.sum()
        if self.normalize_scores:
            score = score / len(tokens) ** self.len_penalty
        return {"tokens": torch.tensor(tokens, dtype=torch.long), "score": score, "attention": torch.empty(0),
                "alignment": torch.empty(0), "positional_scores": positional}
