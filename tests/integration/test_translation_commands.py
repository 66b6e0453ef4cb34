"""transformer_layerdrop through fairseq-train / fairseq-generate with --user-dir."""

import re

import pytest
import torch
from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq, json_logs

TINY = [
    "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
    "--encoder-layers", "6", "--decoder-attention-heads", "4", "--decoder-layers", "6",
]


def train(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *TRAIN_COMMON, "--save-dir", save_dir, *args)
    return proc.stdout + proc.stderr


def generate(data, checkpoint, *args):
    proc = fairseq(
        "fairseq-generate", data, "--path", checkpoint, "--cpu", "--beam", "2", "--batch-size", "64",
        "--max-len-a", "1", "--max-len-b", "5", "--required-batch-size-multiple", "1", *args,
    )
    return sorted(line for line in proc.stdout.splitlines() if line.startswith("H-"))


def test_layerdrop_model_learns_logs_layers_ran_and_generates(translation_data, tmp_path):
    log = train(
        translation_data, tmp_path, "--user-dir", PLUGIN, "--arch", "transformer_layerdrop_tiny",
        "--encoder-layerdrop", "0.5", "--decoder-layerdrop", "0.5", "--max-epoch", "6",
    )
    epochs = json_logs(log, "train")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.5, [e["train_loss"] for e in epochs]
    inner = json_logs(log, "train_inner")
    ran = [r["enc_layers_ran"] for r in inner] + [r["dec_layers_ran"] for r in inner]
    assert all(0 <= n <= 6 for n in ran) and len(set(ran)) > 2, ran
    # 6 layers at p = 0.5: 3 run on average; over these updates the sd of the mean is about 1.22 / sqrt(n)
    mean = sum(ran) / len(ran)
    assert abs(mean - 3) < 4 * 1.22 / len(ran) ** 0.5 + 0.05, mean
    hypotheses = generate(translation_data, tmp_path / "checkpoint_last.pt", "--user-dir", PLUGIN)
    assert len(hypotheses) == 50


def test_zero_rate_computes_exactly_what_fairseq_transformer_computes(translation_data, tmp_path):
    args = [*TINY, "--max-epoch", "2", "--dropout", "0.1"]
    ours = train(translation_data, tmp_path / "ours", "--user-dir", PLUGIN, "--arch", "transformer_layerdrop",
                 "--encoder-layerdrop", "0", "--decoder-layerdrop", "0", *args)
    theirs = train(translation_data, tmp_path / "fairseq", "--arch", "transformer", *args)
    losses = lambda log: [r["loss"] for r in json_logs(log, "train_inner")]  # noqa: E731
    assert losses(ours) == losses(theirs) and len(losses(ours)) >= 4
    a = torch.load(tmp_path / "ours/checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "fairseq/checkpoint_last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert generate(translation_data, tmp_path / "ours/checkpoint_last.pt", "--user-dir", PLUGIN) == \
        generate(translation_data, tmp_path / "fairseq/checkpoint_last.pt", "--user-dir", PLUGIN)


def test_resumed_run_repeats_the_drops_of_an_uninterrupted_run(translation_data, tmp_path):
    args = ["--user-dir", PLUGIN, "--arch", "transformer_layerdrop_tiny",
            "--encoder-layerdrop", "0.5", "--decoder-layerdrop", "0.5", "--update-epoch-batch-itr", "True"]
    straight = train(translation_data, tmp_path / "straight", *args, "--max-epoch", "3")
    train(translation_data, tmp_path / "resumed", *args, "--max-epoch", "1")
    resumed = train(translation_data, tmp_path / "resumed", *args, "--max-epoch", "3")
    assert "Loaded checkpoint" in resumed
    after = lambda log: [r for r in json_logs(log, "train_inner") if r["epoch"] >= 2]  # noqa: E731
    drops = lambda log: [(r["num_updates"], r["enc_layers_ran"], r["dec_layers_ran"]) for r in after(log)]  # noqa: E731
    assert drops(resumed) == drops(straight) and len(drops(straight)) >= 4
    assert len({d[1:] for d in drops(straight)}) > 1, "the draw should vary across updates"
    # with --update-epoch-batch-itr True the resumed epochs see the same batches (tests/test_resume.py)
    assert [r["loss"] for r in after(resumed)] == [r["loss"] for r in after(straight)]


@pytest.mark.parametrize("flag", ["--encoder-layerdrop", "--decoder-layerdrop"])
@pytest.mark.parametrize("value", ["1.0", "-0.2"])
def test_rate_outside_unit_interval_is_refused_at_start(translation_data, tmp_path, flag, value):
    proc = fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", tmp_path, "--user-dir", PLUGIN,
                   "--arch", "transformer_layerdrop_tiny", flag, value, "--max-epoch", "1", check=False)
    assert proc.returncode != 0
    assert re.search(re.escape(flag) + r" must be in \[0, 1\)", proc.stderr), proc.stderr[-2000:]
    assert not list(tmp_path.glob("*.pt"))
