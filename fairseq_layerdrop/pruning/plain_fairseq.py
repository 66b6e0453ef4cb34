"""Write a checkpoint as fairseq's own architecture: what plain fairseq and CTranslate2 load.

At inference a LayerDrop model computes exactly what fairseq's own architecture computes (every kept
layer runs, unscaled), so ``fairseq-layerdrop prune --as-fairseq`` writes a ``transformer_layerdrop``
checkpoint as fairseq's ``transformer``, a ``transformer_lm_layerdrop`` one as ``transformer_lm`` and a
``roberta_layerdrop`` one as ``roberta`` (classification heads kept: they are fairseq's),
in the layout fairseq-train writes (``args`` None, ``cfg`` with the sections ``model``, ``task``,
``criterion``, ...). What only the plugin knows is mapped to fairseq's names or dropped:

- the architecture: ``transformer_layerdrop*`` -> ``transformer``, ``transformer_lm_layerdrop*`` ->
  ``transformer_lm``, ``roberta_layerdrop*`` -> ``roberta`` (the values its architecture function set are
  in the config already, so pre-norm or post-norm, ``--decoder-post-norm`` included, is stated by
  ``decoder_normalize_before``);
- the task and criterion: each plugin task or criterion becomes the fairseq one it extends
  (``translation_layerdrop`` -> ``translation``, ``gated_cross_entropy`` -> ``cross_entropy``,
  ``early_exit_label_smoothed_cross_entropy`` -> ``label_smoothed_cross_entropy``, ...), with only
  that one's fields;
- dropped: the plugin's training settings (LayerDrop rates, which become 0, structure, schedule,
  per-layer rates, protected layers, early-exit and distillation weights), its pruning and decoding
  options, the learned layer gates (``layerdrop_gate`` parameters: in eval mode they scale nothing,
  they only drew the training drops and rank layers for ``--prune-strategy learned``), the
  ``--user-dir`` and the mark that makes a plugin checkpoint ask for it.

That is why it is a flag and not the default: the export no longer records how it was trained, and
``--prune-strategy learned`` / ``fairseq-layerdrop gates`` cannot read it. Training can go on with the
plugin (``fairseq-train --user-dir ... --arch transformer_layerdrop ... --finetune-from-model OUT.pt``
with the exported depth: the parameter names are fairseq's), but LayerDrop settings must be given
again and learned gates start over.

Before anything is written, fairseq builds its own model from the new config, exactly as its loader
does, and loads the state dict strictly: a parameter fairseq's architecture has no place for, or a
layer that lacks a block fairseq's layer has (attention, feed-forward, layer norm), is refused in one
line naming it.

Two forms on disk (torch >= 2.6 loads checkpoints with ``weights_only=True``, which rebuilds only
plain containers and tensors):

- ``--as-fairseq``: every config section a plain dict. Plain ``fairseq-generate`` / ``fairseq-eval-lm``
  load it without ``--user-dir``.
- ``--for-ctranslate2``: the model config an ``argparse.Namespace`` that also holds the task's fields
  (``task``, ``arch``, ``source_lang``...), the form ``ct2-fairseq-converter`` reads
  (``checkpoint["cfg"]["model"].data = ...``; it fails with ``'dict' object has no attribute 'data'``
  on a dict, even on fairseq-train's own ``transformer_lm`` checkpoints). Convert it with
  ``--unsafe_deserialization``. fairseq loads this form too when the plugin is imported (``--user-dir``,
  which allow-lists ``argparse.Namespace``) or with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, like its own
  ``transformer`` checkpoints. What CTranslate2's Transformer cannot compute (adaptive input or softmax,
  character embeddings, an activation it lacks, NormFormer scales, cross-self-attention, different
  encoder and decoder heads or norms, ...) is refused, naming the option.
"""

import argparse
import copy
import dataclasses
import re
import warnings
from collections import OrderedDict
from typing import Dict, List

