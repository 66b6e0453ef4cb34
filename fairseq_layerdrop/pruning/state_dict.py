"""The one state-dict pruning function: full state dict + config + kept lists -> pruned ones.

Fan et al. (arXiv 1909.11556) prune a LayerDrop model at test time by keeping a subset of its
layers. Here a kept-layer list per stack ("encoder", "decoder") says which layers survive and
in which order; the kept layers are renumbered 0..R-1 and every key outside the named stacks'
``layers`` (the other stack, embeddings, output projection, final layer norms, adaptive
softmax) is left untouched. Unlike fairseq's ``prune_state_dict`` it never drops a key it does
not understand and never touches a stack it was not asked to prune (fairseq issue 1257).

Where a stack's layers live: ``encoder.layers.N.`` / ``decoder.layers.N.`` (fairseq's transformer and
transformer LM), ``encoder.sentence_encoder.layers.N.`` (the encoder of fairseq's ``roberta``, ``masked_lm``
and the plugin's ``roberta_layerdrop``; ``decoder.sentence_encoder.layers.N.`` in older RoBERTa checkpoints, the
names fairseq's ``RobertaModel.upgrade_state_dict_named`` renames when it loads them). The RoBERTa LM head
(``encoder.lm_head.*``) and classification heads (``classification_heads.NAME.*``) are not layers of a
stack, so pruning never touches them.

Lists may be in any order (the layers then run in that order, which the model permits because
every layer maps d_model to d_model); repeats are refused, since a repeated layer would double
its compute for nothing the papers measured.
"""

import copy
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

STACKS = ("encoder", "decoder")
# the module paths, in a model or in its state-dict keys, whose ``layers`` are each stack's layers
STACK_PATHS = {
    "encoder": ("encoder", "encoder.sentence_encoder", "decoder.sentence_encoder"),
    "decoder": ("decoder",),
}
_LAYER_KEY = {stack: re.compile(rf"^({'|'.join(re.escape(p) for p in paths)})\.layers\.(\d+)\.(.*)$")
              for stack, paths in STACK_PATHS.items()}


class PruningError(ValueError):
    """A kept-layer list or target depth that cannot be applied; the message names the stack."""


def check_kept_layers(kept: Sequence, num_layers: int, stack: str) -> List[int]:
    """Return ``kept`` as a list of ints after checking it against a stack of ``num_layers`` layers."""
    where = f"{stack} (it has {num_layers} layers: valid indices 0..{num_layers - 1})"
    if len(kept) == 0:
        raise PruningError(f"the kept-layer list of the {where} is empty: keep at least one layer")
    layers = []
    for item in kept:
        text = str(item).strip()
        if not re.fullmatch(r"-?\d+", text):
            raise PruningError(f"kept layer {item!r} of the {where} is not an integer")
        layers.append(int(text))
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise PruningError(f"kept layer(s) {bad} out of range for the {where}")
    repeated = sorted({i for i in layers if layers.count(i) > 1})
    if repeated:
        raise PruningError(f"kept layer(s) {repeated} repeated in the list for the {where}")
    return layers


