"""The one place that adapts fairseq 0.12 to current torch, and plugin checkpoints to fairseq.

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
   class is the mark; config models (the LM) store only plain values before the model's state
   dict, so that dict carries a ``LoadWithUserDirMark`` attribute (fairseq keeps a state dict's
   attributes when it moves it to the CPU for saving, as it must for torch's ``_metadata``).
"""

import argparse

import torch


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


# 4. Cropping a decoder layer's cache of keys and values (self-speculative decoding) ---------------
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