import torch

from .state_dict import PruningError

PLAIN_MODELS = ("transformer", "transformer_lm", "roberta")  # fairseq's models that --as-fairseq writes
CTRANSLATE2_MODELS = ("transformer", "transformer_lm")  # of those, what ct2-fairseq-converter converts
CTRANSLATE2_ACTIVATIONS = ("gelu", "gelu_accurate", "gelu_fast", "relu", "swish")  # its fairseq converter's
GATE_SUFFIX = ".layerdrop_gate"  # modules/layer_gates.py GATE_PARAMETER
PLUGIN_PACKAGE = __name__.split(".")[0]


def _is_plugin(cls) -> bool:
    return getattr(cls, "__module__", "").split(".")[0] == PLUGIN_PACKAGE


def _is_fairseq(cls) -> bool:
    return getattr(cls, "__module__", "").split(".")[0] == "fairseq"


def _registries():
    """``(kind, classes, dataclasses)`` of fairseq's registries: models, tasks, criteria, optimizers, ..."""
    from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY

    found = [("model", MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY), ("task", TASK_REGISTRY, TASK_DATACLASS_REGISTRY)]
    found += [(kind, r["registry"], r["dataclass_registry"]) for kind, r in REGISTRIES.items()]
    return found


def fairseq_name(name: str, registry: Dict[str, type], kind: str) -> str:
    """The name of the fairseq class registered as ``name`` or, for a plugin class, of the fairseq class it extends."""
    cls = registry.get(name)
    if cls is None:
        raise PruningError(f"the checkpoint's {kind} {name!r} is not registered in fairseq or the plugin")
    names = {}
    for registered, klass in registry.items():
        names.setdefault(klass, registered)
    for base in cls.__mro__:
        if _is_fairseq(base) and base in names:
            return names[base]
    raise PruningError(f"the checkpoint's {kind} {name!r} extends no {kind} of fairseq's own; --as-fairseq cannot "
                       f"map it")


def _as_dict(section):
    """A config section (dict, DictConfig, Namespace) as a plain dict; None stays None."""
    from omegaconf import OmegaConf

    if section is None:
        return None
    if isinstance(section, argparse.Namespace):
        return dict(vars(section))
    if OmegaConf.is_config(section):
        return OmegaConf.to_container(section, resolve=True)
    return dict(section)


