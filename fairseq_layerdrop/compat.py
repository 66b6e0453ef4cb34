"""Every adaptation of fairseq's internals in the plugin, listed in one place, and the fairseq it was tested with.

The plugin subclasses fairseq's models, tasks and criterions through their public hooks. Where it has to
reach further, into fairseq's (or torch's) internals, it is listed here; these are what may break with
another fairseq. At import we log one warning when the installed fairseq is not one of
``TESTED_FAIRSEQ_VERSIONS`` (the fork ``fairseq-fixed`` 0.12.3.1 reports ``fairseq.__version__ ==
"0.12.3.1"``; upstream 0.12.2 does not import on Python 3.11). ``make test`` checks all of them.

In this module (patches applied at import):

1. torch >= 2.6 unpickles checkpoints with ``weights_only=True``. Checkpoints of fairseq's
   argparse-configured ("legacy") architectures, such as ``transformer`` and ours, hold an
   ``argparse.Namespace`` and would fail to load with ``UnpicklingError``. We allow-list that one
   class and keep the safe unpickler for everything else. fairseq imports a ``--user-dir``
   before it loads any checkpoint, so importing the plugin is early enough.

2. A checkpoint of a plugin architecture loaded without ``--user-dir`` would fail deep inside
   fairseq (an ``IndexError``, or ``KeyError: '_name'``). So the first object such a checkpoint
   pickles is of a class named for the remedy, ``fairseq_layerdrop.compat.LoadWithUserDir...``:
   without the plugin, torch's safe unpickler stops on it with
   ``Unsupported global: GLOBAL fairseq_layerdrop.compat.LoadWithUserDirArgs``, and an unsafe
   ``torch.load`` imports the plugin by itself (or says ``No module named 'fairseq_layerdrop'``).
   Legacy models store their config as an ``argparse.Namespace`` before anything else, so its
   class is the mark (``models/transformer_layerdrop.py`` swaps the class of fairseq's ``args``);
   config models (the LM) store only plain values before the model's state dict, so that dict
   carries a ``LoadWithUserDirMark`` attribute (``models/transformer_lm_layerdrop.py``'s
   ``state_dict``; fairseq keeps a state dict's attributes when it moves it to the CPU for saving,
   as it must for torch's ``_metadata``).

3. c10d DDP: fairseq's ``models/distributed_fairseq_model.py`` looks up ``DistributedDataParallel``
   in its module at call time; we replace that module attribute with a subclass (below) that drops
   device ids for a CPU module and finds unused parameters when LayerDrop skips some.

4. ``checkpoint_utils.load_model_ensemble_and_task`` is wrapped so that a pruning option passed
   as an override (the hub's ``from_pretrained(..., prune_to=3)``, ``--model-overrides``) that no
   model read is refused instead of loading the full model silently, and so is a decoding option
   (``early_exit=1``, ``self_speculative=...``) that no task read (below). And
   ``checkpoint_utils.overwrite_args_by_name`` is wrapped so that a plugin task named as an override
   (``fairseq-validate --task language_modeling_layerdrop``, the hub's ``task="..."``) replaces the
   checkpoint's task of fairseq's own that it extends: fairseq-validate builds the checkpoint's task
   and would otherwise ignore the task named and every option only the plugin's task has.
   The refusal names the plugin task that extends the checkpoint's (``plugin_task_extending``:
   ``translation_layerdrop``, ``language_modeling_layerdrop``, ``masked_lm_layerdrop``,
   ``sentence_prediction_layerdrop``).

5. ``fairseq.models.build_model`` is wrapped to record its ``from_checkpoint`` flag, so that checks
   of training flags (``--layer-gates`` needs a gated criterion) run when fairseq-train builds a
   model but not when a checkpoint is loaded, and to keep a weak reference to the model built to
   train, which the plugin's criteria check when fairseq-train builds them next (below).

6. Cropping the self-attention cache (``crop_self_attention_cache``, below): self-speculative decoding
   forgets rejected drafts by cutting ``prev_key`` / ``prev_value`` / ``prev_key_padding_mask`` of
   fairseq's ``MultiheadAttention`` incremental state along the positions, through its private
   ``_get_input_buffer`` / ``_set_input_buffer``.

Elsewhere in the package (overrides that rely on fairseq 0.12's internals):

7. Per-instance ``upgrade_state_dict`` (``pruning/on_load.py``, ``install_prune_on_load``): pruning at
   load time replaces a model's ``upgrade_state_dict`` on the instance, relying on fairseq's
   ``BaseFairseqModel.load_state_dict`` calling ``self.upgrade_state_dict(state_dict)`` first.

8. Private argparse API (``tasks/prune_on_load_task.py``, ``add_args``): the task removes a flag that
   a model already defined (``transformer``'s ``--encoder-layers-to-keep``) with
   ``parser._option_string_actions`` and ``container._remove_action``, because fairseq parses model
   and task flags with one parser and would silently keep the first definition.

9. Block-wise layer forward (``modules/structured_layer.py``): to drop one sub-layer or some heads,
   ``encoder_layer_forward`` / ``decoder_layer_forward`` run fairseq 0.12's
   ``TransformerEncoderLayerBase.forward`` / ``TransformerDecoderLayerBase.forward`` block by block
   in terms of the layer's submodules (``self_attn``, ``fc1``/``fc2``, layer norms, dropout modules,
   ``normalize_before``); dropped heads scale rows of ``MultiheadAttention.v_proj`` (using its
   ``head_dim``). A change of fairseq's layer forward must be mirrored there; the tests compare the
   two with nothing dropped.

10. The layer list of a stack (``modules/layer_drop.py`` ``attach_layerdrop``, ``modules/layer_gates.py``
   ``add_layer_gates``, ``pruning/validation.py`` ``running_layers``): after fairseq builds a
   ``TransformerEncoderBase`` / ``TransformerDecoderBase``, its ``layers`` attribute (fairseq's
   ``nn.ModuleList`` or ``LayerDropModuleList``) is replaced by the plugin's list (``running_layers``
   also sets ``num_layers``); this relies on the stacks' forward iterating ``self.layers``.

11. Pruning at build time (``pruning/on_load.py``, ``build_pruned_model``) writes
   ``{encoder,decoder}_layers`` into fairseq's model config (dataclass or ``argparse.Namespace``) and
   clears fairseq's own ``*_layers_to_keep`` fields there, so that fairseq's ``prune_state_dict``
   never runs.

12. The decoder's output head (``criterions/early_exit_loss.py`` ``_exit_logits``,
    ``decoding/layer_range.py``): early exits apply ``TransformerDecoderBase.layer_norm``,
    ``project_out_dim`` and ``output_layer`` to an intermediate layer's output; the self-speculative
    generator runs the decoder's embedding, a range of its layers and that head itself, relying on
    fairseq 0.12's ``extract_features`` order (embed, layers, norm, projection).

13. Attention probabilities for LR-Drop (``modules/siamese_passes.py``): fairseq's fast attention
    path returns no per-head weights, so they are recomputed from ``MultiheadAttention``'s
    ``q_proj`` / ``k_proj`` / ``scaling`` / ``head_dim`` (tests compare them with fairseq's own weights).

And more in this module:

14. ``--bf16`` on CUDA (below): fairseq 0.12's ``options.parse_args_and_arch`` turns ``--bf16`` into
    ``--tpu`` (TPUs were its only bf16 device), so ``fairseq-train --bf16`` on a GPU asks for torch_xla
    and stops. ``distributed_utils.call_main`` is wrapped to clear ``common.tpu`` (and its copy in
    ``distributed_training``) when bf16 is asked,
    CUDA is there, ``--cpu`` is not given and torch_xla is not installed (no TPU can be meant).
    The same wrapper refuses, before any data is read, what cannot train on the CPU (``--cpu``, or no GPU):
    ``--fp16`` (fairseq's ``FP16Optimizer`` puts its fp32 copy of the weights on CUDA, and stops with
    ``Torch not compiled with CUDA enabled`` after loading the data; ``--memory-efficient-fp16`` runs) and
    ``--bf16`` without torch_xla (fairseq asks for a TPU device).

15. The hub's decoding keywords (below): ``GeneratorHubInterface.generate`` (``translate``, ``sample``,
    ``score``) writes every keyword into fairseq's generation config and builds the task's generator;
    a task of fairseq's own ignores ``self_speculative`` / ``draft_tokens`` / ``early_exit``. We wrap
    ``generate`` to refuse them, naming them, for a model whose task is not one of the plugin's.

16. Decoding options given to a command that decodes nothing (below): ``distributed_utils.call_main`` is
    wrapped once more to refuse ``--self-speculative`` / ``--draft-tokens`` in ``fairseq-eval-lm``,
    ``fairseq-validate`` and ``fairseq-train`` without ``--eval-bleu``, which would ignore them, and
    ``--early-exit`` in ``fairseq-train``, which would train a model of E layers instead of the exits; and
    ``--prune-strategy`` without a depth, which fairseq-validate would otherwise merge into the checkpoint's saved
    config, where it cannot be told from a strategy saved with a depth that was used.

And for RoBERTa (``models/roberta_layerdrop.py``, ``pruning/state_dict.py``):

17. RoBERTa's encoder layers are ``RobertaEncoder.sentence_encoder.layers`` (the ``TransformerEncoder`` that
    ``RobertaEncoder.build_encoder`` builds); ``roberta_layerdrop`` replaces that list after fairseq's
    ``RobertaModel.build_model`` (as 10), and calls fairseq's static ``RobertaModel.add_args`` through a parser
    proxy that drops the default 0 of its ``--encoder-layerdrop``, so that the architectures can default to the
    paper's 0.2. Pruning finds the layers under the keys ``encoder.sentence_encoder.layers.N.`` and, in older
    RoBERTa checkpoints, ``decoder.sentence_encoder.layers.N.``, the names that fairseq's
    ``RobertaModel.upgrade_state_dict_named`` renames (after the plugin has pruned: ``STACK_PATHS``).

And for exports as fairseq's own architecture (``pruning/plain_fairseq.py``, ``--as-fairseq``):

18. ``check_fairseq_loads`` builds fairseq's model from the export's config through ``models.build_model`` with a
    stand-in task that has only dictionaries of the right sizes (what fairseq's ``transformer``,
    ``transformer_lm`` and ``roberta`` builders read), on the meta device (roberta on the CPU: its
    ``init_bert_params`` copies through the CPU), and loads the weights with fairseq's strict
    ``load_state_dict``; it reads the missing and unexpected keys from torch's error text.
    ``plugin_only_options`` lists the options of fairseq's argparse-configured models with ``add_args`` on a
    scratch parser and reads them back from argparse's private ``_actions``.

19. ``fairseq.hub_utils.from_pretrained`` is wrapped (below) to record its keywords while it runs
    (``hub_keywords``): refusals of pruning options name the hub's keyword (``prune_to=5``) instead of the flag,
    and the draws log saved in a checkpoint is reused only when the hub is given ``layerdrop_draws_log`` again.
"""

