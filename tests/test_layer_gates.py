"""Learned layer gates (--layer-gates) and the gated criteria: budget, draws, gradients, logging,
and a gated checkpoint trained by fairseq-train that loads, prunes and exports by its gates."""

import os
import re
import subprocess
import sys

import pytest
import torch
from tests.helpers import BIN, PLUGIN, ROOT, TRAIN_COMMON, build_model, fairseq, json_logs

from fairseq_in_process import load_models

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from fairseq_layerdrop.modules.layer_drop import layer_uniforms
from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER, MAX_RATE, GatedLayerDropList, gated_drop_rates
from fairseq_layerdrop.pruning import kept_layers
from fairseq_layerdrop.pruning.learned import learned_keep_probabilities


def gated_lm(lm_data, p=0.5, layers=6, *extra):
    return build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                       "--decoder-layerdrop", p, "--decoder-layers", layers, "--tokens-per-sample", 32,
                       "--layer-gates", "--criterion", "gated_cross_entropy", *extra)


def set_logits(stack, values):
    with torch.no_grad():
        for layer, value in zip([stack[i] for i in range(len(stack))], values):
            getattr(layer, GATE_PARAMETER).fill_(value)


@pytest.mark.parametrize("num_layers,p", [(2, 0.5), (6, 0.2), (8, 0.5), (12, 0.9)])
def test_rates_average_to_p_exactly_stay_under_the_cap_and_follow_the_logits(num_layers, p):
    generator = torch.Generator().manual_seed(num_layers)
    for scale in (0.0, 1.0, 10.0):  # uniform, moderate, and logits that push several rates over the cap
        logits = scale * torch.randn(num_layers, generator=generator)
        rates = gated_drop_rates(logits, p)
        assert abs(rates.mean().item() - p) < 1e-6, (scale, rates)
        assert rates.min() >= 0 and rates.max() <= MAX_RATE + 1e-6
        order = logits.argsort()
        assert all(rates[order[i]] <= rates[order[i + 1]] + 1e-6 for i in range(num_layers - 1))
    assert torch.allclose(gated_drop_rates(torch.zeros(num_layers), p), torch.full((num_layers,), p))
    assert gated_drop_rates(torch.tensor([10.0, 0.0, 0.0, 0.0]), 0.5).tolist() == pytest.approx(
        [MAX_RATE, (2 - MAX_RATE) / 3, (2 - MAX_RATE) / 3, (2 - MAX_RATE) / 3])


def test_training_draws_follow_the_learned_rates_and_eval_runs_the_plain_model(lm_data):
    model, _ = gated_lm(lm_data, 0.5, 4)
    layers = model.decoder.layers
    assert isinstance(layers, GatedLayerDropList)
    set_logits(layers, [-1.0, 0.0, 0.5, 2.0])
    rates = layers.drop_rates().detach()
    calls = [0] * 4
    for i in range(4):
        layers[i].register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    tokens = torch.randint(4, 20, (2, 8))
    model.train()
    updates = 60
    with torch.no_grad():
        for update in range(updates):
            model.set_num_updates(update)
            model(tokens)
    expected = [sum(float(layer_uniforms(4, layers.seed, u, 0, "decoder")[i] < rates[i]) for u in range(updates))
                for i in range(4)]
    assert [updates - c for c in calls] == expected  # exactly the seeded draws compared with the learned rates
    assert expected[0] < expected[3], "the low-logit layer drops less often than the high-logit one"

    # eval: every layer runs, unscaled: the output is the ungated model's with the same weights
    plain, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                           "--decoder-layerdrop", 0.5, "--decoder-layers", 4, "--tokens-per-sample", 32)
    weights = {k: v for k, v in model.state_dict().items() if not k.endswith(GATE_PARAMETER)}
    plain.load_state_dict(weights)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], plain(tokens)[0])


def criterion_step(model, criterion, sample, update):
    model.train()
    model.set_num_updates(update)
    model.zero_grad()
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    return log


