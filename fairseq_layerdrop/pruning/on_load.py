"""Pruning at load time: build the model at the pruned depth, renumber the checkpoint as it loads.

Used by the plugin's tasks (for any architecture, fairseq's own included) and by the plugin's
architectures (for model-level options, which is what ``fairseq-validate`` and
``--model-overrides`` reach). The checkpoint's state dict is renumbered with
``prune_state_dict`` *before* fairseq upgrades old keys, so that fairseq's per-layer upgrades
see the layers they expect (fairseq issue 3037), and fairseq's own ``prune_state_dict`` never
runs because its ``*_layers_to_keep`` fields are cleared first.
"""

import logging

from ..compat import building_from_checkpoint
from .options import check_strategy_has_a_depth, clear_pruning_options, pruning_requests
from .state_dict import (PruningError, config_set, count_parameters, layer_indices, prune_state_dict, stack_depth,
                         stack_module)

logger = logging.getLogger(__name__)


def build_pruned_model(build, model_cfg, options, stacks, clear_options=True):
    """Build a model with ``build(model_cfg)``, pruned as ``options`` request.

    ``options`` holds the pruning options (the task config, or the model config itself). They
    are cleared from the model config once read, so that nothing prunes twice and a saved
    checkpoint states its new depth; with ``clear_options`` they are cleared from ``options``
    too (a task does so when it builds a model to train, so that its checkpoints do not ask to
    be pruned again, but not when it loads an ensemble, whose members all need them).
    """
    # a model's own options on fairseq-train's command line (a task checks its options when set up from one)
    if options is model_cfg and not building_from_checkpoint():
        check_strategy_has_a_depth(options)
    requests = pruning_requests(options, model_cfg, stacks)
    clear_pruning_options(model_cfg)
    if clear_options:
        clear_pruning_options(options)
    if not requests:
        model = build(model_cfg)
        install_depth_check(model)
        return model
    full_depth = {}
    for stack, request in requests.items():
        depth = stack_depth(model_cfg, stack)
        if depth is None:
            raise PruningError(f"{request.source}: this model has no {stack}")
        full_depth[stack] = depth
        # the depth is known now; which layers may depend on the checkpoint (data-driven strategies)
        config_set(model_cfg, f"{stack}_layers", request.check_depth(depth))
    model = build(model_cfg)
    install_depth_check(model)
    install_prune_on_load(model, requests, full_depth, model_cfg)
    return model


def checkpoint_depth(state_dict, stack: str) -> int:
    """How many layers of ``stack`` a model state dict holds (0: none)."""
    return len(layer_indices(state_dict, stack))


def install_depth_check(model):
    """Make ``model.load_state_dict`` refuse a checkpoint of another depth, naming the flag to pass.

    Continuing training from a pruned export with the full model's flags would otherwise fail in
    fairseq with "please ensure that the architectures match" and a list of missing keys.
    """
    upgrade = model.upgrade_state_dict
    built = {stack: len(stack_module(model, stack).layers) for stack in ("encoder", "decoder")
             if stack_module(model, stack) is not None}

    def check_then_upgrade(state_dict):
        for stack, depth in built.items():
            found = checkpoint_depth(state_dict, stack)
            if found and found != depth:
                prune = f"; or prune it as it loads with --{stack}-prune-to {depth}" if found > depth else ""
                raise PruningError(
                    f"the checkpoint's {stack} has {found} layers but this model is built with {depth}: pass "
                    f"--{stack}-layers {found} (continuing from a pruned export: fairseq-train --finetune-from-model "
                    f"EXPORT.pt --{stack}-layers {found}){prune}"
                )
        upgrade(state_dict)

    model.upgrade_state_dict = check_then_upgrade


def install_prune_on_load(model, requests, full_depth, cfg):
    """Make ``model.load_state_dict`` renumber a full-depth state dict to the requested layers first.

    ``model.pruning_requested`` then names the options that were read (``compat`` checks that a
    pruning option passed to a loader reached a model)."""
    upgrade = model.upgrade_state_dict  # fairseq calls this first thing in load_state_dict
    model.pruning_requested = {stack: request.source for stack, request in requests.items()}

    def prune_then_upgrade(state_dict):
        kept = {}
        for stack, request in requests.items():
            present = layer_indices(state_dict, stack)
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
            before = count_parameters(state_dict)
            pruned, _ = prune_state_dict(state_dict, _depths_cfg(full_depth), kept)
            after = count_parameters(pruned)
            for stack, layers in kept.items():
                logger.info(f"pruning the {stack}: keeping layers {layers} of {full_depth[stack]}")
            logger.info(f"parameters: {before:,} before pruning, {after:,} after")
            state_dict.clear()
            state_dict.update(pruned)
        upgrade(state_dict)

    model.upgrade_state_dict = prune_then_upgrade


def _depths_cfg(full_depth):
    return {f"{stack}_layers": depth for stack, depth in full_depth.items()}