def _field_defaults(cls) -> dict:
    """``{field: default}`` of a dataclass (None: empty)."""
    defaults = {}
    for name, field in getattr(cls, "__dataclass_fields__", {}).items():
        if field.default is not dataclasses.MISSING:
            defaults[name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[name] = field.default_factory()
    return defaults


def _option_defaults(name, cls, dataclass_registry) -> dict:
    """``{option: default}`` of a registered class: its dataclass's fields, or an argparse model's ``add_args``."""
    if name in dataclass_registry or not hasattr(cls, "add_args"):
        return _field_defaults(dataclass_registry.get(name))
    parser = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
    try:
        cls.add_args(parser)
    except Exception:  # a model of fairseq's whose options need what is not installed: it names nothing here
        return {}
    return {action.dest: action.default for action in parser._actions}


def plugin_only_options() -> Dict[str, list]:
    """``{name: [defaults]}`` of the options that the plugin's models, tasks and criteria add and no fairseq config
    has (an option has a default per class that declares it)."""
    from fairseq.dataclass.configs import FairseqConfig

    plugin, fairseq = {}, set(FairseqConfig.__dataclass_fields__)
    for section in FairseqConfig.__dataclass_fields__.values():
        default = section.default_factory() if callable(section.default_factory) else section.default
        fairseq |= set(getattr(default, "__dataclass_fields__", {}))
    for kind, classes, dataclass_registry in _registries():
        if kind not in ("model", "task", "criterion"):
            continue
        for name, cls in classes.items():
            if _is_plugin(cls):
                for option, default in _option_defaults(name, cls, dataclass_registry).items():
                    plugin.setdefault(option, []).append(default)
            elif _is_fairseq(cls):
                fairseq.update(_option_defaults(name, cls, dataclass_registry))
    return {name: defaults for name, defaults in plugin.items() if name not in fairseq and name != "_name"}


def _changed(values: dict, defaults: Dict[str, list]) -> List[str]:
    """The names in ``values`` whose value is none of their defaults (nor empty)."""
    return sorted(k for k, v in values.items() if k in defaults and v not in (None, "", *defaults[k]))


def plugin_names() -> set:
    """Every name that the plugin registers: architectures, models, tasks, criteria, ..."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    names = {arch for arch, model in ARCH_MODEL_REGISTRY.items() if _is_plugin(model)}
    for _, classes, _ in _registries():
        names |= {name for name, cls in classes.items() if _is_plugin(cls)}
    return names


def _uses(value, names, path="cfg"):
    """``path=value`` for each string value of a config that is one of ``names``."""
    if isinstance(value, str):
        return [f"{path}={value}"] if value in names else []
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _uses(v, names, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _uses(v, names, f"{path}[{i}]")]
    return []


def _plain_section(section, kind, notes):
    """A config section (task, criterion) mapped to the fairseq one it extends, with only that one's fields."""
    values = _as_dict(section)
    if not values or "_name" not in values:
        return values
    registry, dataclass_registry = next((c, d) for k, c, d in _registries() if k == kind)
    name = values["_name"]
    target = fairseq_name(name, registry, kind)
    if target == name:
        return values
    fields = set(getattr(dataclass_registry.get(target), "__dataclass_fields__", {}))
    defaults = {k: [v] for k, v in _field_defaults(dataclass_registry.get(name)).items()}
    dropped = _changed({k: v for k, v in values.items() if k not in fields}, defaults)
    notes.append(f"{kind} {name} -> {target}" + (f" (dropped: {', '.join(dropped)})" if dropped else ""))
    return {**{k: v for k, v in values.items() if k in fields}, "_name": target}


def _plain_model(values: dict, task_name, criterion_name, notes: List[str]):
    """``(model config, model name)`` as fairseq's own ``transformer`` or ``transformer_lm``."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY

    arch = values.get("arch") or values.get("_name")
    model = ARCH_MODEL_NAME_REGISTRY.get(arch, arch)
    if model not in MODEL_REGISTRY:
        raise PruningError(f"the checkpoint's architecture {arch!r} is not registered in fairseq or the plugin")
    target = fairseq_name(model, MODEL_REGISTRY, "model")
    if target not in PLAIN_MODELS:
        known = f"{', '.join(PLAIN_MODELS[:-1])} and {PLAIN_MODELS[-1]}"
        raise PruningError(f"--as-fairseq writes fairseq's {known}; this checkpoint's model is {model} (fairseq's "
                           f"{target}), which it does not know")
    plain = dict(values)
    if model != target:
        plugin_only = plugin_only_options()
        if target in MODEL_DATACLASS_REGISTRY:  # transformer_lm: exactly fairseq's fields
            keep = set(MODEL_DATACLASS_REGISTRY[target].__dataclass_fields__)
        else:  # transformer, roberta (argparse): the flat training arguments, less the plugin's
            keep = {k for k in values if k not in plugin_only}
        # --decoder-post-norm is stated by decoder_normalize_before, which its architecture function set
        dropped = [k for k in _changed({k: v for k, v in values.items() if k not in keep}, plugin_only)
                   if k != "decoder_post_norm"]
        plain = {k: v for k, v in values.items() if k in keep}
        rates = [f"{k} {plain[k]}" for k in ("encoder_layerdrop", "decoder_layerdrop") if plain.get(k)]
        for k in ("encoder_layerdrop", "decoder_layerdrop"):
            if k in plain:  # fairseq's LayerDrop would drop whole layers, unseeded: give the rate again to train
                plain[k] = 0.0
        plain["_name"] = target
        if "arch" in plain:
            plain["arch"] = target
        notes.append(f"model {arch} -> {target}"
                     + (f"; LayerDrop rates set to 0 (were {', '.join(rates)})" if rates else "")
                     + (f"; dropped plugin settings: {', '.join(dropped)}" if dropped else ""))
    for key, value in (("task", task_name), ("criterion", criterion_name)):  # argparse configs name them too
        if key in plain and value:
            plain[key] = value
    if plain.get("user_dir"):
        plain["user_dir"] = None
    return plain, target


def _plain_state_dict(state_dict, notes):
    """The model state dict without learned gates and without the plugin's --user-dir mark."""
    gates = [k for k in state_dict if k.endswith(GATE_SUFFIX)]
    plain = OrderedDict((k, v) for k, v in state_dict.items() if not k.endswith(GATE_SUFFIX))
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        plain._metadata = copy.deepcopy(metadata)
    if gates:
        notes.append(f"dropped {len(gates)} learned layer gates ({GATE_SUFFIX[1:]}; they scale nothing at inference)")
    return plain


def _vocabulary_size(state_dict, prefix):
    """Rows of a stack's token embedding (summed over the bands of an adaptive input), or None."""
    weight = state_dict.get(f"{prefix}.embed_tokens.weight")
    if weight is not None:
        return weight.shape[0]
    bands = [v.shape[0] for k, v in state_dict.items()
             if k.startswith(f"{prefix}.embed_tokens.embeddings.") and k.endswith(".0.weight")]
    return sum(bands) or None


class _Dictionaries:
    """What fairseq's model builders read of a task: its dictionaries (only their sizes matter)."""

    def __init__(self, source_size, target_size):
        from fairseq.data import Dictionary

        def dictionary(size):
            d = Dictionary()
            for i in range(len(d), size):
                d.add_symbol(f"madeupword{i:06d}")
            return d

        self.source_dictionary = dictionary(source_size)
        self.target_dictionary = self.source_dictionary if target_size == source_size else dictionary(target_size)
        self.dictionary = self.target_dictionary


_BLOCKS = (("self_attn.", "self-attention"), ("encoder_attn.", "encoder attention"), ("fc1.", "feed-forward block"),
           ("fc2.", "feed-forward block"), ("self_attn_layer_norm.", "self-attention layer norm"),
           ("encoder_attn_layer_norm.", "encoder-attention layer norm"), ("final_layer_norm.", "feed-forward layer norm"))


def _describe_missing(keys):
    """'decoder layer 1 has no feed-forward block' for the keys a layer lacks."""
    found = []
    for key in keys:
        match = re.match(r"^(.*?)\.layers\.(\d+)\.(.*)$", key)
        if match:
            block = next((name for prefix, name in _BLOCKS if match.group(3).startswith(prefix)), match.group(3))
            text = f"{match.group(1)} layer {match.group(2)} has no {block}"
        else:
            text = f"no {key}"
        if text not in found:
            found.append(text)
    return found


def _keys_after(text, marker):
    if marker not in text:
        return []
    return re.findall(r'"([^"]+)"', text.split(marker, 1)[1].split(". ", 1)[0])


def check_fairseq_loads(state, target):
    """Build fairseq's own model from ``state['cfg']`` as its loader does (on the meta device: no memory, no time;
    roberta on the CPU) and load the weights strictly; a ``PruningError`` naming what fairseq's architecture cannot
    hold."""
    from fairseq import models
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(copy.deepcopy(state["cfg"]), flags={"allow_objects": True})
    weights = state["model"]
    if target == "roberta":  # one stack: fairseq's RobertaEncoder (older checkpoints: "decoder")
        decoder = (_vocabulary_size(weights, "encoder.sentence_encoder")
                   or _vocabulary_size(weights, "decoder.sentence_encoder"))
    else:
        decoder = _vocabulary_size(weights, "decoder")
    encoder = _vocabulary_size(weights, "encoder") if target == "transformer" else decoder
    if decoder is None or encoder is None:
        raise PruningError("--as-fairseq: cannot tell the vocabulary size: the state dict has no embed_tokens")
    # roberta's initialisation (init_bert_params) copies through the CPU, which a meta tensor cannot: build it there
    with torch.device("cpu" if target == "roberta" else "meta"):
        model = models.build_model(cfg.model, _Dictionaries(encoder, decoder), from_checkpoint=True)
    try:
        with warnings.catch_warnings():  # "copying ... to a meta parameter ... is a no-op": the point here
            warnings.simplefilter("ignore", UserWarning)
            model.load_state_dict(OrderedDict(weights), strict=True, model_cfg=cfg.model)
    except RuntimeError as error:
        text = str(error)
        unexpected = _keys_after(text, "Unexpected key(s) in state_dict:")
        missing = _keys_after(text, "Missing key(s) in state_dict:")
        problems = []
        if unexpected:
            problems.append(f"parameters it has no place for: {', '.join(unexpected[:4])}"
                            + (f" (+{len(unexpected) - 4} more)" if len(unexpected) > 4 else ""))
        if missing:
            problems.append("; ".join(_describe_missing(missing)[:4]))
        if not problems:
            problems.append(" ".join(text.split())[-300:])
        raise PruningError(f"--as-fairseq: fairseq's {target} cannot run these weights: {'; '.join(problems)}") \
            from None


def check_ctranslate2(model, target):
    """Refuse, naming the options, what CTranslate2's fairseq converter would refuse or compute differently."""
    if target not in CTRANSLATE2_MODELS:
        raise PruningError(f"--for-ctranslate2: ct2-fairseq-converter converts fairseq's "
                           f"{' and '.join(CTRANSLATE2_MODELS)}, not {target}; --as-fairseq writes it for plain "
                           f"fairseq")
    blocks = []
    activation = model.get("activation_fn", "relu")
    if activation not in CTRANSLATE2_ACTIVATIONS:
        blocks.append(f"--activation-fn {activation} (it runs {', '.join(CTRANSLATE2_ACTIVATIONS)})")
    for name in ("no_token_positional_embeddings", "character_embeddings", "adaptive_input", "cross_self_attention",
                 "scale_fc", "scale_attn", "scale_heads", "scale_resids"):
        if model.get(name):
            blocks.append("--" + name.replace("_", "-"))
    if model.get("adaptive_softmax_cutoff"):
        blocks.append("--adaptive-softmax-cutoff (it needs one output projection)")
    if (model.get("base_layers") or 0) > 0:
        blocks.append("--base-layers")
    embed = model.get("decoder_embed_dim")
    projects_in = model.get("decoder_input_dim") not in (None, embed)
    projects_out = model.get("decoder_output_dim") not in (None, embed)
    if target == "transformer":
        if bool(model.get("encoder_normalize_before")) != bool(model.get("decoder_normalize_before")):
            blocks.append("--encoder-normalize-before differing from --decoder-normalize-before")
        if model.get("encoder_attention_heads") != model.get("decoder_attention_heads"):
            blocks.append("--encoder-attention-heads differing from --decoder-attention-heads")
        if projects_in or projects_out:
            blocks.append("--decoder-input-dim or --decoder-output-dim differing from --decoder-embed-dim")
    elif projects_in != projects_out:
        blocks.append("only one of --decoder-input-dim and --decoder-output-dim differing from --decoder-embed-dim "
                      "(it projects in and out, or neither)")
    if blocks:
        raise PruningError(f"--for-ctranslate2: CTranslate2's Transformer cannot compute this {target}: "
                           f"{'; '.join(blocks)}")


_SAFE_TYPES = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype)


