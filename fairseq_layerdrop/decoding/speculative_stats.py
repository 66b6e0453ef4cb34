"""Counts of a self-speculative decoding run, and the summary line printed at its end."""

import logging
import time

logger = logging.getLogger("fairseq_layerdrop.self_speculative")


class SpeculativeStats:
    """What was drafted, accepted and generated, and the time it took.

    ``acceptance_rate`` is LayerSkip's: accepted drafts / drafted tokens. Only tokens the first E layers
    chose are drafts: a token forced by a rule (a prefix token, the end of sentence at the maximum length)
    is neither drafted nor accepted. A verification (one pass of layers E..N-1) yields the accepted
    drafts, the forced tokens among them, and at most one token of its own: a correction, a bonus token
    (every draft accepted) or a forced one. So ``tokens == accepted + chosen + forced`` and
    ``chosen <= verifications``, where ``tokens`` counts the generated tokens, end of sentence included,
    the leading prefix (a language model's prompt) not.
    """

    def __init__(self, exit_layer, draft_tokens, num_layers):
        self.exit_layer, self.draft_tokens, self.num_layers = exit_layer, draft_tokens, num_layers
        self.sentences = self.tokens = self.drafted = self.accepted = self.verifications = 0
        self.chosen = self.forced = 0  # tokens the full model chose itself; tokens forced by a rule
        self.seconds = 0.0
        self._start = None

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        self.seconds += time.perf_counter() - self._start

    @property
    def acceptance_rate(self):
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_second(self):
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self):
        rate = f"acceptance rate {100 * self.acceptance_rate:.1f}%" if self.drafted else "no drafts"
        return (f"self-speculative decoding (draft with layers 1-{self.exit_layer} of {self.num_layers}, "
                f"{self.draft_tokens} draft tokens): {self.sentences:,} sentences, {self.tokens:,} tokens in "
                f"{self.seconds:.1f}s ({self.tokens_per_second:.2f} tokens/s); accepted {self.accepted:,} of "
                f"{self.drafted:,} drafted tokens ({rate}), {self.verifications:,} verifications "
                f"({self.tokens / max(self.verifications, 1):.2f} tokens per verification); tokens: "
                f"{self.accepted:,} accepted drafts + {self.chosen:,} chosen by the full model + {self.forced:,} "
                f"forced (prefix, end of sentence at the maximum length)")

    def log_summary(self):
        if self.sentences:
            logger.info(self.summary())
