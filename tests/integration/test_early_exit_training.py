"""The early-exit criteria and the time schedules through fairseq-train and fairseq-validate.

One LM run (rotational curriculum, Progressive Layer Dropping, LayerDrop 0.3) gives the exits' losses, the
checkpoint validated with and without the early-exit criterion, and the reference for a resumed run.
"""

import json

import pytest
import torch

from tests.helpers import PLUGIN, TRAIN_COMMON, build_model, fairseq, json_logs

LM = [
    *TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "language_modeling", "--tokens-per-sample", "64",
    "--arch", "transformer_lm_layerdrop_tiny", "--decoder-layers", "4", "--decoder-layerdrop", "0.3",
    "--layerdrop-schedule", "progressive", "--layerdrop-pld-gamma", "0.1",
    "--criterion", "early_exit_cross_entropy", "--early-exit-curriculum", "rotational",
    "--update-epoch-batch-itr", "True",
]
EXITS = ("exit_1", "exit_2", "exit_3")


def train_lm(data, save_dir, *args):
    proc = fairseq("fairseq-train", data, *LM, "--save-dir", save_dir, "--layerdrop-draws-log", save_dir / "draws", *args)
    return proc.stdout + proc.stderr


def per_update(log):
    return {int(r["num_updates"]): {k: r.get(k) for k in ("loss", "exit_objective", "dec_rate_factor", *EXITS)}
            for r in json_logs(log, "train_inner")}


def weights(checkpoint):
    return torch.load(checkpoint, weights_only=False)["model"]


@pytest.fixture(scope="module")
def straight(lm_data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("early_exit_straight")
    log = train_lm(lm_data, save_dir, "--max-epoch", "2")
    return save_dir, log


def test_each_exit_is_logged_and_its_loss_decreases(straight):
    _, log = straight
    records = per_update(log)
    assert sorted(records) == list(range(1, 19))
    for key in EXITS:
        values = [r[key] for _, r in sorted(records.items()) if r[key] is not None]
        assert len(values) >= 4, key  # rotational R = 2: each exit is on about every other update
        assert sum(values[-3:]) / 3 < sum(values[:3]) / 3 - 0.5, (key, values)
    factors = [records[u]["dec_rate_factor"] for u in sorted(records)]
    assert factors[0] == 0 and factors == sorted(factors) and factors[-1] == pytest.approx(1 - 2.718281828 ** -1.7, abs=1e-3)
    valid = json_logs(log, "valid")
    assert len(valid) == 2 and all(all(r[f"valid_{k}"] is not None for k in EXITS) for r in valid)


def test_final_layer_valid_loss_is_plain_cross_entropys(straight, lm_data, tmp_path):
    save_dir, _ = straight
    plain = tmp_path / "plain_criterion.pt"
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=False)
    state["cfg"]["criterion"] = {"_name": "cross_entropy", "sentence_avg": False}
    torch.save(state, plain)

    def validate(checkpoint):
        proc = fairseq("fairseq-validate", lm_data, "--task", "language_modeling", "--user-dir", PLUGIN, "--path",
                       checkpoint, "--cpu", "--log-format", "json", "--no-progress-bar", "--max-tokens", "2000")
        (record,) = json_logs(proc.stdout + proc.stderr, "valid")
        return record

    early_exit, cross_entropy = validate(save_dir / "checkpoint_last.pt"), validate(plain)
    assert early_exit["valid_loss"] == cross_entropy["valid_loss"]
    assert early_exit["valid_ppl"] == cross_entropy["valid_ppl"]
    assert "valid_exit_1" in early_exit and "valid_exit_1" not in cross_entropy
    assert early_exit["valid_exit_1"] > early_exit["valid_loss"]  # one layer predicts worse than four


