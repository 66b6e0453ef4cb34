"""LR-Drop through fairseq-train (criterions/lr_drop_loss.py): the issue's "Must hold" lines.

Output term only at LayerDrop 0 is fairseq's R-Drop criterion; with no dropout and no LayerDrop the
two passes are one and every term is exactly 0; bad weights and unsupported models stop training at
start naming the flag; two workers draw the same layers for both passes; a resumed run repeats an
uninterrupted one. The gradient and validation checks build the model as fairseq-train does.
"""

import json
import os
import socket

import pytest
import torch
from fairseq_layerdrop.cli.in_process import build_model
from tests.helpers import BIN, PLUGIN, TRAIN_COMMON, fairseq, json_logs, run_workers

LM = ["--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "32", "--max-tokens", "256",
      "--disable-validation", "--no-save"]
TINY = ["--arch", "transformer_lm_layerdrop_tiny", "--decoder-layers", "3"]
FAIRSEQ_TINY = ["--arch", "transformer_lm", "--decoder-layers", "3", "--decoder-embed-dim", "64",
                "--decoder-input-dim", "64", "--decoder-output-dim", "64", "--decoder-ffn-embed-dim", "128",
                "--decoder-attention-heads", "4"]
ALL_TERMS = ["--lr-drop-output-weight", "1", "--lr-drop-hidden-weight", "1", "--lr-drop-attention-weight", "1"]


def train(data, *args, check=True):
    proc = fairseq("fairseq-train", data, *TRAIN_COMMON, *LM, *args, check=check)
    return proc.stdout + proc.stderr if check else proc


