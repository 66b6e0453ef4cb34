"""A gated checkpoint (--layer-gates) trained by fairseq-train: its logged keep probabilities keep the budget,
and it loads, prunes and exports by its gates (on load, `fairseq-layerdrop prune`, `fairseq-layerdrop sweep`),
with `fairseq-layerdrop gates` showing them."""

import re

import pytest
import torch

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER
from fairseq_layerdrop.pruning import kept_layers
from fairseq_layerdrop.pruning.learned import learned_keep_probabilities
from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq, json_logs, load_models


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

    shown = fairseq("fairseq-layerdrop", "gates", checkpoint, cwd=checkpoint.parent).stdout
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
    fairseq("fairseq-layerdrop-prune", checkpoint, exported, "--prune-to", "3", "--prune-strategy", "learned")
    small = torch.load(exported, map_location="cpu", weights_only=True)["model"]
    gates = sorted(k for k in small if k.endswith(GATE_PARAMETER))
    assert gates == [f"decoder.layers.{i}.{GATE_PARAMETER}" for i in range(3)]  # renumbered with their layers
    assert [small[g].item() for g in gates] == [state["model"][f"decoder.layers.{i}.{GATE_PARAMETER}"].item()
                                                for i in expected]
    model, _ = load_models(lm_data, exported, "--task", "language_modeling", parser="eval_lm")  # a gated 3-layer model
    assert [getattr(model.decoder.layers[i], GATE_PARAMETER).item() for i in range(3)] == [small[g].item() for g in gates]

    sweep = fairseq("fairseq-layerdrop", "sweep", checkpoint, lm_data, "--out", "sweep", "--depths", "3",
                    "--strategies", "learned", "--subset", "test", "--fairseq-args", "--tokens-per-sample 64",
                    cwd=tmp_path)
    assert (tmp_path / "sweep" / "sweep.csv").is_file()
    assert f"| 3 | learned | decoder:{','.join(map(str, expected))} |" in sweep.stdout
    assert f"| {ppl_on_load:.2f} |" in sweep.stdout
