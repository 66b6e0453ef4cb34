"""In-place depth distillation through fairseq-train (criterions/depth_distillation_loss.py): the issue's
"Must hold" lines.

A menu of the full depth only, without dropout, makes the sub-network pass the full pass again: the KL is
exactly 0 and the objective twice fairseq's own cross-entropy (its gradient norm too); the layers each pass
ran (draws log) are exactly the menu's pruned layers, by the strategies' formulas written here; a detached
teacher sends no gradient into the full pass's graph (a layer only the full pass runs ends the update as
without the KL), an attached one does; two workers agree on every pass and a resumed run repeats an
uninterrupted one; bad input is refused at start naming the flag.
"""

import json
import os

import pytest
import torch
from tests.helpers import BIN, PLUGIN, TRAIN_COMMON, fairseq, json_logs, run_workers
from tests.integration.test_lr_drop import free_port

LM = ["--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "32", "--max-tokens", "256",
      "--disable-validation"]
TINY = ["--arch", "transformer_lm_layerdrop_tiny"]
DISTILL = ["--criterion", "depth_distillation_cross_entropy"]


def train(data, *args, check=True):
    proc = fairseq("fairseq-train", data, *TRAIN_COMMON, *LM, *args, check=check)
    return proc.stdout + proc.stderr if check else proc