import argparse
import logging

import torch

logger = logging.getLogger(__name__)

# What fairseq.__version__ reports for the fairseq this plugin was tested with (setup.py pins fairseq-fixed 0.12.3.1).
TESTED_FAIRSEQ_VERSIONS = ("0.12.3.1",)


class LoadWithUserDirArgs(argparse.Namespace):
    """The training arguments of a plugin checkpoint (legacy architectures): load it with --user-dir."""


class LoadWithUserDirMark:
    """Carried by the model state dict of a plugin checkpoint (config architectures): load it with --user-dir."""


def mark_plugin_args(args) -> None:
    """Make a legacy model's saved ``args`` name the plugin (see the module docstring)."""
    if type(args) is argparse.Namespace:
        args.__class__ = LoadWithUserDirArgs


def mark_plugin_state_dict(state_dict):
    """Attach the mark to a model state dict (see the module docstring) and return it."""
    state_dict.load_with_user_dir = LoadWithUserDirMark()
    return state_dict


def allow_plugin_classes_in_checkpoints():
    """Let ``torch.load(weights_only=True)`` rebuild ``argparse.Namespace`` and the plugin's marks."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 has no allow-list and needs none
        add_safe_globals([argparse.Namespace, LoadWithUserDirArgs, LoadWithUserDirMark])


allow_plugin_classes_in_checkpoints()


# 3. c10d DDP on CPU, and unused parameters under LayerDrop --------------------------------------
# fairseq (models/distributed_fairseq_model.py) wraps the model in torch's DistributedDataParallel
# with ``device_ids=[args.device_id]``; torch refuses device ids for a CPU module (ValueError), so
# ``--ddp-backend c10d --cpu`` cannot start. And a LayerDrop step leaves the skipped layers'
# parameters without gradients, which c10d's reducer reports as an error at the next step unless
# ``find_unused_parameters=True`` (fairseq issues 2389, 3599). fairseq looks the class up in its
# module at call time, so we give it a subclass that fixes both and changes nothing else.

from torch.nn.parallel import DistributedDataParallel as _TorchDDP  # noqa: E402


class LayerDropDistributedDataParallel(_TorchDDP):
    """torch's DDP, without device ids for a CPU module, finding unused parameters when LayerDrop skips some."""

    def __init__(self, module, device_ids=None, output_device=None, find_unused_parameters=False, **kwargs):
        import logging

        logger = logging.getLogger(__name__)
        if all(not p.is_cuda for p in module.parameters()):
            device_ids = output_device = None  # torch: "device_ids ... only work with ... GPU modules"
        if not find_unused_parameters and any(getattr(m, "skips_parameters", False) for m in module.modules()):
            find_unused_parameters = True
            logger.info("LayerDrop skips layers or blocks: setting find_unused_parameters=True for c10d DDP "
                        "(as --find-unused-parameters; or use --ddp-backend legacy_ddp)")
        super().__init__(module, device_ids=device_ids, output_device=output_device,
                         find_unused_parameters=find_unused_parameters, **kwargs)


