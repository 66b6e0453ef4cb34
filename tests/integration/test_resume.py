"""A run interrupted and resumed from checkpoint_last.pt repeats an uninterrupted run bit for bit.

fairseq seeds dropout with seed + update number, and our drop decisions are a pure function of
(seed, update, micro-batch, name). What differed on resume was the data: fairseq (this version)
orders a dataset's examples under ``numpy_seed(seed + epoch)`` with the epoch at which the batch
iterator is *created*, and reuses that iterator for later epochs; a resumed run creates it at the
resumed epoch, so its batches hold other examples. ``--update-epoch-batch-itr True`` makes fairseq
create the iterator every epoch, so every run orders epoch e the same way.
"""

import json

import pytest
import torch
from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq, json_logs

ARGS = [
    *TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "64",
    "--arch", "transformer_lm_layerdrop_tiny", "--decoder-layers", "3", "--decoder-layerdrop", "0.5",
    "--layerdrop-structure", "head+layer", "--dropout", "0.1", "--update-epoch-batch-itr", "True",
]


def train(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *ARGS, "--save-dir", save_dir,
                   "--layerdrop-draws-log", save_dir / "draws", *args)
    return proc.stdout + proc.stderr


def losses(log):
    return {int(r["num_updates"]): r["loss"] for r in json_logs(log, "train_inner")}


def draws(save_dir):
    with open(save_dir / "draws.rank0") as f:
        return [json.loads(line) for line in f]


def weights(save_dir):
    return torch.load(save_dir / "checkpoint_last.pt", weights_only=False)["model"]


@pytest.fixture(scope="module")
def straight(lm_data, tmp_path_factory):
    """An uninterrupted run of 2 epochs (9 updates each): its save dir and its losses per update."""
    save_dir = tmp_path_factory.mktemp("straight")
    return save_dir, losses(train(lm_data, save_dir, "--max-epoch", "2"))


# (an interruption at the end of an epoch: tests/test_translation_commands.py, same flag)
@pytest.mark.parametrize("interrupt", [["--max-update", "13", "--save-interval-updates", "13"]], ids=["mid-epoch"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_run(lm_data, tmp_path, straight, interrupt):
    straight_dir, straight = straight
    first = losses(train(lm_data, tmp_path / "resumed", *interrupt))
    log = train(lm_data, tmp_path / "resumed", "--max-epoch", "2")
    assert "Loaded checkpoint" in log
    second = losses(log)
    stop = max(first)
    assert set(first) == set(range(1, stop + 1)) and set(second) == set(range(stop + 1, max(straight) + 1))
    assert stop == 13 and max(straight) == 18
    assert {**first, **second} == straight
    assert draws(tmp_path / "resumed") == draws(straight_dir)
    a, b = weights(tmp_path / "resumed"), weights(straight_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