@pytest.mark.parametrize("kind", ["lm", "translation"])
def test_gradients_reach_every_gate_only_through_the_estimator(kind, lm_data, translation_data):
    if kind == "lm":
        model, task = gated_lm(lm_data, 0.5, 6, "--criterion", "gated_cross_entropy")
        criterion_name, stacks = "gated_cross_entropy", [model.decoder.layers]
    else:
        model, task = build_model(translation_data, "--arch", "transformer_layerdrop_tiny", "--layer-gates",
                                  "--encoder-layerdrop", 0.3, "--decoder-layerdrop", 0.5,
                                  "--criterion", "gated_label_smoothed_cross_entropy", "--label-smoothing", 0.1)
        criterion_name, stacks = "gated_label_smoothed_cross_entropy", [model.encoder.layers, model.decoder.layers]
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parsed = options.parse_args_and_arch(options.get_training_parser(), [
        str(translation_data if kind != "lm" else lm_data), "--user-dir", PLUGIN, "--cpu", "--criterion",
        criterion_name, *(["--label-smoothing", "0.1", "--arch", "transformer_layerdrop_tiny"] if kind != "lm" else
                          ["--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny"])])
    criterion = task.build_criterion(convert_namespace_to_omegaconf(parsed).criterion)
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(task.dataset("valid"), max_tokens=400).next_epoch_itr(shuffle=False)))
    gates = [getattr(stack[i], GATE_PARAMETER) for stack in stacks for i in range(len(stack))]

    criterion_step(model, criterion, sample, 0)  # sets the baseline: zero advantage
    grads = []
    for update in range(1, 4):
        log = criterion_step(model, criterion, sample, update)
        grads.append(torch.stack([g.grad for g in gates]))
    assert all(torch.isfinite(g).all() for g in grads)
    assert (torch.stack(grads).abs().sum(0) > 0).all(), "every gate is in log P(mask), so each gets a gradient"
    for stack in stacks:
        keep = stack.keep_probabilities().tolist()
        assert [log[f"{stack.stack[:3]}_keep_{i}"] for i in range(len(stack))] == pytest.approx(keep)
        assert sum(keep) / len(keep) == pytest.approx(1 - stack.p)

    criterion.gate_weight = 0.0  # without the estimator nothing reaches the gates: no pathwise leak
    criterion_step(model, criterion, sample, 5)
    assert all(g.grad is None or not g.grad.any() for g in gates)


def test_gates_need_a_rate_and_the_gated_criterion_needs_gates(lm_data):
    with pytest.raises(ValueError, match="--layer-gates .* --decoder-layerdrop above 0"):
        gated_lm(lm_data, 0.0)
    with pytest.raises(ValueError, match="--layer-gates learns whole-layer rates: use --layerdrop-structure layer"):
        gated_lm(lm_data, 0.5, 6, "--layerdrop-structure", "sublayer")
    with pytest.raises(ValueError, match="--layer-gates .* drop the rate schedule"):
        gated_lm(lm_data, 0.5, 6, "--decoder-layerdrop-protect", "0")
    model, task = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                              "--tokens-per-sample", 32)
    from fairseq_layerdrop.criterions.layer_gate_loss import GatedCrossEntropyCriterion

    criterion = GatedCrossEntropyCriterion(task, sentence_avg=False)
    with pytest.raises(ValueError, match=r"--gate-weight must be 0 or more"):
        GatedCrossEntropyCriterion(task, sentence_avg=False, gate_weight=-1.0)
    with pytest.raises(ValueError, match=r"--gate-baseline-decay must be in \[0, 1\)"):
        GatedCrossEntropyCriterion(task, sentence_avg=False, gate_baseline_decay=1.0)
    with pytest.raises(ValueError, match="build the model with --layer-gates"):
        criterion(model, {"net_input": {"src_tokens": torch.randint(4, 20, (2, 8))},
                          "target": torch.randint(4, 20, (2, 8)), "ntokens": 16})