def use_layerdrop_ddp():
    """Make fairseq's ``--ddp-backend c10d`` wrap models in ``LayerDropDistributedDataParallel``."""
    from fairseq.models import distributed_fairseq_model

    distributed_fairseq_model.DistributedDataParallel = LayerDropDistributedDataParallel


use_layerdrop_ddp()


# 4. Pruning options passed to a loader that no model reads ----------------------------------------
# fairseq's loaders (the hub's ``from_pretrained(..., prune_to=3)`` keyword arguments, and
# ``--model-overrides`` of fairseq-generate / -eval-lm) write each override into the checkpoint's
# config wherever a field of that name exists. A model and task of fairseq's own have no
# ``prune_to`` (nor ``layers_to_keep``, ``*_prune_to``), so the full model would load without a
# word. ``checkpoint_utils.load_model_ensemble_and_task`` is looked up in its module at call
# time by ``hub_utils.from_pretrained`` and ``load_model_ensemble``; we wrap it to refuse that.

PLUGIN_PRUNING_OVERRIDES = ("layers_to_keep", "prune_to", "encoder_prune_to", "decoder_prune_to")


def check_pruning_overrides_read(arg_overrides, models, cfg):
    """Refuse a load where a pruning option was passed as an override but no model was pruned by it."""
    asked = {k: v for k, v in (arg_overrides or {}).items() if k in PLUGIN_PRUNING_OVERRIDES and v is not None}
    if not asked or all(getattr(model, "pruning_requested", None) for model in models):
        return
    from .pruning.state_dict import PruningError

    task = getattr(getattr(cfg, "task", None), "_name", None) or "?"
    model_cfg = getattr(cfg, "model", None)
    arch = getattr(model_cfg, "arch", None) or getattr(model_cfg, "_name", None) or "?"
    plugin_task = plugin_task_extending(task)
    given = ", ".join(f"{k}={v!r}" for k, v in asked.items())
    example = dict(_name=plugin_task, **asked)
    raise PruningError(
        f"{given} was passed to the loader but no model read it: this checkpoint's task ({task}) and "
        f"architecture ({arch}) do not take the plugin's pruning options, so the full model would load. "
        f"Name the plugin's task with the option inside it (hub: task={example!r}; fairseq-generate / "
        f"-eval-lm: --user-dir ... --task {plugin_task} --{next(iter(asked)).replace('_', '-')} ...), or export a "
        f"pruned copy with `fairseq-layerdrop prune CHECKPOINT OUT.pt` and load that"
    )


