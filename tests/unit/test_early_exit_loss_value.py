"""The early-exit training loss against a naive computation (criterions/early_exit_loss.py).

At a training step with LayerDrop and the rotational curriculum, the reference runs the drawn layers through
fairseq's own decoder loop and evaluates LayerSkip's loss from its formula:

    sum over exits l (a layer that ran, below the top one that ran, on at update t: (l - t) mod R == 0)
        of e(l) CE(head(h_l))  +  e(L-1) CE(output)          divided by the sum of the e's used,
    e(l) = e_scale (l + 1)(l + 2) / 2,   e(L-1) = L (L + 1) / 2,
    head = the final layer norm (if any), project_out_dim (if any) and the output projection.
"""

import pytest
import torch

from fairseq_layerdrop.criterions.early_exit_loss import EarlyExitCrossEntropyCriterion
from tests.unit.naive_lm import kept_layers, naive_pass, nll_sum, tiny_lm

LAYERS, P, SEED, R, E_SCALE = 5, 0.3, 1, 2, 0.6


def steps():
    """Updates at which some layer is dropped and the curriculum turns off an exit that ran, one with the top
    layer dropped (its output is then the top layer that ran) and one with it run."""
    found = {}
    for update in range(200):
        kept = kept_layers(LAYERS, P, SEED, update)
        below_top = kept[:-1]
        off = [l for l in below_top if (l - update) % R]
        on = [l for l in below_top if (l - update) % R == 0]
        if len(kept) < LAYERS and off and on:
            found.setdefault(kept[-1] == LAYERS - 1, (update, kept, on))
        if len(found) == 2:
            return [found[True], found[False]]
    raise AssertionError(f"steps not found: {found}")


@pytest.fixture(scope="module")
def model_and_task(lm_data):
    model, task, sample = tiny_lm(lm_data, "--decoder-layers", str(LAYERS), "--decoder-layerdrop", str(P))
    return model, task, sample


@pytest.mark.parametrize("index", [0, 1], ids=["top-layer-ran", "top-layer-dropped"])
def test_the_training_objective_and_each_exit_equal_the_naive_computation(model_and_task, index):
    model, task, sample = model_and_task
    update, kept, exits = steps()[index]
    pad = task.target_dictionary.pad()
    target = sample["target"]
    with torch.no_grad():
        lprobs, states, _ = naive_pass(model, sample, kept)
        decoder = model.decoder
        exit_losses = {}
        for l in exits:
            h = states[kept.index(l) + 1]  # after layer l (states[0]: the embeddings)
            x = (h if decoder.layer_norm is None else decoder.layer_norm(h)).transpose(0, 1)
            x = x if decoder.project_out_dim is None else decoder.project_out_dim(x)
            logits = decoder.output_layer(x)
            exit_losses[l] = nll_sum(torch.log_softmax(logits.float(), -1), target, pad)
        final = nll_sum(lprobs, target, pad)
    scale = {l: E_SCALE * (l + 1) * (l + 2) / 2 for l in exits}
    top = LAYERS * (LAYERS + 1) / 2
    expected = (sum(scale[l] * exit_losses[l] for l in exits) + top * final) / (sum(scale.values()) + top)

    criterion = EarlyExitCrossEntropyCriterion(task, False, early_exit_scale=E_SCALE,
                                               early_exit_curriculum="rotational", early_exit_rotation_interval=R)
    model.train()
    model.decoder.layers.set_num_updates(update)
    model.decoder.layers.micro_batch = 0
    with torch.no_grad():
        objective, sample_size, log = criterion(model, sample)
    assert model.decoder.layers.last_kept == kept
    assert objective.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["loss"].item() == pytest.approx(final.item(), rel=1e-5)  # the final layer's, as plain training logs
    for depth in range(1, LAYERS):
        if depth - 1 in exits:
            assert log[f"exit_{depth}"].item() == pytest.approx(exit_losses[depth - 1].item(), rel=1e-5)
            assert log[f"exit_{depth}_n"] == sample_size
        else:
            assert log[f"exit_{depth}"] == 0.0 and log[f"exit_{depth}_n"] == 0
