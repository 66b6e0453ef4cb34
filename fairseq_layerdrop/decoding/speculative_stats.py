"""Counts of a self-speculative decoding run, and the summary line printed at its end."""

import logging
import time

logger = logging.getLogger("fairseq_layerdrop.self_speculative")


class SpeculativeStats:
    """What was drafted, accepted and generated, and the time it took.

    ``acceptance_rate`` is LayerSkip's: accepted drafts / drafted tokens. A verification (one pass of
    layers E..N-1) yields the accepted drafts plus the full model's own next token.
    """

    def __init__(self, exit_layer, draft_tokens, num_layers):
        self.exit_layer, self.draft_tokens, self.num_layers = exit_layer, draft_tokens, num_layers
        self.sentences = self.tokens = self.drafted = self.accepted = self.verifications = 0
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
        return (f"self-speculative decoding (draft with layers 1-{self.exit_layer} of {self.num_layers}, "
                f"{self.draft_tokens} draft tokens): {self.sentences:,} sentences, {self.tokens:,} tokens in "
                f"{self.seconds:.1f}s ({self.tokens_per_second:.2f} tokens/s); accepted {self.accepted:,} of "
                f"{self.drafted:,} drafted tokens (acceptance rate {100 * self.acceptance_rate:.1f}%), "
                f"{self.tokens / max(self.verifications, 1):.2f} tokens per verification")

    def log_summary(self):
        if self.sentences:
            logger.info(self.summary())