def plugin_task_extending(task: str) -> str:
    """The plugin's task that adds the pruning options to fairseq's ``task`` (for the refusal's remedy)."""
    for fairseq_task, plugin_task in (("masked_lm", "masked_lm_layerdrop"),
                                      ("sentence_prediction", "sentence_prediction_layerdrop"),
                                      ("language_model", "language_modeling_layerdrop")):
        if fairseq_task in task:
            return plugin_task
    return "translation_layerdrop"


def refuse_unread_pruning_overrides():
    """Make fairseq's ``load_model_ensemble_and_task`` check that pruning overrides were read."""
    from fairseq import checkpoint_utils

    load = checkpoint_utils.load_model_ensemble_and_task
    if getattr(load, "checks_pruning_overrides", False):
        return

    def load_model_ensemble_and_task(filenames, arg_overrides=None, *args, **kwargs):
        from .decoding.options import check_decoding_overrides_read

        ensemble, cfg, task = load(filenames, arg_overrides, *args, **kwargs)
        check_pruning_overrides_read(arg_overrides, ensemble, cfg)
        check_decoding_overrides_read(arg_overrides, task, cfg)
        return ensemble, cfg, task

    load_model_ensemble_and_task.checks_pruning_overrides = True
    load_model_ensemble_and_task.__wrapped__ = load
    checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task