@pytest.mark.slow  # two more trainings: 98 s at load average ~10, 218 s at ~20 (2 cores)
def test_resume_mid_ramp_with_a_curriculum_is_exact(straight, lm_data, tmp_path):
    straight_dir, straight_log = straight
    resumed = tmp_path / "resumed"
    first = per_update(train_lm(lm_data, resumed, "--max-update", "13", "--save-interval-updates", "13"))
    log = train_lm(lm_data, resumed, "--max-epoch", "2")
    assert "Loaded checkpoint" in log
    second = per_update(log)
    assert sorted(first) == list(range(1, 14)) and sorted(second) == list(range(14, 19))
    assert {**first, **second} == per_update(straight_log)
    with open(resumed / "draws.rank0") as a, open(straight_dir / "draws.rank0") as b:
        assert [json.loads(line) for line in a] == [json.loads(line) for line in b]
    a, b = weights(resumed / "checkpoint_last.pt"), weights(straight_dir / "checkpoint_last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_translation_scale_zero_trains_exactly_as_label_smoothed_cross_entropy(translation_data, tmp_path):
    common = [*TRAIN_COMMON, "--user-dir", PLUGIN, "--arch", "transformer_layerdrop_tiny", "--label-smoothing", "0.1",
              "--max-update", "3", "--decoder-layerdrop", "0.3"]

    def train(name, *args):
        log = fairseq("fairseq-train", translation_data, *common, "--save-dir", tmp_path / name, *args)
        return weights(tmp_path / name / "checkpoint_last.pt"), log.stdout + log.stderr

    plain, _ = train("plain", "--criterion", "label_smoothed_cross_entropy")
    zero, zero_log = train("zero", "--criterion", "early_exit_label_smoothed_cross_entropy", "--early-exit-scale", "0")
    on, on_log = train("on", "--criterion", "early_exit_label_smoothed_cross_entropy", "--early-exit-scale", "1")
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    changed = [k for k in plain if not torch.equal(plain[k], on[k])]
    assert any(".decoder.layers.0." in k or k.startswith("decoder.layers.0.") for k in changed)
    assert any(r.get("exit_5") is not None for r in json_logs(on_log, "train_inner"))  # 6 decoder layers: exits 1..5
    assert [r["loss"] for r in json_logs(zero_log, "train_inner")] != [r["loss"] for r in json_logs(on_log, "train_inner")]


@pytest.mark.parametrize("flags, message", [
    (["--early-exit-scale", "-1"], "--early-exit-scale must be a number, 0 or more"),
    # finite but huge: it once crashed with FloatingPointError (NaN weights) after the data was read
    (["--early-exit-scale", "1e308"], "--early-exit-scale must be at most 1e+06, got 1e+308"),
    # no decoder layer: it once raised ZeroDivisionError at the first step
    (["--decoder-layers", "0"], "--decoder-layers 0: the early-exit criteria weigh the loss after each decoder layer"),
], ids=["negative-scale", "huge-scale", "no-decoder-layer"])
def test_bad_values_stop_training_before_it_starts(lm_data, tmp_path, flags, message):
    proc = fairseq("fairseq-train", lm_data, *LM, "--save-dir", tmp_path, *flags, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in proc.stderr.strip().splitlines()[-1]
    assert not json_logs(output, "train_inner") and "bin/train" not in output  # before the training data is read


@pytest.mark.parametrize("flags, message", [
    (["--layerdrop-schedule", "exponential", "--layerdrop-pld-gamma", "0.1"], "--layerdrop-pld-gamma only applies"),
    (["--layerdrop-schedule", "progressive", "--layerdrop-ramp-updates", "10"], "--layerdrop-ramp-updates does not apply"),
    (["--layerdrop-ramp-updates", "-2"], "--layerdrop-ramp-updates must be a whole number"),
    (["--layerdrop-ramp-updates", "10", "--layer-gates", "--criterion", "gated_cross_entropy"], "--layer-gates learns constant per-layer rates"),
])
def test_bad_schedule_options_stop_the_model_build(lm_data, flags, message):
    with pytest.raises(ValueError, match=message):
        build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                    "--tokens-per-sample", "16", *flags)
