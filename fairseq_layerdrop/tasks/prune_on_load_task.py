"""The task side of pruning: a mixin that gives a fairseq task the pruning options.

With it, every command that loads a model through the task (``fairseq-generate``,
``-interactive``, ``-eval-lm``, ``-train`` to continue training a pruned model) prunes the model
as its checkpoint loads, for the plugin's architectures and fairseq's own alike. A strategy without a
depth (``--prune-strategy top`` alone) is refused when the task is set up from a command line.
"""

from ..pruning.on_load import build_pruned_model
from ..pruning.options import PRUNING_FIELDS, check_strategy_has_a_depth


class PruneOnLoadTask:
    """Mixin for a fairseq task whose config includes ``PruningOptions``.

    ``PRUNABLE_STACKS`` names the stacks the task's models have.
    """

    PRUNABLE_STACKS = ("encoder", "decoder")

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if not kwargs.get("from_checkpoint"):  # a command line's options; a checkpoint's saved ones are history
            check_strategy_has_a_depth(cfg)
        return super().setup_task(cfg, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        options = self.cfg if getattr(self, "cfg", None) is not None else self.args  # legacy tasks keep args
        build = super().build_model
        return build_pruned_model(
            lambda c: build(c, from_checkpoint), cfg, options, self.PRUNABLE_STACKS, clear_options=not from_checkpoint
        )

    @classmethod
    def add_args(cls, parser):
        """Add the task's flags. Where a model already defined a flag of the same name (fairseq's
        ``transformer`` defines ``--encoder-layers-to-keep``, parsed as a list of ints), the task's
        replaces it: fairseq-train parses model and task flags with one parser, both land in the
        same namespace field, and fairseq would silently keep the first definition."""
        for name in PRUNING_FIELDS:
            flag = "--" + name.replace("_", "-")
            existing = parser._option_string_actions.pop(flag, None)
            if existing is not None:
                existing.container._remove_action(existing)
        super().add_args(parser)
