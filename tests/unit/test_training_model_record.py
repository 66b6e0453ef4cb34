"""compat.model_built_for_training: the model fairseq built to train is found only through its own live task.

CI failed (2026-12-02) when a criterion built outside fairseq-train (no task: None) was handed the model of an
earlier test whose task had been freed: a dead weak reference reads as None, and None matched None.
"""
import gc

import torch

from fairseq_layerdrop import compat


class _Task:
    pass


def _record(model, task):
    compat._TRAINING_MODEL = (compat.weakref.ref(model), compat.weakref.ref(task))


def test_a_caller_without_a_task_never_gets_the_model_of_a_freed_task():
    saved = compat._TRAINING_MODEL
    try:
        model, task = torch.nn.Linear(1, 1), _Task()
        _record(model, task)
        del task
        gc.collect()
        assert compat.model_built_for_training(None) is None
    finally:
        compat._TRAINING_MODEL = saved


def test_the_live_task_gets_its_model_and_another_task_does_not():
    saved = compat._TRAINING_MODEL
    try:
        model, task = torch.nn.Linear(1, 1), _Task()
        _record(model, task)
        assert compat.model_built_for_training(task) is model
        assert compat.model_built_for_training(_Task()) is None
        assert compat.model_built_for_training(None) is None
    finally:
        compat._TRAINING_MODEL = saved
