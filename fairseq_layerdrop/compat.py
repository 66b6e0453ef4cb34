"""The one place that adapts fairseq 0.12 to current torch.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``. Checkpoints of fairseq's
argparse-configured ("legacy") architectures, such as ``transformer`` and ours, hold an
``argparse.Namespace`` and would fail to load with ``UnpicklingError``. We allow-list that
one class and keep the safe unpickler for everything else. fairseq imports a ``--user-dir``
before it loads any checkpoint, so importing the plugin is early enough.
"""

import argparse

import torch


def allow_namespace_in_checkpoints():
    """Let ``torch.load(weights_only=True)`` rebuild ``argparse.Namespace``."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 has no allow-list and needs none
        add_safe_globals([argparse.Namespace])


allow_namespace_in_checkpoints()
