"""The defects of issue 13 through the commands a user runs: refused at start with the flag to use,
or right. Each fairseq-train here is refused before the training data is read (no crash.pt)."""

import os
import re
import stat
import subprocess

import pytest
import torch

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from tests.helpers import BIN, PLUGIN, TRAIN_COMMON, fairseq, json_logs

LM_TRAIN = [*TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "64",
            "--arch", "transformer_lm_layerdrop_tiny"]


def refused_training(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *LM_TRAIN, "--save-dir", save_dir, "--max-update", "2", *args, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert not os.path.exists(save_dir) or os.listdir(save_dir) == []  # no crash.pt, no checkpoint
    assert not re.search(r"loaded [0-9,]+ (examples|blocks) from: \S*train", output)  # before the training data
    return output


def test_layer_gates_with_a_plain_criterion_are_refused_at_start(lm_data, tmp_path):
    output = refused_training(lm_data, tmp_path / "save", "--decoder-layerdrop", "0.5", "--layer-gates")
    assert ("--layer-gates learns each layer's drop rate, but --criterion cross_entropy does not train the gates"
            in output), output[-2000:]
    assert "Use --criterion gated_cross_entropy" in output


def test_a_gated_criterion_without_layer_gates_is_refused_at_start(lm_data, tmp_path):
    output = refused_training(lm_data, tmp_path / "save", "--criterion", "gated_cross_entropy")
    assert ("--criterion gated_cross_entropy trains learned layer gates: add --layer-gates (with a LayerDrop rate "
            "above 0), or use --criterion cross_entropy") in output, output[-2000:]


FAIRSEQ_LM = ["--arch", "transformer_lm", "--decoder-layers", "2", "--decoder-embed-dim", "32",
              "--decoder-input-dim", "32", "--decoder-output-dim", "32", "--decoder-ffn-embed-dim", "64",
              "--decoder-attention-heads", "2"]


@pytest.mark.parametrize("criterion, message", [
    (["gated_cross_entropy"], "--criterion gated_cross_entropy trains learned layer gates, which this model "
                              "(TransformerLanguageModel) does not have"),
    (["early_exit_cross_entropy"], "the early-exit criteria need a decoder of this plugin"),
    (["lr_drop_cross_entropy", "--lr-drop-attention-weight", "1"],
     "--lr-drop-attention-weight compare the two passes layer by layer"),
], ids=["gated", "early-exit", "lr-drop-layer-term"])
def test_a_plugin_criterion_that_fairseqs_own_lm_cannot_serve_is_refused_at_start(lm_data, tmp_path, criterion,
                                                                                   message):
    output = refused_training(lm_data, tmp_path / "save", *FAIRSEQ_LM, "--criterion", *criterion)
    assert message in output, output[-2000:]


def test_head_dropping_with_one_head_is_refused_at_start(lm_data, tmp_path):
    output = refused_training(lm_data, tmp_path / "save", "--layerdrop-structure", "head",
                              "--decoder-attention-heads", "1")
    assert "--layerdrop-structure head drops attention heads, but --decoder-attention-heads is 1" in output, \
        output[-2000:]


def export(source, target, *args):
    return subprocess.run([os.path.join(BIN, "fairseq-layerdrop-prune"), source, target, *args],
                          capture_output=True, text=True, check=True)


def test_an_exported_plugin_lm_without_user_dir_names_the_remedy_and_with_it_evaluates(lm_data, lm_checkpoint,
                                                                                        tmp_path):
    subprocess.run(["bash", "-c", f"umask 027 && {os.path.join(BIN, 'fairseq-layerdrop-prune')} "
                                  f"{lm_checkpoint} {tmp_path / 'small.pt'} --prune-to 3"], check=True,
                   capture_output=True)
    assert stat.S_IMODE(os.stat(tmp_path / "small.pt").st_mode) == 0o640  # the umask's, not 0600
    plain = fairseq("fairseq-eval-lm", lm_data, "--path", tmp_path / "small.pt", "--cpu", "--tokens-per-sample", "64",
                    check=False)
    assert plain.returncode != 0
    assert "fairseq_layerdrop.compat.LoadWithUserDirMark" in plain.stderr and "KeyError" not in plain.stderr
    with_plugin = fairseq("fairseq-eval-lm", lm_data, "--path", tmp_path / "small.pt", "--cpu", "--tokens-per-sample",
                          "64", "--user-dir", PLUGIN)
    log = with_plugin.stdout + with_plugin.stderr
    tokens = int(re.search(r"Evaluated ([0-9,]+) tokens", log).group(1).replace(",", ""))
    assert tokens > 1000 and 1 < float(re.search(r"Perplexity: ([0-9.]+)", log).group(1)) < 1000, log[-2000:]


def test_continuing_training_from_an_export_names_the_depth_flag_and_trains_with_it(lm_data, lm_checkpoint,
                                                                                      tmp_path):
    export(lm_checkpoint, tmp_path / "small.pt", "--prune-to", "3")
    output = refused_training(lm_data, tmp_path / "wrong", "--finetune-from-model", tmp_path / "small.pt")
    assert ("the checkpoint's decoder has 3 layers but this model is built with 6: pass --decoder-layers 3"
            in output), output[-3000:]
    proc = fairseq("fairseq-train", lm_data, *LM_TRAIN, "--save-dir", tmp_path / "right", "--max-update", "3",
                   "--finetune-from-model", tmp_path / "small.pt", "--decoder-layers", "3")
    logs = json_logs(proc.stdout + proc.stderr, "train_inner")
    assert [int(r["num_updates"]) for r in logs] == [1, 2, 3]  # a fresh start: the update counter from 0
    state = torch.load(tmp_path / "right" / "checkpoint_last.pt", weights_only=True)
    small = torch.load(tmp_path / "small.pt", weights_only=True)
    assert state["cfg"]["model"]["decoder_layers"] == 3
    assert {k for k in state["model"]} == {k for k in small["model"]}