@pytest.fixture(scope="module")
def gated_run(lm_data, tmp_path_factory):
    """A gated 6-layer LM trained by fairseq-train with --decoder-layerdrop 0.5 and gated_cross_entropy."""
    save_dir = tmp_path_factory.mktemp("gated_lm")
    proc = fairseq("fairseq-train", lm_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
                   "--task", "language_modeling", "--tokens-per-sample", "64", "--arch", "transformer_lm_layerdrop_tiny",
                   "--decoder-layerdrop", "0.5", "--layer-gates", "--criterion", "gated_cross_entropy",
                   "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt", proc.stdout + proc.stderr


def test_training_logs_keep_probabilities_that_keep_the_budget(gated_run):
    checkpoint, output = gated_run
    records = json_logs(output, "train_inner")
    assert len(records) > 10
    for record in records:
        keep = [record[f"dec_keep_{i}"] for i in range(6)]
        assert abs(sum(keep) / 6 - 0.5) <= 0.001, keep  # logged with 3 decimals
    first = [records[0][f"dec_keep_{i}"] for i in range(6)]
    last = [records[-1][f"dec_keep_{i}"] for i in range(6)]
    assert first != last and max(last) - min(last) > 0.002, "the gates should have moved"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    keep = learned_keep_probabilities(state["model"], state["cfg"]["model"], "decoder", 6)
    assert keep.mean().item() == pytest.approx(0.5, abs=1e-6)
    assert keep.tolist() == pytest.approx(last, abs=2e-3)

    shown = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "show_gates.py"), str(checkpoint)],
                           capture_output=True, text=True, check=True).stdout
    rows = re.findall(r"^\| (\d) \| ([-+0-9.]+) \| ([0-9.]+) \| (\d) \|$", shown, re.M)
    assert [float(r[2]) for r in rows] == pytest.approx(keep.tolist(), abs=1e-3)


def test_gated_checkpoint_prunes_by_its_gates_on_load_in_export_and_in_the_sweep(gated_run, lm_data, tmp_path):
    checkpoint, _ = gated_run
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    keep = learned_keep_probabilities(state["model"], state["cfg"]["model"], "decoder", 6).tolist()
    expected = sorted(sorted(range(6), key=lambda i: -keep[i])[:3])
    assert kept_layers("learned", 6, 3, state_dict=state["model"]) == expected

    eval_lm = ["--cpu", "--tokens-per-sample", "64", "--task", "language_modeling_layerdrop", "--user-dir", PLUGIN]
    on_load = fairseq("fairseq-eval-lm", lm_data, "--path", checkpoint, *eval_lm, "--prune-to", "3",
                      "--prune-strategy", "learned")
    log = on_load.stdout + on_load.stderr
    assert f"keeping layers {expected} of 6" in log
    ppl_on_load = float(re.search(r"Perplexity: ([0-9.]+)", log).group(1))

    exported = tmp_path / "learned3.pt"
    subprocess.run([os.path.join(BIN, "fairseq-layerdrop-prune"), checkpoint, exported, "--prune-to", "3",
                    "--prune-strategy", "learned"], capture_output=True, text=True, check=True)
    small = torch.load(exported, map_location="cpu", weights_only=True)["model"]
    gates = sorted(k for k in small if k.endswith(GATE_PARAMETER))
    assert gates == [f"decoder.layers.{i}.{GATE_PARAMETER}" for i in range(3)]  # renumbered with their layers
    assert [small[g].item() for g in gates] == [state["model"][f"decoder.layers.{i}.{GATE_PARAMETER}"].item()
                                                for i in expected]
    model, _ = load_models(lm_data, exported, "--task", "language_modeling", parser="eval_lm")  # a gated 3-layer model
    assert [getattr(model.decoder.layers[i], GATE_PARAMETER).item() for i in range(3)] == [small[g].item() for g in gates]

    sweep = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "depth_sweep.py"), checkpoint, lm_data,
                            "--out", tmp_path / "sweep", "--depths", "3", "--strategies", "learned", "--subset", "test",
                            "--fairseq-args", "--tokens-per-sample 64"], capture_output=True, text=True)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert f"| 3 | learned | decoder:{','.join(map(str, expected))} |" in sweep.stdout
    assert f"| {ppl_on_load:.2f} |" in sweep.stdout