refuse_unread_pruning_overrides()


def switch_to_named_plugin_task(cfg, overrides) -> bool:
    """If ``overrides`` name (``task="..."``) a plugin task that extends the checkpoint's task, make ``cfg``'s task
    that plugin task, with a field for each override it takes that fairseq's task lacks; True if switched.

    fairseq's ``overwrite_args_by_name`` writes an override only where a field of that name exists, and
    ignores a string override of the ``task`` node: ``fairseq-validate --task language_modeling_layerdrop
    --early-exit 1`` of a checkpoint saved by ``--task language_modeling`` ran fairseq's task, full depth.
    """
    from omegaconf import DictConfig, open_dict

    named = (overrides or {}).get("task")
    task_cfg = cfg.get("task") if isinstance(cfg, DictConfig) and "task" in cfg else None
    if not isinstance(named, str) or not isinstance(task_cfg, DictConfig):
        return False
    from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY

    saved = task_cfg.get("_name")
    plugin = TASK_REGISTRY.get(named)
    if (named == saved or plugin is None or not plugin.__module__.startswith(__name__.rsplit(".", 1)[0] + ".")
            or saved not in TASK_REGISTRY or not issubclass(plugin, TASK_REGISTRY[saved])
            or named not in TASK_DATACLASS_REGISTRY):
        return False
    fields = TASK_DATACLASS_REGISTRY[named].__dataclass_fields__
    with open_dict(task_cfg):
        for name, value in overrides.items():
            if name in fields and name not in task_cfg:
                task_cfg[name] = value
        task_cfg._name = named
    logger.info(f"task: {named} (named on the command line) instead of the checkpoint's {saved}, which it extends")
    return True


def honor_named_plugin_task():
    """Make ``checkpoint_utils.overwrite_args_by_name`` switch to a plugin task named as an override first."""
    from fairseq import checkpoint_utils

    overwrite = checkpoint_utils.overwrite_args_by_name
    if getattr(overwrite, "honors_named_plugin_task", False):
        return

    def overwrite_args_by_name(cfg, overrides):
        switch_to_named_plugin_task(cfg, overrides)
        return overwrite(cfg, overrides)

    overwrite_args_by_name.honors_named_plugin_task = True
    overwrite_args_by_name.__wrapped__ = overwrite
    checkpoint_utils.overwrite_args_by_name = overwrite_args_by_name