def unsafe_objects(value, path="checkpoint") -> List[str]:
    """Paths of objects that torch's ``weights_only`` loader would refuse without an allow-list."""
    found = []
    if type(value) is OrderedDict:  # torch's loader restores an OrderedDict's attributes (a state dict's _metadata)
        for name, attribute in vars(value).items():
            found += unsafe_objects(attribute, f"{path}.{name}")
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            found += unsafe_objects(item, f"{path}[{key!r}]")
    elif type(value) in (list, tuple, set):
        for i, item in enumerate(value):
            found += unsafe_objects(item, f"{path}[{i}]")
    elif not isinstance(value, _SAFE_TYPES):
        found.append(f"{path} ({type(value).__module__}.{type(value).__qualname__})")
    return found


def as_plain_fairseq(state, for_ctranslate2=False) -> List[str]:
    """Rewrite a raw checkpoint dict in place as fairseq's own architecture; return notes on what was mapped or
    dropped. A ``PruningError`` (one line) when fairseq's (or CTranslate2's) architecture cannot express it."""
    from fairseq.criterions import CRITERION_REGISTRY

    notes: List[str] = []
    if state.get("cfg") is None and state.get("args") is not None:  # a checkpoint of fairseq < 0.10
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        from omegaconf import OmegaConf

        state["cfg"] = OmegaConf.to_container(convert_namespace_to_omegaconf(state["args"]), resolve=True)
    if state.get("cfg") is None or state["cfg"].get("model") is None:
        raise PruningError("the checkpoint has no model config (cfg.model or args): is it a fairseq checkpoint?")
    cfg = {name: _as_dict(section) if isinstance(section, (dict, argparse.Namespace)) or hasattr(section, "_metadata")
           else section for name, section in _as_dict(state["cfg"]).items()}
    cfg["task"] = _plain_section(cfg.get("task"), "task", notes)
    cfg["criterion"] = _plain_section(cfg.get("criterion"), "criterion", notes)
    task_name = (cfg.get("task") or {}).get("_name")
    criterion_name = (cfg.get("criterion") or {}).get("_name")
    cfg["model"], target = _plain_model(cfg["model"], task_name, criterion_name, notes)
    if (cfg.get("common") or {}).get("user_dir"):
        cfg["common"]["user_dir"] = None
    leftovers = _uses(cfg, plugin_names())
    if leftovers:
        raise PruningError(f"--as-fairseq: the config still names what only the plugin registers, which it cannot "
                           f"map: {', '.join(leftovers[:4])}")
    if for_ctranslate2:
        check_ctranslate2(cfg["model"], target)
    state.update(args=None, cfg=cfg, model=_plain_state_dict(state["model"], notes))
    check_fairseq_loads(state, target)
    if for_ctranslate2:  # one object with the task's fields too: ctranslate2 builds the task and model from it
        flat = {k: v for k, v in (cfg.get("task") or {}).items() if k != "_name"}
        flat.update(cfg["model"], arch=cfg["model"].get("arch", target), task=task_name)
        cfg["model"] = argparse.Namespace(**flat)
    if any(note.startswith("criterion ") for note in notes):
        state["criterion"] = None  # the plugin criterion's own state: fairseq's has none
        for entry in state.get("optimizer_history") or []:
            if isinstance(entry, dict) and "criterion_name" in entry:
                entry["criterion_name"] = CRITERION_REGISTRY[criterion_name].__name__
    state.pop("last_optimizer_state", None)
    (state.get("extra_state") or {}).pop("ema", None)
    unsafe = [path for path in unsafe_objects({k: v for k, v in state.items() if k != "model"})
              if not (for_ctranslate2 and path.startswith("checkpoint['cfg']['model'] "))]
    if unsafe:
        raise PruningError(f"--as-fairseq: torch's safe loader could not read {', '.join(unsafe[:3])}")
    return notes

