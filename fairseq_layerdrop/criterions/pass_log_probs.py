"""Each forward pass's log-probabilities computed once, for criteria that read them twice (LR-Drop, depth
distillation: the pass's task loss and a KL between passes).

``cached_loss(model, output, sample, lprobs)`` runs the criterion's own ``compute_loss`` on log-probabilities
already computed; fairseq's ``cross_entropy`` and ``label_smoothed_cross_entropy`` read them through
``pass_lprobs`` (the two mixins below), which computes them when nothing was cached (validation).
"""

import torch.nn.functional as F


class PassLogProbs:
    """Mixin: ``cached_loss`` and ``pass_lprobs`` (see the module docstring)."""

    def cached_loss(self, model, net_output, sample, lprobs):
        """``compute_loss`` on log-probabilities already computed (``pass_lprobs`` returns them)."""
        self._lprobs = {id(net_output[0]): lprobs}
        try:
            return self.compute_loss(model, net_output, sample, reduce=True)
        finally:
            self._lprobs = {}

    def pass_lprobs(self, model, net_output):
        """The log-probabilities of an output: those cached for it, else computed here."""
        cached = getattr(self, "_lprobs", {}).get(id(net_output[0]))
        return cached if cached is not None else model.get_normalized_probs(net_output, log_probs=True)


class CrossEntropyOnPassLogProbs(PassLogProbs):
    """fairseq's ``cross_entropy`` loss, on the pass's log-probabilities computed once."""

    def compute_loss(self, model, net_output, sample, reduce=True):
        lprobs = self.pass_lprobs(model, net_output)
        target = model.get_targets(sample, net_output).view(-1)
        loss = F.nll_loss(lprobs.view(-1, lprobs.size(-1)), target, ignore_index=self.padding_idx,
                          reduction="sum" if reduce else "none")
        return loss, loss


class LabelSmoothedOnPassLogProbs(PassLogProbs):
    """fairseq's ``label_smoothed_cross_entropy`` inputs, on the pass's log-probabilities computed once."""

    def get_lprobs_and_target(self, model, net_output, sample):
        lprobs, target = self.pass_lprobs(model, net_output), model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            lprobs = lprobs[:, self.ignore_prefix_size:, :].contiguous()
            target = target[:, self.ignore_prefix_size:].contiguous()
        return lprobs.view(-1, lprobs.size(-1)), target.view(-1)
