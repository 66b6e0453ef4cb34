"""The pruning options shared by the plugin's tasks, and pruning at load time.

Fan et al. (arXiv 1909.11556) prune a trained model at inference by keeping a subset of its
layers, without finetuning. These task options say which: explicit lists, or a target depth and
a strategy. They work for every command that loads a model through a task (``fairseq-generate``,
``-interactive``, ``-eval-lm``, ``-validate``, ``-train`` to continue training a pruned model),
and for checkpoints of fairseq's own architectures as well as the plugin's.

How a model is pruned on load: the task builds the model at the pruned depth, and renumbers the
checkpoint's state dict with ``prune_state_dict`` *before* fairseq upgrades old keys, so that
fairseq's per-layer upgrades see the layers they expect (fairseq issue 3037). fairseq's own
``*_layers_to_keep`` are cleared from the model config so that fairseq's ``prune_state_dict``
never prunes a second time; a value given there (for instance by ``--model-overrides`` or by a
``transformer`` model's own flag in ``fairseq-train``) is taken as this plugin's option instead.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, Optional

from fairseq.dataclass import FairseqDataclass

from ..pruning import PruningError, kept_layers, parse_layer_list, prune_state_dict, stack_depth
from ..pruning.state_dict import _get, _set

logger = logging.getLogger(__name__)


@dataclass
class PruningOptions(FairseqDataclass):
    encoder_layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "encoder layers to keep, e.g. 0,2,4 (0-based; order is kept; no repeats)"}
    )
    decoder_layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "decoder layers to keep, e.g. 1,3,5 (0-based; order is kept; no repeats)"}
    )
    layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "layers to keep in every stack (the decoder of a language model)"}
    )
    prune_to: Optional[int] = field(
        default=None, metadata={"help": "prune every stack to this many layers, chosen by --prune-strategy"}
    )
    encoder_prune_to: Optional[int] = field(default=None, metadata={"help": "prune the encoder to this many layers"})
    decoder_prune_to: Optional[int] = field(default=None, metadata={"help": "prune the decoder to this many layers"})
    prune_strategy: str = field(
        default="every-other",
        metadata={"help": "how --prune-to chooses layers: every-other (alias alternate), top, bottom, symmetric"},
    )


class Request:
    """What to keep of one stack: an explicit list, or a depth and a strategy."""

    def __init__(self, stack, layers=None, depth=None, strategy=None, source=""):
        self.stack, self.layers, self.depth, self.strategy, self.source = stack, layers, depth, strategy, source

    def kept(self, num_layers: int, **context):
        if self.layers is not None:
            return parse_layer_list(self.layers, self.stack, num_layers)
        return kept_layers(self.strategy, num_layers, self.depth, stack=self.stack, **context)


def pruning_requests(options, model_cfg, stacks) -> Dict[str, Request]:
    """Read the task options (and fairseq's model-level ``*_layers_to_keep``) into one request per stack."""
    requests = {}

    def put(stack, request):
        if stack in requests:
            raise PruningError(
                f"the {stack} is pruned twice: by {requests[stack].source} and by {request.source}; give one"
            )
        requests[stack] = request

    for stack in ("encoder", "decoder"):
        explicit = _get(options, f"{stack}_layers_to_keep")
        model_level = _get(model_cfg, f"{stack}_layers_to_keep")
        if explicit in (None, "") and model_level not in (None, "", []):
            explicit = model_level
        if explicit not in (None, ""):
            put(stack, Request(stack, layers=explicit, source=f"--{stack}-layers-to-keep"))
        depth = _get(options, f"{stack}_prune_to")
        if depth is not None:
            put(stack, Request(stack, depth=depth, strategy=options.prune_strategy, source=f"--{stack}-prune-to"))
    for stack in stacks:
        if options.layers_to_keep not in (None, ""):
            put(stack, Request(stack, layers=options.layers_to_keep, source="--layers-to-keep"))
        if options.prune_to is not None:
            put(stack, Request(stack, depth=options.prune_to, strategy=options.prune_strategy, source="--prune-to"))
    for stack in requests:
        if stack not in stacks:
            raise PruningError(f"{requests[stack].source}: this model has no {stack}")
    return requests


class PruneOnLoadTask:
    """Mixin for a fairseq task: build the model at the pruned depth and prune checkpoints as they load.

    ``PRUNABLE_STACKS`` names the stacks the task's models have.
    """

    PRUNABLE_STACKS = ("encoder", "decoder")

    def build_model(self, cfg, from_checkpoint=False):
        options = self.cfg if getattr(self, "cfg", None) is not None else self.args  # legacy tasks keep args
        requests = pruning_requests(options, cfg, self.PRUNABLE_STACKS)
        for stack in ("encoder", "decoder"):  # fairseq must never prune: we do
            if _get(cfg, f"{stack}_layers_to_keep") not in (None, ""):
                _set(cfg, f"{stack}_layers_to_keep", None)
        if not requests:
            return super().build_model(cfg, from_checkpoint)

        full_depth = {}
        for stack, request in requests.items():
            depth = stack_depth(cfg, stack)
            if depth is None:
                raise PruningError(f"{request.source}: this model has no {stack}")
            full_depth[stack] = depth
            # the depth is known now; the layers may depend on the checkpoint (data-driven strategies)
            target = len(request.kept(depth)) if request.layers is not None else request.depth
            kept_layers("every-other", depth, target, stack=stack)  # validates the depth with a clear message
            _set(cfg, f"{stack}_layers", target)
        model = super().build_model(cfg, from_checkpoint)
        install_prune_on_load(model, requests, full_depth, cfg)
        return model


def install_prune_on_load(model, requests, full_depth, cfg):
    """Make ``model.load_state_dict`` renumber a full-depth state dict to the requested layers first."""
    upgrade = model.upgrade_state_dict  # fairseq calls this first thing in load_state_dict

    def prune_then_upgrade(state_dict):
        kept = {}
        for stack, request in requests.items():
            present = {int(k.split(".")[2]) for k in state_dict if k.startswith(f"{stack}.layers.")}
            target = stack_depth(cfg, stack)
            if len(present) == target and len(present) != full_depth[stack]:
                logger.info(f"{stack}: the checkpoint has {target} layers already; loading it as it is")
                continue
            if len(present) != full_depth[stack]:
                raise PruningError(
                    f"{request.source}: the checkpoint's {stack} has {len(present)} layers, expected {full_depth[stack]}"
                )
            kept[stack] = request.kept(full_depth[stack], state_dict=state_dict, cfg=cfg)
        if kept:
            before = sum(t.numel() for t in state_dict.values())
            pruned, _ = prune_state_dict(state_dict, _depths_cfg(full_depth), kept)
            after = sum(t.numel() for t in pruned.values())
            for stack, layers in kept.items():
                logger.info(f"pruning the {stack}: keeping layers {layers} of {full_depth[stack]}")
            logger.info(f"parameters: {before:,} before pruning, {after:,} after")
            state_dict.clear()
            state_dict.update(pruned)
        upgrade(state_dict)

    model.upgrade_state_dict = prune_then_upgrade


def _depths_cfg(full_depth):
    return {f"{stack}_layers": depth for stack, depth in full_depth.items()}
