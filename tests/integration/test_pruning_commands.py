"""Pruning at load time and export, through fairseq's commands and loaders with --user-dir, and the depth sweep
(`fairseq-layerdrop sweep`, run from outside the checkout)."""

import csv
import os
import re
import subprocess

import pytest
import torch
from torch import nn

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from tests.helpers import BIN, PLUGIN, TRAIN_COMMON, fairseq, json_logs, load_models

GENERATE = ["--cpu", "--beam", "2", "--batch-size", "64", "--max-len-a", "1", "--max-len-b", "5",
            "--required-batch-size-multiple", "1"]


def hypotheses(output):
    return sorted(line for line in output.splitlines() if line.startswith("H-"))


def generate(data, checkpoint, *args):
    proc = fairseq("fairseq-generate", data, "--path", checkpoint, *GENERATE, *args)
    return hypotheses(proc.stdout), proc.stdout + proc.stderr


def perplexity(data, checkpoint, *args):
    proc = fairseq("fairseq-eval-lm", data, "--path", checkpoint, "--cpu", "--tokens-per-sample", "64", *args)
    return float(re.search(r"Perplexity: ([0-9.]+)", proc.stdout + proc.stderr).group(1)), proc.stdout + proc.stderr


def export(source, target, *args, check=True):
    return subprocess.run([os.path.join(BIN, "fairseq-layerdrop-prune"), source, target, *args],
                          capture_output=True, text=True, check=check)


def test_pruned_lm_computes_what_the_full_model_computes_with_only_the_kept_layers(lm_data, lm_checkpoint):
    full, _ = load_models(lm_data, lm_checkpoint, "--task", "language_modeling", parser="eval_lm")
    pruned, _ = load_models(lm_data, lm_checkpoint, "--task", "language_modeling_layerdrop",
                            "--decoder-layers-to-keep", "5,1,3", parser="eval_lm")
    assert len(pruned.decoder.layers) == 3
    tokens = torch.randint(4, 40, (3, 12))
    layers = full.decoder.layers
    full.decoder.layers = nn.ModuleList([layers[5], layers[1], layers[3]])  # the reference, by hand
    with torch.no_grad():
        assert torch.equal(pruned(tokens)[0], full(tokens)[0])


def test_pruned_translation_model_computes_what_the_kept_layers_compute(translation_data, mt_checkpoint):
    full, _ = load_models(translation_data, mt_checkpoint, "--task", "translation")
    pruned, _ = load_models(translation_data, mt_checkpoint, "--task", "translation_layerdrop",
                            "--encoder-layers-to-keep", "0,2,5", "--decoder-layers-to-keep", "4,1")
    assert (len(pruned.encoder.layers), len(pruned.decoder.layers)) == (3, 2)
    src, prev = torch.randint(4, 40, (2, 7)), torch.randint(4, 40, (2, 5))
    lengths = torch.tensor([7, 7])
    enc, dec = full.encoder.layers, full.decoder.layers
    full.encoder.layers = nn.ModuleList([enc[0], enc[2], enc[5]])
    full.decoder.layers = nn.ModuleList([dec[4], dec[1]])
    with torch.no_grad():
        assert torch.equal(pruned(src, lengths, prev)[0], full(src, lengths, prev)[0])


def test_pruning_only_the_decoder_keeps_the_encoder_whole(translation_data, mt_checkpoint):
    pruned, _ = load_models(translation_data, mt_checkpoint, "--task", "translation_layerdrop",
                            "--decoder-layers-to-keep", "0,2")
    saved = torch.load(mt_checkpoint, weights_only=True)["model"]
    state = pruned.state_dict()
    encoder_keys = [k for k in saved if k.startswith("encoder.")]
    assert len(pruned.encoder.layers) == 6 and encoder_keys
    assert all(torch.equal(state[k], saved[k]) for k in encoder_keys)
    assert torch.equal(state["decoder.layers.1.fc1.weight"], saved["decoder.layers.2.fc1.weight"])


def test_generate_logs_the_kept_layers_and_parameters(translation_data, mt_checkpoint):
    hyps, log = generate(translation_data, mt_checkpoint, "--user-dir", PLUGIN, "--task", "translation_layerdrop",
                         "--prune-to", "2", "--prune-strategy", "symmetric")
    assert len(hyps) == 50
    assert "pruning the encoder: keeping layers [0, 5] of 6" in log
    assert "pruning the decoder: keeping layers [0, 5] of 6" in log
    before, after = map(lambda s: int(s.replace(",", "")),
                        re.search(r"parameters: ([0-9,]+) before pruning, ([0-9,]+) after", log).groups())
    assert after < before