def parse_layer_list(text, stack: str, num_layers: int) -> List[int]:
    """Parse ``"0,2,4"`` (or a list of ints, as fairseq's own parser may give) and check it."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = str(text).split(",") if str(text).strip() else []
    return check_kept_layers(items, num_layers, stack)


def layer_key(key: str, stack: str):
    """``(prefix, index, rest)`` if ``key`` is a parameter of layer ``index`` of ``stack`` (``prefix`` the module
    path, e.g. ``encoder.sentence_encoder``), else None."""
    match = _LAYER_KEY[stack].match(key)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


def layer_indices(state_dict, stack: str) -> set:
    """The layer indices of ``stack`` that a state dict holds (empty: none)."""
    return {found[1] for found in (layer_key(k, stack) for k in state_dict) if found is not None}


def stack_module(model, stack: str):
    """The module of ``model`` whose ``layers`` are the ``stack``'s (``model.encoder``, or
    ``model.encoder.sentence_encoder`` for RoBERTa), or None if the model has no such stack."""
    for path in STACK_PATHS[stack]:
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if module is not None and hasattr(module, "layers"):
            return module
    return None


def stack_depth(cfg, stack: str) -> Optional[int]:
    """Number of layers of ``stack`` in a model config (Namespace, DictConfig or dict); None if absent."""
    value = config_get(cfg, f"{stack}_layers")
    if value is None:
        value = config_get(config_get(cfg, stack), "layers")
    return None if value is None else int(value)


def prune_state_dict(
    state_dict: Mapping, cfg, kept: Dict[str, Sequence[int]]
) -> Tuple["OrderedDict", object]:
    """Prune ``state_dict`` to the kept layers of each named stack and return it with a matching config.

    Args:
        state_dict: a model state dict with keys such as ``encoder.layers.3.fc1.weight`` (or
            ``encoder.sentence_encoder.layers.3.fc1.weight``: ``STACK_PATHS``).
        cfg: the model config (``argparse.Namespace``, omegaconf ``DictConfig`` or ``dict``); it is
            not modified: the returned config is a copy stating the new depths, with fairseq's
            ``*_layers_to_keep`` cleared so that fairseq never prunes again.
        kept: ``{"encoder": [0, 2, 4], "decoder": [...]}``; stacks not named are untouched.
    """
    unknown = set(kept) - set(STACKS)
    if unknown:
        raise PruningError(f"unknown stack(s) {sorted(unknown)}: choose from {', '.join(STACKS)}")
    renumber = {}
    for stack, layers in kept.items():
        depth = stack_depth(cfg, stack)
        if depth is None:
            raise PruningError(f"this model has no {stack}; it cannot be pruned there")
        layers = check_kept_layers(layers, depth, stack)
        present = layer_indices(state_dict, stack)
        prefixes = {found[0] for found in (layer_key(k, stack) for k in state_dict) if found is not None}
        if len(prefixes) > 1:
            raise PruningError(f"the state dict has {stack} layers under {len(prefixes)} names "
                               f"({', '.join(sorted(prefixes))}); it cannot tell which stack to prune")
        if present and max(present) >= depth:
            raise PruningError(f"the state dict has {stack} layer {max(present)} but the config says {depth} layers")
        renumber[stack] = {old: new for new, old in enumerate(layers)}

    pruned = OrderedDict()
    for key, value in state_dict.items():
        found = next(((stack, layer_key(key, stack)) for stack in renumber if layer_key(key, stack)), None)
        if found is None:
            pruned[key] = value
            continue
        stack, (prefix, index, rest) = found
        if index in renumber[stack]:
            pruned[f"{prefix}.layers.{renumber[stack][index]}.{rest}"] = value
    for name, value in getattr(state_dict, "__dict__", {}).items():  # torch's _metadata, the plugin's --user-dir mark
        setattr(pruned, name, value)
    return pruned, pruned_config(cfg, {s: len(l) for s, l in kept.items()})


def count_parameters(state_dict) -> int:
    """Floating-point elements of a state dict: the parameters plus the few float buffers fairseq
    keeps (version stamps), so within a handful of fairseq's own "num. model params". A tensor saved
    under two names (tied embeddings: ``embed_tokens.weight`` and ``output_projection.weight``) counts once."""
    seen, total = set(), 0
    for tensor in state_dict.values():
        if not (hasattr(tensor, "is_floating_point") and tensor.is_floating_point()):
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def pruned_config(cfg, depths: Dict[str, int]):
    """A copy of the model config with the given stack depths and no fairseq ``*_layers_to_keep``."""
    new = copy.deepcopy(cfg)
    for stack, depth in depths.items():
        if config_get(new, f"{stack}_layers") is not None:
            config_set(new, f"{stack}_layers", depth)
        nested = config_get(new, stack)
        if nested is not None and not isinstance(nested, type) and config_get(nested, "layers") is not None:
            config_set(nested, "layers", depth)
        if config_has(new, f"{stack}_layers_to_keep"):
            config_set(new, f"{stack}_layers_to_keep", None)
        if nested is not None and not isinstance(nested, type) and config_has(nested, "layers_to_keep"):
            config_set(nested, "layers_to_keep", None)
    return new


# A model config may be an argparse.Namespace (legacy architectures), an omegaconf DictConfig or
# a plain dict (a saved checkpoint); these three read and write a field of any of them.


def config_get(cfg, name):
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(name)
    try:
        return getattr(cfg, name, None)
    except Exception:  # omegaconf raises on missing keys in struct mode
        return None


def config_has(cfg, name):
    if isinstance(cfg, Mapping):
        return name in cfg
    return hasattr(cfg, name)


def config_set(cfg, name, value):
    from omegaconf import DictConfig, open_dict

    if isinstance(cfg, DictConfig):
        with open_dict(cfg):
            cfg[name] = value
    elif isinstance(cfg, dict):
        cfg[name] = value
    else:
        setattr(cfg, name, value)