honor_named_plugin_task()


# 15. Decoding keywords of the hub for a task that does not read them -------------------------------

def refuse_ignored_hub_decoding_options():
    """Make the hub's ``generate`` refuse decoding options that the model's task would ignore."""
    from fairseq import hub_utils

    generate = hub_utils.GeneratorHubInterface.generate
    if getattr(generate, "checks_decoding_options", False):
        return

    def checked_generate(self, tokenized_sentences, *args, **kwargs):
        from .decoding.options import check_generate_options

        check_generate_options(self.task, kwargs)
        return generate(self, tokenized_sentences, *args, **kwargs)

    checked_generate.checks_decoding_options = True
    checked_generate.__wrapped__ = generate
    hub_utils.GeneratorHubInterface.generate = checked_generate


refuse_ignored_hub_decoding_options()


# 5. Whether a model is built to be trained or loaded from a checkpoint --------------------------
# fairseq tells ``models.build_model(cfg, task, from_checkpoint)`` but not the model's own
# ``build_model(args, task)``. Checks of training flags (``--layer-gates`` needs a gated
# criterion) must run when fairseq-train builds the model, before any data is read, but not when
# fairseq-generate or -eval-lm loads a checkpoint, whose flags are history. fairseq's tasks look
# ``models.build_model`` up at call time, so a wrapper that records the flag is enough.

import contextvars  # noqa: E402
import weakref  # noqa: E402

_FROM_CHECKPOINT = contextvars.ContextVar("fairseq_layerdrop_from_checkpoint", default=False)


def building_from_checkpoint() -> bool:
    """True while fairseq builds a model to load a checkpoint into (not to train from the command line)."""
    return _FROM_CHECKPOINT.get()


_TRAINING_MODEL = (None, None)  # weak references to the model fairseq last built to train, and its task


def model_built_for_training(task):
    """The model that ``task`` last built in this process to train (not to load a checkpoint into), or None.

    fairseq-train builds the model, then the criterion, with the same task: the plugin's criteria check
    that model, so that a criterion the model cannot serve is refused at start, before the training data
    is read.
    """
    model_ref, task_ref = _TRAINING_MODEL
    # A task that has been freed reads as None: never match it with a caller that has no task.
    if task is None or model_ref is None or task_ref() is not task:
        return None
    return model_ref()


def record_from_checkpoint():
    """Make ``fairseq.models.build_model`` record its ``from_checkpoint`` for ``building_from_checkpoint``."""
    from fairseq import models

    build = models.build_model
    if getattr(build, "records_from_checkpoint", False):
        return

    def build_model(cfg, task, from_checkpoint=False):
        global _TRAINING_MODEL
        token = _FROM_CHECKPOINT.set(bool(from_checkpoint))
        try:
            model = build(cfg, task, from_checkpoint)
        finally:
            _FROM_CHECKPOINT.reset(token)
        if not from_checkpoint:
            _TRAINING_MODEL = (weakref.ref(model), weakref.ref(task))
        return model

    build_model.records_from_checkpoint = True
    models.build_model = build_model


record_from_checkpoint()


# 19. The hub's keywords. A hub user gives pruning options as keywords (``prune_to=3``): a refusal then names
# ``prune_to``, not the flag ``--prune-to`` that this user never typed; and a training option saved in the
# checkpoint (``layerdrop_draws_log``) is reused only when given again. fairseq's models look
# ``hub_utils.from_pretrained`` up at call time, and its keywords reach the model merged into the checkpoint's
# config, so a wrapper records them while it runs.

_HUB_KEYWORDS = contextvars.ContextVar("fairseq_layerdrop_hub_keywords", default=None)
_HUB_NAMED_PARAMETERS = ("model_name_or_path", "checkpoint_file", "data_name_or_path", "archive_map")


def hub_keywords():
    """The keyword arguments (beyond its named parameters) of the ``from_pretrained`` call running now, or None."""
    return _HUB_KEYWORDS.get()