def draws(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def ran(plans):
    return [i for i, p in enumerate(plans) if p != "-"]


def test_a_menu_of_the_full_depth_is_the_full_pass_twice(lm_data):
    common = [*TINY, "--decoder-layers", "3", "--decoder-layerdrop", "0", "--dropout", "0", "--max-update", "3",
              "--no-save"]
    ours = json_logs(train(lm_data, *common, *DISTILL, "--depth-menu", "3"), "train_inner")
    plain = json_logs(train(lm_data, *common, "--criterion", "cross_entropy"), "train_inner")
    assert [r["num_updates"] for r in ours] == [1, 2, 3]
    assert all(r["dd_kl"] == 0.0 for r in ours)  # exactly: the two passes computed the same distribution
    assert all(r["dd_objective"] == pytest.approx(2 * r["loss"], abs=2e-3) for r in ours)
    assert all(r["dd_sub"] == r["loss"] for r in ours)
    # the first update starts from the same weights on the same batch: fairseq's own loss, and twice its gradient
    assert ours[0]["loss"] == plain[0]["loss"]
    assert ours[0]["gnorm"] == pytest.approx(2 * plain[0]["gnorm"], rel=2e-3)


def every_other(n, r):
    return [i * n // r for i in range(r)]


def test_each_pass_runs_the_full_model_or_the_menus_every_other_layers_and_a_resume_repeats_them(lm_data, tmp_path):
    args = [*TINY, "--decoder-layerdrop", "0.5", "--update-epoch-batch-itr", "True", *DISTILL,
            "--depth-menu", "2,3,5"]

    def run(save_dir, *extra):
        log = train(lm_data, *args, "--save-dir", save_dir, "--layerdrop-draws-log", save_dir / "draws", *extra)
        return {int(r["num_updates"]): (r["loss"], r["dd_objective"], r["dd_sub_layers"])
                for r in json_logs(log, "train_inner")}, log

    straight, _ = run(tmp_path / "straight", "--max-update", "8")
    records = draws(tmp_path / "straight" / "draws.rank0")
    assert [(d["update"], d["pass"]) for d in records] == [(u, k) for u in range(8) for k in (0, 1)]
    depths = []
    for full, sub in zip(records[::2], records[1::2]):
        assert ran(full["plans"]) == list(range(6))  # pass 0: every layer, LayerDrop 0.5 notwithstanding
        kept = ran(sub["plans"])
        assert len(kept) in (2, 3, 5) and kept == every_other(6, len(kept))
        depths.append(len(kept))
        assert straight[sub["update"] + 1][2] == len(kept)  # dd_sub_layers: a sub-network pass runs only its layers
    assert len(set(depths)) > 1  # the draw varies
    first, _ = run(tmp_path / "resumed", "--max-update", "5", "--save-interval-updates", "5")
    second, log = run(tmp_path / "resumed", "--max-update", "8")
    assert "Loaded checkpoint" in log and max(first) == 5 and min(second) == 6
    assert {**first, **second} == straight
    assert draws(tmp_path / "resumed" / "draws.rank0") == records
    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_translation_menu_pairs_name_both_stacks_depths(translation_data, tmp_path):
    log = fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "translation",
                  "--arch", "transformer_layerdrop_tiny", "--encoder-layers", "3", "--decoder-layers", "2",
                  "--criterion", "depth_distillation_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                  "--depth-menu", "1:2,3:1", "--menu-strategy", "top", "--depth-distill-passes", "2",
                  "--max-update", "3", "--disable-validation", "--no-save",
                  "--layerdrop-draws-log", tmp_path / "draws").stdout
    assert [r["num_updates"] for r in json_logs(log, "train_inner")] == [1, 2, 3]
    passes = {}
    for d in draws(tmp_path / "draws.rank0"):
        passes.setdefault((d["update"], d["pass"]), {})[d["stack"]] = ran(d["plans"])
    assert sorted(passes) == [(u, k) for u in range(3) for k in (0, 1, 2)]
    for (update, k), kept in passes.items():
        if k == 0:
            assert kept == {"encoder": [0, 1, 2], "decoder": [0, 1]}
        else:  # top keeps the first R layers: one entry of the menu for both stacks
            assert kept in ({"encoder": [0], "decoder": [0, 1]}, {"encoder": [0, 1, 2], "decoder": [0]})


def final_weights(data, save_dir, *args):
    train(data, *TINY, "--decoder-layers", "4", "--decoder-layerdrop", "0", *DISTILL, "--depth-menu", "2",
          "--max-update", "1", "--save-dir", save_dir, *args)
    return torch.load(save_dir / "checkpoint_last.pt", weights_only=False)["model"]


def test_a_detached_teacher_gets_no_gradient_from_the_kl(lm_data, tmp_path):
    # menu 2 of 4 layers, every-other: the sub-network runs layers 0 and 2; layers 1 and 3 only in the full pass
    without = final_weights(lm_data, tmp_path / "a", "--depth-distill-kl-weight", "0")
    only_full = [k for k in without if k.startswith(("decoder.layers.1.", "decoder.layers.3."))]
    detached = final_weights(lm_data, tmp_path / "b", "--depth-distill-kl-weight", "1")
    attached = final_weights(lm_data, tmp_path / "c", "--depth-distill-kl-weight", "1",
                             "--depth-distill-teacher", "attached")
    assert only_full and all(torch.equal(without[k], detached[k]) for k in only_full)
    assert any(not torch.equal(without[k], attached[k]) for k in only_full)
    # the KL does train the layers the sub-network ran
    assert any(not torch.equal(without[k], detached[k]) for k in without if k.startswith("decoder.layers.0."))


def test_two_workers_agree_on_every_pass(lm_data, tmp_path):
    port = free_port()
    common = [os.path.join(BIN, "fairseq-train"), str(lm_data), *TRAIN_COMMON, *LM, "--no-save", *TINY,
              *DISTILL, "--depth-menu", "1,2,4", "--depth-distill-passes", "2", "--menu-sampling", "sandwich",
              "--max-update", "3", "--update-freq", "2", "--distributed-no-spawn", "--distributed-world-size", "2",
              "--distributed-backend", "gloo", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
              "--ddp-backend", "legacy_ddp", "--layerdrop-draws-log", str(tmp_path / "draws")]
    outputs = run_workers(common)
    assert [r["num_updates"] for r in json_logs(outputs[0], "train_inner")] == [1, 2, 3]
    logs = [draws(tmp_path / f"draws.rank{r}") for r in range(2)]
    assert logs[0] == logs[1]
    assert [(d["update"], d["micro_batch"], d["pass"]) for d in logs[0]] == \
        [(u, m, k) for u in range(3) for m in range(2) for k in (0, 1, 2)]
    for d in logs[0]:  # sandwich: pass 1 is always the smallest entry (1 layer: layer 0)
        assert ran(d["plans"]) == {0: list(range(6)), 1: [0]}.get(d["pass"], ran(d["plans"]))
        assert d["pass"] != 2 or len(ran(d["plans"])) in (1, 2, 4)


def test_validation_is_one_plain_pass_through_every_layer(lm_data):
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion
    from fairseq_layerdrop.cli.in_process import build_model
    from fairseq_layerdrop.criterions.depth_distillation_loss import DepthDistillationCrossEntropyCriterion

    model, task = build_model(lm_data, "--task", "language_modeling", "--tokens-per-sample", "32", *TINY)
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(task.dataset("valid"), max_tokens=256).next_epoch_itr(shuffle=False)))
    model.eval()
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        ours = DepthDistillationCrossEntropyCriterion(task, False, depth_menu="1,2")(model, sample)
        plain = CrossEntropyCriterion(task, False)(model, sample)
    assert len(calls) == 2 and torch.equal(ours[0], plain[0]) and ours[1] == plain[1]
    assert not any(k.startswith("dd_") for k in ours[2])