def test_exported_translation_checkpoint_matches_pruning_on_load(translation_data, mt_checkpoint, tmp_path):
    options = ["--encoder-layers-to-keep", "0,2,4", "--decoder-prune-to", "3", "--prune-strategy", "top"]
    proc = export(mt_checkpoint, tmp_path / "small.pt", *options)
    assert "decoder: kept layers 0,1,2" in proc.stdout and "file size" in proc.stdout
    assert os.path.getsize(tmp_path / "small.pt") < os.path.getsize(mt_checkpoint)
    on_load, _ = generate(translation_data, mt_checkpoint, "--user-dir", PLUGIN, "--task", "translation_layerdrop",
                          *options)
    exported, log = generate(translation_data, tmp_path / "small.pt", "--user-dir", PLUGIN)
    assert exported == on_load and len(exported) == 50
    assert "pruning the" not in log
    cfg = torch.load(tmp_path / "small.pt", weights_only=True)["cfg"]["model"]
    assert (cfg.encoder_layers, cfg.decoder_layers) == (3, 3)


def test_exported_fairseq_transformer_loads_in_plain_fairseq_with_the_same_hypotheses(
    translation_data, fairseq_mt_checkpoint, tmp_path
):
    export(fairseq_mt_checkpoint, tmp_path / "small.pt", "--decoder-layers-to-keep", "1,3,5")
    on_load, _ = generate(translation_data, fairseq_mt_checkpoint, "--user-dir", PLUGIN,
                          "--task", "translation_layerdrop", "--decoder-layers-to-keep", "1,3,5")
    plain, _ = generate(translation_data, tmp_path / "small.pt")  # no --user-dir: plain fairseq
    assert plain == on_load and len(plain) == 50


def test_exported_lm_checkpoint_matches_pruning_on_load(lm_data, lm_checkpoint, tmp_path):
    export(lm_checkpoint, tmp_path / "small.pt", "--prune-to", "3")
    on_load, log = perplexity(lm_data, lm_checkpoint, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                              "--prune-to", "3")
    assert "pruning the decoder: keeping layers [0, 2, 4] of 6" in log
    exported, _ = perplexity(lm_data, tmp_path / "small.pt", "--user-dir", PLUGIN)
    assert exported == on_load


@pytest.mark.parametrize("options, message", [
    (["--decoder-layers-to-keep", "0,9"], r"kept layer\(s\) \[9\] out of range for the decoder \(it has 6 layers"),
    (["--decoder-layers-to-keep", "1,1"], r"kept layer\(s\) \[1\] repeated"),
    (["--decoder-layers-to-keep", ""], r"kept-layer list of the decoder .* is empty"),
    (["--decoder-layers-to-keep", "0,x"], r"kept layer 'x' of the decoder .* is not an integer"),
    (["--prune-to", "0"], r"cannot prune the decoder to 0 layers: it has 6, so choose 1 to 6"),
    (["--prune-to", "7"], r"cannot prune the decoder to 7 layers"),
    (["--prune-to", "2", "--prune-strategy", "middle"], r"unknown pruning strategy 'middle'"),
    (["--encoder-layers-to-keep", "0"], r"this model has no encoder"),
    (["--layers-to-keep", "0", "--prune-to", "2"], r"the decoder is pruned twice"),
    ([], r"nothing to prune"),
])
def test_export_refuses_bad_input_and_writes_nothing(lm_checkpoint, tmp_path, options, message):
    proc = export(lm_checkpoint, tmp_path / "out.pt", *options, check=False)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-1500:]
    assert os.listdir(tmp_path) == []


def test_export_never_overwrites_its_input_or_an_existing_file(lm_checkpoint, tmp_path):
    size = os.path.getsize(lm_checkpoint)
    proc = export(lm_checkpoint, lm_checkpoint, "--prune-to", "2", check=False)
    assert proc.returncode != 0 and "the output is the input" in proc.stderr
    assert os.path.getsize(lm_checkpoint) == size
    (tmp_path / "taken.pt").write_text("keep me")
    proc = export(lm_checkpoint, tmp_path / "taken.pt", "--prune-to", "2", check=False)
    assert proc.returncode != 0 and "exists; pass --overwrite" in proc.stderr
    assert (tmp_path / "taken.pt").read_text() == "keep me"