def record_hub_keywords():
    """Make ``fairseq.hub_utils.from_pretrained`` record its keywords for ``hub_keywords``."""
    from fairseq import hub_utils

    load = hub_utils.from_pretrained
    if getattr(load, "records_hub_keywords", False):
        return

    def from_pretrained(*args, **kwargs):
        token = _HUB_KEYWORDS.set({k: v for k, v in kwargs.items() if k not in _HUB_NAMED_PARAMETERS})
        try:
            return load(*args, **kwargs)
        finally:
            _HUB_KEYWORDS.reset(token)

    from_pretrained.records_hub_keywords = True
    from_pretrained.__wrapped__ = load
    hub_utils.from_pretrained = from_pretrained


record_hub_keywords()


# 6. Cropping a decoder layer's cache of keys and values (self-speculative decoding) ---------------
# fairseq's MultiheadAttention keeps, in the incremental state, under its own id, "prev_key" and
# "prev_value" of shape (batch, heads, positions, head dim) and "prev_key_padding_mask" (batch, positions)
# or None; fairseq itself only reorders them (beam search). Rejected drafts must be forgotten, so we cut
# them along the positions, through the module's own buffer accessors.

def crop_self_attention_cache(attention, incremental_state, length):
    """Keep the first ``length`` positions of a self-attention module's cached keys and values."""
    buffer = attention._get_input_buffer(incremental_state)
    if not buffer or "prev_key" not in buffer:
        return
    for key in ("prev_key", "prev_value"):
        buffer[key] = buffer[key][:, :, :length]
    mask = buffer.get("prev_key_padding_mask")
    if mask is not None:
        buffer["prev_key_padding_mask"] = mask[:, :length]
    attention._set_input_buffer(incremental_state, buffer)


# 14. --bf16 on a GPU ------------------------------------------------------------------------------
# fairseq 0.12 (options.py): ``if args.bf16: args.tpu = True``; the trainer then takes an XLA device
# (torch_xla) instead of CUDA. Every fairseq command that trains or validates calls
# ``distributed_utils.call_main`` (looked up in its module at call time) after parsing, so we clear
# the TPU flag there when a TPU cannot be meant.

def keep_bf16_on_cuda(cfg, cuda_available=None, xla_installed=None) -> bool:
    """Clear ``cfg.common.tpu`` set by ``--bf16`` when CUDA is available and torch_xla is not; True if cleared."""
    import importlib.util

    common = getattr(cfg, "common", None)
    if common is None or not getattr(common, "bf16", False) or not getattr(common, "tpu", False):
        return False
    if getattr(common, "cpu", False):
        return False
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    xla_installed = importlib.util.find_spec("torch_xla") is not None if xla_installed is None else xla_installed
    if not cuda_available or xla_installed:
        return False
    common.tpu = False
    distributed = getattr(cfg, "distributed_training", None)
    if getattr(distributed, "tpu", False):  # a copy of common.tpu, read by infer_init_method
        distributed.tpu = False
    logger.info("--bf16 on CUDA: fairseq 0.12 takes --bf16 to mean a TPU (torch_xla, not installed); training in "
                "bfloat16 on the GPU instead (fairseq_layerdrop/compat.py, 14)")
    return True


def refuse_half_precision_training_on_cpu(cfg, main=None, cuda_available=None, xla_installed=None) -> None:
    """Refuse ``fairseq-train --fp16`` (and ``--bf16`` without torch_xla) on the CPU: ValueError naming the flag.

    Only training: fairseq-validate and fairseq-eval-lm build no optimizer and run with these flags on the CPU."""
    import importlib.util

    if main is not None and getattr(main, "__module__", None) != "fairseq_cli.train":
        return
    common = getattr(cfg, "common", None)
    if common is None:
        return
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if cuda_available and not getattr(common, "cpu", False):
        return
    where = "--cpu is given" if getattr(common, "cpu", False) else "torch sees no GPU"
    if getattr(common, "fp16", False) and not getattr(common, "memory_efficient_fp16", False):
        raise ValueError(
            f"--fp16 cannot train on the CPU ({where}): fairseq's FP16 optimizer keeps the fp32 copy of the weights "
            f"on CUDA, and would stop with 'Torch not compiled with CUDA enabled' after reading the data. Drop "
            f"--fp16 to train in fp32 on the CPU, or train on a GPU")
    xla_installed = importlib.util.find_spec("torch_xla") is not None if xla_installed is None else xla_installed
    if getattr(common, "bf16", False) and getattr(common, "tpu", False) and not xla_installed:
        raise ValueError(
            f"--bf16 cannot train on the CPU ({where}): fairseq 0.12 trains bfloat16 on a TPU (torch_xla, not "
            f"installed), and this plugin on CUDA. Drop --bf16 to train in fp32 on the CPU, or train on a GPU")