@pytest.mark.parametrize("args, message", [
    (["--depth-menu", "2,7"], "--depth-menu 2,7: the decoder has 6 layers, so each of its depths must be in 1..6; got 7"),
    (["--depth-menu", "0,2"], "--depth-menu 0,2: the decoder has 6 layers, so each of its depths must be in 1..6; got 0"),
    (["--depth-menu", " "], "--depth-menu is empty"),
    (["--depth-menu", "2,,4"], "--depth-menu needs a comma-separated list of depths"),
    (["--depth-menu", "2", "--menu-strategy", "search"], "--menu-strategy must be one of every-other, top, bottom, symmetric"),
    (["--depth-distill-kl-weight", "-1"], "--depth-distill-kl-weight must be a finite number >= 0"),
    (["--depth-distill-label-weight", "nan"], "--depth-distill-label-weight must be a finite number >= 0"),
    (["--depth-distill-teacher", "frozen"], "--depth-distill-teacher must be one of detached, attached"),
    (["--depth-distill-passes", "0"], "--depth-distill-passes must be a whole number in 1..8"),
    (["--menu-sampling", "sandwich"], "--menu-sampling sandwich takes the smallest entry of --depth-menu"),
    (["--depth-distill-kl-weight", "1e30"], "--depth-distill-kl-weight"),
    (["--layer-gates", "--decoder-layerdrop", "0.5"], "--layer-gates"),
    (["--arch", "transformer_lm", "--decoder-layers", "2"], "the depth distillation criteria choose the layers of each pass"),
], ids=["above", "zero", "empty", "blank-entry", "strategy", "kl-weight", "label-weight", "teacher", "passes",
        "sandwich", "huge-weight", "gates", "fairseq-arch"])
def test_bad_input_is_refused_when_fairseq_train_builds_the_criterion(lm_data, args, message):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parsed = options.parse_args_and_arch(options.get_training_parser(), [
        str(lm_data), "--user-dir", PLUGIN, "--cpu", "--task", "language_modeling", *TINY, *DISTILL, *args])
    cfg = convert_namespace_to_omegaconf(parsed)
    task = tasks.setup_task(cfg.task)
    with pytest.raises(ValueError) as error:  # --layer-gates: already when the model is built
        task.build_model(cfg.model)
        task.build_criterion(cfg.criterion)
    assert message in str(error.value)


def test_a_refusal_comes_before_any_training_step_through_the_command(lm_data, tmp_path):
    proc = train(lm_data, *TINY, *DISTILL, "--depth-menu", "3,9", "--max-update", "2", "--save-dir", tmp_path / "s",
                 check=False)
    assert proc.returncode != 0
    assert "--depth-menu 3,9: the decoder has 6 layers" in proc.stderr
    assert "num_updates" not in proc.stdout + proc.stderr
    assert not (tmp_path / "s").exists() or not os.listdir(tmp_path / "s")
