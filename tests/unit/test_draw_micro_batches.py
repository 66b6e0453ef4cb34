"""Each micro-batch of an update draws its own layers (Fan et al. LayerDrop, seeded per micro-batch):
with --update-freq K, the K micro-batches of one update must not all drop the same layers."""

import types

from torch import nn

from fairseq_layerdrop.modules.layer_drop import SeededLayerDropList, layer_uniforms


def stack(num_layers=12, p=0.5):
    layers = [nn.Linear(1, 1) for _ in range(num_layers)]
    for layer in layers:
        layer.self_attn = types.SimpleNamespace(num_heads=4)
    return SeededLayerDropList(layers, p=p, seed=3, stack="decoder")


def test_the_draw_depends_on_the_micro_batch():
    for update in range(20):
        draws = [layer_uniforms(12, 3, update, micro_batch).tolist() for micro_batch in range(4)]
        assert len({tuple(d) for d in draws}) == 4, update  # four different micro-batches, four different draws


def test_micro_batches_of_one_update_drop_different_layers_and_a_new_update_starts_again():
    layers = stack()
    layers.train()
    kept = {}
    for update in range(10):
        layers.set_num_updates(update)
        for micro_batch in range(3):
            list(layers)
            kept[update, micro_batch] = layers.last_kept
    differing = [u for u in range(10) if len({tuple(kept[u, m]) for m in range(3)}) > 1]
    assert len(differing) == 10, kept  # P(3 equal 12-layer masks at p = 0.5) = 2**-24 per update
    layers.set_num_updates(4)
    list(layers)
    assert layers.last_kept == kept[4, 0]  # a resumed update repeats its first micro-batch's draw
