"""Per-layer LayerDrop rates: schedules, explicit lists, protected layers, p* = 1 - r/N, bad input."""

import logging

import pytest

from tests.helpers import build_model
import torch


from fairseq_layerdrop.modules.drop_schedule import layer_drop_rates, rate_for_target_depth


def test_schedules():
    assert layer_drop_rates(4, 0.3) == [0.3] * 4
    assert layer_drop_rates(6, 0.2, "linear") == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16, 0.2])
    assert layer_drop_rates(6, 0.2, "linear-reverse") == pytest.approx([0.2, 0.16, 0.12, 0.08, 0.04, 0.0])
    assert layer_drop_rates(1, 0.2, "linear") == [0.2]
    assert layer_drop_rates(3, 0.9, rates=[0.1, 0.0, 0.5]) == [0.1, 0.0, 0.5]
    assert layer_drop_rates(5, 0.4, protect=[0, 4]) == [0.0, 0.4, 0.4, 0.4, 0.0]
    assert layer_drop_rates(4, 0.4, "linear", protect=[3]) == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.0])


def test_target_depth_gives_the_papers_rate():
    assert rate_for_target_depth(12, 6) == 0.5
    assert rate_for_target_depth(16, 8) == 0.5
    assert rate_for_target_depth(6, 6) == 0.0
    assert rate_for_target_depth(24, 18) == 0.25


@pytest.mark.parametrize("call, message", [
    (lambda: layer_drop_rates(4, 0.2, rates=[0.1, 0.2]), r"--decoder-layerdrop-rates must list one rate per layer: 4"),
    (lambda: layer_drop_rates(3, 0.2, rates=[0.1, 1.0, 0.2]), r"--decoder-layerdrop-rates must be in \[0, 1\)"),
    (lambda: layer_drop_rates(3, -0.1), r"--decoder-layerdrop must be in \[0, 1\)"),
    (lambda: layer_drop_rates(3, 0.2, "cosine"), r"--layerdrop-schedule must be one of uniform, linear"),
    (lambda: layer_drop_rates(3, 0.2, protect=[3]), r"--decoder-layerdrop-protect must list layer indices from 0 to 2"),
    (lambda: rate_for_target_depth(6, 7), r"target-depth must be a depth from 1 to 6"),
    (lambda: rate_for_target_depth(6, 0), r"target-depth must be a depth from 1 to 6"),
])
def test_bad_input_names_the_flag(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("flags, message", [
    (["--encoder-layerdrop-rates", "0.1,0.2"], r"--encoder-layerdrop-rates must list one rate per layer: 6 rates, got 2"),
    (["--decoder-layerdrop-rates", "0.1,x,0,0,0,0"], r"--decoder-layerdrop-rates must be a comma-separated list"),
    (["--decoder-layerdrop", "1.0"], r"--decoder-layerdrop must be in \[0, 1\)"),
    (["--layerdrop-schedule", "step"], r"--layerdrop-schedule must be one of"),
    (["--layerdrop-structure", "block"], r"--layerdrop-structure must be one of layer, sublayer"),
    (["--encoder-layerdrop-protect", "0,6"], r"--encoder-layerdrop-protect must list layer indices from 0 to 5"),
    (["--decoder-layerdrop-target-depth", "9"], r"--decoder-layerdrop-target-depth must be a depth from 1 to 6"),
    (["--ddp-backend", "fully_sharded"], r"LayerDrop is not supported with --ddp-backend fully_sharded"),
])
def test_bad_options_stop_the_model_build(translation_data, flags, message):
    with pytest.raises(ValueError, match=message):
        build_model(translation_data, "--arch", "transformer_layerdrop_tiny", *flags)


def test_options_reach_the_stacks_and_the_log(translation_data, caplog):
    with caplog.at_level(logging.INFO):
        model, _ = build_model(translation_data, "--arch", "transformer_layerdrop_tiny", "--layerdrop-schedule", "linear",
                               "--encoder-layerdrop", "0.5", "--decoder-layerdrop-target-depth", "3",
                               "--decoder-layerdrop-protect", "0", "--layerdrop-structure", "sublayer")
    assert model.encoder.layers.rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert model.decoder.layers.rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # p* = 1 - 3/6 = 0.5
    assert model.encoder.layers.structure == model.decoder.layers.structure == "sublayer"
    assert "encoder LayerDrop (sublayer): mean rate 0.2500, per layer [0.000, 0.100, 0.200, 0.300, 0.400, 0.500]" in caplog.text
    assert "p* = 1 - 3/6 = 0.5000" in caplog.text


def test_lm_rates_list_drives_each_layers_frequency(lm_data):
    model, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                           "--tokens-per-sample", 16, "--decoder-layers", 4, "--decoder-layerdrop-rates", "0,0.6,0,0.3")
    layers = model.decoder.layers
    model.train()
    ran = [0] * 4
    for update in range(400):
        model.set_num_updates(update)
        list(layers)  # one step's draw
        for i in layers.last_kept:
            ran[i] += 1
    tolerance = 4.5 * (0.25 / 400) ** 0.5
    assert ran[0] == ran[2] == 400
    assert abs(1 - ran[1] / 400 - 0.6) < tolerance and abs(1 - ran[3] / 400 - 0.3) < tolerance
    assert torch.is_tensor(model(torch.randint(4, 20, (2, 8)))[0])


def test_a_model_pruned_on_load_keeps_building_with_the_options_of_its_full_depth(lm_data, caplog):
    """Training options describe N layers; a model pruned to R < N (to evaluate, or train on) still builds."""
    with caplog.at_level(logging.INFO):
        model, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                               "--tokens-per-sample", 16, "--decoder-layerdrop-rates", "0,0.1,0.2,0.3,0.4,0.5",
                               "--decoder-layerdrop-protect", "5", "--prune-to", 3)
    assert len(model.decoder.layers) == 3
    assert model.decoder.layers.rates == [0.2] * 3  # the configured --decoder-layerdrop, uniform
    assert "describe another depth than the 3 layers built" in caplog.text