@pytest.mark.parametrize("arch", [TINY + ["--decoder-layerdrop", "0"], FAIRSEQ_TINY], ids=["plugin", "fairseq"])
def test_output_term_at_layerdrop_0_is_fairseqs_rdrop(lm_data, arch):
    common = [*arch, "--dropout", "0.2", "--label-smoothing", "0.1", "--max-update", "4"]
    ours = json_logs(train(lm_data, *common, "--criterion", "lr_drop_label_smoothed_cross_entropy",
                           "--lr-drop-output-weight", "0.7"), "train_inner")
    theirs = json_logs(train(lm_data, *common, "--criterion", "label_smoothed_cross_entropy_with_rdrop",
                             "--rdrop-alpha", "0.7"), "train_inner")
    assert [r["num_updates"] for r in ours] == [1, 2, 3, 4] == [r["num_updates"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert (a["loss"], a["nll_loss"], a["gnorm"]) == (b["loss"], b["nll_loss"], b["gnorm"])
        assert a["lrd_output"] == pytest.approx(b["rdrop_kl_loss"], rel=1e-4) and a["lrd_output"] > 0


@pytest.mark.parametrize("arch", ["transformer", "transformer_layerdrop_tiny"])
def test_translation_output_term_at_layerdrop_0_is_fairseqs_rdrop(translation_data, tmp_path, arch):
    common = [*TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "translation", "--arch", arch, "--encoder-layers", "2",
              "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
              "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
              "--decoder-attention-heads", "2", "--dropout", "0.2", "--label-smoothing", "0.1", "--max-update", "3",
              "--disable-validation", "--no-epoch-checkpoints"]
    if arch != "transformer":
        common += ["--encoder-layerdrop", "0", "--decoder-layerdrop", "0"]
    ours = json_logs(fairseq("fairseq-train", translation_data, *common, "--criterion",
                             "lr_drop_label_smoothed_cross_entropy", "--lr-drop-output-weight", "0.7",
                             "--save-dir", tmp_path / "ours").stdout, "train_inner")
    theirs = json_logs(fairseq("fairseq-train", translation_data, *common, "--criterion",
                               "label_smoothed_cross_entropy_with_rdrop", "--rdrop-alpha", "0.7",
                               "--save-dir", tmp_path / "theirs").stdout, "train_inner")
    assert [r["num_updates"] for r in ours] == [1, 2, 3] == [r["num_updates"] for r in theirs]
    for a, b in zip(ours, theirs):  # the same losses and gradient norms at every update: the same gradients
        assert (a["loss"], a["nll_loss"], a["gnorm"]) == (b["loss"], b["nll_loss"], b["gnorm"])
        assert a["lrd_output"] == pytest.approx(b["rdrop_kl_loss"], rel=1e-4) and a["lrd_output"] > 0
    assert float(ours[-1]["loss"]) < float(ours[0]["loss"])  # it trains
    # the criterion holds no parameters (it once kept the model as a submodule: the optimizer then got every
    # parameter twice, which divided the gradients by the batch size twice, and checkpoints stored it again)
    assert torch.load(tmp_path / "ours" / "checkpoint_last.pt", map_location="cpu", weights_only=True)["criterion"] is None


def test_without_dropout_or_layerdrop_every_term_is_exactly_0(lm_data):
    logs = json_logs(train(lm_data, *TINY, "--decoder-layerdrop", "0", "--dropout", "0", "--max-update", "3",
                           "--criterion", "lr_drop_cross_entropy", *ALL_TERMS), "train_inner")
    assert len(logs) == 3
    assert all(r[key] == 0.0 for r in logs for key in ("lrd_output", "lrd_hidden", "lrd_attention"))


def test_encoder_decoder_terms_are_0_without_dropout_and_positive_with_it(translation_data):
    args = ["--user-dir", PLUGIN, "--task", "translation", "--arch", "transformer_layerdrop_tiny",
            "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-layerdrop", "0", "--decoder-layerdrop", "0",
            "--criterion", "lr_drop_label_smoothed_cross_entropy", "--label-smoothing", "0.1", *ALL_TERMS,
            "--max-update", "2", "--disable-validation", "--no-save"]
    keys = ("lrd_output", "lrd_hidden", "lrd_attention")
    still = json_logs(fairseq("fairseq-train", translation_data, *TRAIN_COMMON, *args, "--dropout", "0").stdout,
                      "train_inner")
    assert len(still) == 2 and all(r[k] == 0.0 for r in still for k in keys)
    noisy = json_logs(fairseq("fairseq-train", translation_data, *TRAIN_COMMON, *args, "--dropout", "0.3",
                              "--attention-dropout", "0.3").stdout, "train_inner")
    assert all(r[k] > 0 for r in noisy for k in keys)


@pytest.mark.parametrize("flag, value", [("--lr-drop-output-weight", "-1"), ("--lr-drop-hidden-weight", "nan"),
                                         ("--lr-drop-attention-weight", "abc"), ("--lr-drop-output-weight", "1e30")])
def test_a_bad_weight_stops_training_at_start_naming_the_flag(lm_data, flag, value):
    # 1e30 is finite: it once crashed with FloatingPointError (gradients overflow) after the data was read
    proc = train(lm_data, *TINY, "--criterion", "lr_drop_cross_entropy", flag, value, "--max-update", "2",
                 check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and flag in proc.stderr.strip().splitlines()[-1]
    assert "train_inner" not in output and "bin/train" not in output  # before the training data is read
    if value == "1e30":
        assert "must be at most 1e+06, got 1e+30" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (FAIRSEQ_TINY + ["--lr-drop-hidden-weight", "1"], "--lr-drop-hidden-weight compare the two passes layer by layer"),
    (TINY + ["--decoder-layerdrop", "0.5", "--layer-gates"], "--layer-gates"),
], ids=["fairseq-arch-layer-term", "gates"])
def test_what_lr_drop_cannot_do_is_refused_at_start(lm_data, tmp_path, args, message):
    proc = train(lm_data, *args, "--criterion", "lr_drop_cross_entropy", "--max-update", "2",
                 "--save-dir", tmp_path / "save", check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert "num_updates" not in proc.stdout + proc.stderr
    assert not (tmp_path / "save").exists() or not os.listdir(tmp_path / "save")  # no crash.pt: before any step


def lm_model(lm_data, *args):
    model, task = build_model(lm_data, "--task", "language_modeling", "--tokens-per-sample", "32",
                              "--max-tokens", "256", *TINY, "--decoder-layers", "4", *args)
    task.load_dataset("train")
    batches = task.get_batch_iterator(task.dataset("train"), max_tokens=256).next_epoch_itr(shuffle=False)
    return model, task, next(iter(batches))


def criterion(task, output=0.0, hidden=0.0, attention=0.0):
    from fairseq_layerdrop.criterions.lr_drop_loss import LRDropCrossEntropyCriterion
    return LRDropCrossEntropyCriterion(task, False, output, hidden, attention)


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_every_term_sends_gradients_into_the_layers_that_ran(lm_data):
    model, task, sample = lm_model(lm_data, "--decoder-layerdrop", "0.5", "--dropout", "0.1")
    model.train()
    stacks = [model.decoder.layers]
    # a step whose two passes ran different layers, with some layers in both
    for update in range(50):
        model.decoder.layers.set_num_updates(update)
        ran = [set(i for i, p in enumerate(stacks[0].step_plans(k)) if not p.skipped) for k in (0, 1)]
        if ran[0] != ran[1] and ran[0] & ran[1] and len(ran[0] | ran[1]) < 4:
            break
    either, both = ran[0] | ran[1], ran[0] & ran[1]

    def term_grads(**weights):
        stacks[0].micro_batch = 0
        torch.manual_seed(0)  # the same dropout masks for the run with and without the term
        with_term = grads(model, criterion(task, **weights)(model, sample)[0])
        stacks[0].micro_batch = 0
        torch.manual_seed(0)
        without = grads(model, criterion(task)(model, sample)[0])
        return {n: with_term[n] - without[n] for n in with_term}

    # the attention blocks compared are those of the layers in both passes; the layers below them feed them
    below_attention = {i for i in either if i <= max(both)}
    for term, layers in (("output", either), ("hidden", either), ("attention", below_attention)):
        diff = term_grads(**{term: 1.0})
        for i in range(4):
            moved = any(d.abs().sum() > 0 for n, d in diff.items() if n.startswith(f"decoder.layers.{i}."))
            assert moved == (i in layers), (term, i, ran)
        if term == "attention":  # into the query and key projections of every compared block
            assert all(diff[f"decoder.layers.{i}.self_attn.{w}.weight"].abs().sum() > 0
                       for i in both for w in ("q_proj", "k_proj"))


def test_validation_is_one_plain_pass_through_every_layer(lm_data):
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion
    model, task, sample = lm_model(lm_data, "--decoder-layerdrop", "0.5")
    model.eval()
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        ours = criterion(task, 1, 1, 1)(model, sample)
        plain = CrossEntropyCriterion(task, False)(model, sample)
    assert len(calls) == 2 and torch.equal(ours[0], plain[0]) and ours[1] == plain[1]
    assert not any(k.startswith("lrd_") for k in ours[2])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_draw_the_same_layers_for_both_passes(lm_data, tmp_path):
    port = free_port()
    common = [os.path.join(BIN, "fairseq-train"), str(lm_data), *TRAIN_COMMON, *LM, *TINY, "--decoder-layers", "4",
              "--decoder-layerdrop", "0.5", "--criterion", "lr_drop_cross_entropy", *ALL_TERMS,
              "--max-update", "3", "--update-freq", "2", "--distributed-no-spawn", "--distributed-world-size", "2",
              "--distributed-backend", "gloo", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
              "--ddp-backend", "legacy_ddp", "--layerdrop-draws-log", str(tmp_path / "draws")]
    outputs = run_workers(common)
    assert [r["num_updates"] for r in json_logs(outputs[0], "train_inner")] == [1, 2, 3]
    draws = []
    for rank in range(2):
        with open(tmp_path / f"draws.rank{rank}") as f:
            draws.append([json.loads(line) for line in f])
    assert draws[0] == draws[1]
    keys = [(d["update"], d["micro_batch"], d["pass"]) for d in draws[0]]
    two_passes = [(u, m, k) for u in range(3) for m in range(2) for k in (0, 1)]
    assert keys == two_passes or set(keys) <= set(two_passes) | {(u, m, "both") for u in range(3) for m in range(2)}
    passes = {(d["update"], d["micro_batch"]): {} for d in draws[0]}
    for d in draws[0]:
        passes[(d["update"], d["micro_batch"])][d["pass"]] = d["plans"]
    assert any(p.get(0) != p.get(1) for p in passes.values() if 0 in p)


def test_a_resumed_run_repeats_an_uninterrupted_one(lm_data, tmp_path):
    args = [*TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "64",
            *TINY, "--decoder-layerdrop", "0.5", "--dropout", "0.1", "--update-epoch-batch-itr", "True",
            "--criterion", "lr_drop_cross_entropy", *ALL_TERMS, "--disable-validation"]

    def run(save_dir, *extra):
        log = fairseq("fairseq-train", lm_data, *args, "--save-dir", save_dir,
                      "--layerdrop-draws-log", save_dir / "draws", *extra).stdout
        return {int(r["num_updates"]): r["loss"] for r in json_logs(log, "train_inner")}, log

    straight, _ = run(tmp_path / "straight", "--max-update", "12")
    first, _ = run(tmp_path / "resumed", "--max-update", "7", "--save-interval-updates", "7")
    second, log = run(tmp_path / "resumed", "--max-update", "12")
    assert "Loaded checkpoint" in log and max(first) == 7 and min(second) == 8
    assert {**first, **second} == straight
    with open(tmp_path / "straight" / "draws.rank0") as a, open(tmp_path / "resumed" / "draws.rank0") as b:
        assert a.read() == b.read()
    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