def train_bf16_on_cuda():
    """Make fairseq's ``distributed_utils.call_main`` run ``keep_bf16_on_cuda`` (and
    ``refuse_half_precision_training_on_cpu``) first."""
    from fairseq.distributed import utils as distributed_utils

    call_main = distributed_utils.call_main
    if getattr(call_main, "keeps_bf16_on_cuda", False):
        return

    def call_main_bf16_on_cuda(cfg, main, **kwargs):
        keep_bf16_on_cuda(cfg)
        refuse_half_precision_training_on_cpu(cfg, main)
        return call_main(cfg, main, **kwargs)

    call_main_bf16_on_cuda.keeps_bf16_on_cuda = True
    call_main_bf16_on_cuda.__wrapped__ = call_main
    distributed_utils.call_main = call_main_bf16_on_cuda


train_bf16_on_cuda()


# 16. Decoding options given to a command that decodes nothing ------------------------------------
# fairseq-eval-lm and fairseq-validate score data and never build a generator; fairseq-train builds one
# only for --eval-bleu. The plugin's tasks take --self-speculative / --draft-tokens in all of them, so
# the flags would be parsed and ignored. Every one of these commands calls ``distributed_utils.call_main``
# with its ``main`` after the plugin is imported; we wrap it (again, after 14) to refuse them first.

def refuse_decoding_options_of_commands_that_do_not_decode():
    """Make ``distributed_utils.call_main`` refuse decoding options that its command would ignore."""
    from fairseq.distributed import utils as distributed_utils

    call_main = distributed_utils.call_main
    if getattr(call_main, "checks_decoding_options", False):
        return

    def call_main_checking_decoding_options(cfg, main, **kwargs):
        from .decoding.options import check_command_decodes
        from .pruning.options import check_strategy_has_a_depth

        check_command_decodes(cfg, getattr(main, "__module__", ""))
        # the command line's pruning options, before fairseq-validate merges them into a checkpoint's saved config
        if getattr(cfg, "task", None) is not None:
            check_strategy_has_a_depth(cfg.task)
        return call_main(cfg, main, **kwargs)

    call_main_checking_decoding_options.checks_decoding_options = True
    call_main_checking_decoding_options.__wrapped__ = call_main
    distributed_utils.call_main = call_main_checking_decoding_options


refuse_decoding_options_of_commands_that_do_not_decode()


def check_fairseq_version(version=None) -> bool:
    """Log one warning if the installed fairseq (or ``version``) is not one the plugin was tested with."""
    if version is None:
        import fairseq

        version = getattr(fairseq, "__version__", "unknown")
    if version in TESTED_FAIRSEQ_VERSIONS:
        return True
    logger.warning(
        f"fairseq-layerdrop was tested with fairseq {', '.join(TESTED_FAIRSEQ_VERSIONS)} (fairseq-fixed); the "
        f"installed fairseq is {version}. The plugin adapts fairseq internals that may have changed: checkpoint "
        f"loading under torch's safe unpickler, the DDP wrapper, pruning on load through upgrade_state_dict, a "
        f"private argparse API in the task's flags, and the block-wise layer forward of --layerdrop-structure "
        f"(a copy of fairseq 0.12's layer forward). Run its tests (make test) before relying on it; the list is in "
        f"fairseq_layerdrop/compat.py."
    )
    return False


check_fairseq_version()