def test_bad_list_at_load_time_stops_the_command_with_its_message(translation_data, mt_checkpoint):
    proc = fairseq("fairseq-generate", translation_data, "--path", mt_checkpoint, *GENERATE, "--user-dir", PLUGIN,
                   "--task", "translation_layerdrop", "--encoder-layers-to-keep", "0,6", check=False)
    assert proc.returncode != 0
    assert "kept layer(s) [6] out of range for the encoder (it has 6 layers: valid indices 0..5)" in proc.stderr


def test_validate_and_interactive_accept_the_pruning_options(lm_data, lm_checkpoint, translation_data, mt_checkpoint):
    proc = fairseq("fairseq-validate", lm_data, "--path", lm_checkpoint, "--cpu", "--user-dir", PLUGIN,
                   "--task", "language_modeling_layerdrop", "--tokens-per-sample", "64", "--layers-to-keep", "0,5",
                   "--max-tokens", "2000")
    assert "pruning the decoder: keeping layers [0, 5] of 6" in proc.stdout + proc.stderr
    interactive = subprocess.run(
        [os.path.join(BIN, "fairseq-interactive"), translation_data, "--path", mt_checkpoint, "--cpu", "--user-dir",
         PLUGIN, "--task", "translation_layerdrop", "--source-lang", "src", "--target-lang", "tgt",
         "--layers-to-keep", "1,3", "--max-len-b", "5"],
        input="s1 s2 s3\n", capture_output=True, text=True, check=True,
    )
    assert "pruning the encoder: keeping layers [1, 3] of 6" in interactive.stderr
    assert re.search(r"^H-0\t", interactive.stdout, re.M)


def test_train_continues_a_pruned_fairseq_transformer_despite_its_own_layers_to_keep_flag(
    translation_data, fairseq_mt_checkpoint, tmp_path
):
    # fairseq's `transformer` defines --encoder-layers-to-keep too: in fairseq-train both meet in one parser
    proc = fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", tmp_path, "--user-dir", PLUGIN,
                   "--task", "translation_layerdrop", "--arch", "transformer", "--encoder-embed-dim", "64",
                   "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
                   "--finetune-from-model", fairseq_mt_checkpoint, "--encoder-layers-to-keep", "0,5",
                   "--decoder-layers-to-keep", "2", "--max-epoch", "1")
    log = proc.stdout + proc.stderr
    assert "pruning the encoder: keeping layers [0, 5] of 6" in log and json_logs(log, "train")
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    layers = {k.split(".")[0] + "." + k.split(".")[2] for k in state["model"] if ".layers." in k}
    assert layers == {"encoder.0", "encoder.1", "decoder.0"}
    assert (state["cfg"]["model"].encoder_layers, state["cfg"]["model"].decoder_layers) == (2, 1)


def test_depth_sweep_writes_table_and_plot_for_a_language_model(lm_data, lm_checkpoint, tmp_path):
    proc = fairseq("fairseq-layerdrop", "sweep", lm_checkpoint, lm_data, "--out", "sweep", "--depths", "1,3,6",
                   "--strategies", "every-other,top", "--fairseq-args", "--tokens-per-sample 64", cwd=tmp_path)
    assert "[6/6" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep.csv")))
    assert [(r["depth"], r["strategy"]) for r in rows] == [
        ("1", "every-other"), ("1", "top"), ("3", "every-other"), ("3", "top"), ("6", "every-other"), ("6", "top")]
    assert rows[2]["kept"] == "decoder:0,2,4" and rows[3]["kept"] == "decoder:0,1,2"
    full_ppl = perplexity(lm_data, lm_checkpoint, "--user-dir", PLUGIN, "--gen-subset", "valid")[0]
    assert float(rows[4]["quality"]) == pytest.approx(full_ppl, abs=0.01)
    assert int(rows[0]["parameters"]) < int(rows[2]["parameters"]) < int(rows[4]["parameters"])
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 5000 and (tmp_path / "sweep" / "sweep.md").exists()


def test_depth_sweep_scores_a_translation_model_with_sacrebleu(translation_data, mt_checkpoint, tmp_path):
    fairseq("fairseq-layerdrop", "sweep", mt_checkpoint, translation_data, "--out", "sweep", "--depths", "2,6",
            "--strategies", "every-other", "--stack", "decoder", "--subset", "test",
            "--fairseq-args", "--beam 2 --max-len-b 5", cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep.csv")))
    assert [r["kept"] for r in rows] == ["decoder:0,3", "decoder:0,1,2,3,4,5"]
    assert all(0 <= float(r["quality"]) <= 100 for r in rows)
    assert (tmp_path / "sweep" / "sweep.png").exists()
