"""On CUDA: at p = 0 the plugin's models compute what fairseq's own compute, and a seed and an update
number give the same dropped layers on CPU and CUDA (LayerDrop, Fan et al., arXiv 1909.11556)."""

import pytest
import torch

from tests.helpers import build_model

pytestmark = pytest.mark.gpu
LM_DIMS = ["--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "4",
           "--decoder-layers", "6", "--tokens-per-sample", "32"]
MT_DIMS = ["--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
           "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "4",
           "--encoder-layers", "4", "--decoder-layers", "4"]


def twins(data, ours, theirs, dims, *task):
    """The plugin's model at p = 0 and fairseq's, with the same weights, on CUDA, in eval mode."""
    torch.manual_seed(0)
    mine, _ = build_model(data, *task, "--arch", ours, *dims)
    plain, _ = build_model(data, *task, "--arch", theirs, *dims)
    assert mine.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(mine.state_dict())
    return mine.cuda().eval(), plain.cuda().eval()


def test_zero_rate_lm_computes_exactly_what_fairseq_transformer_lm_computes_on_cuda(lm_data):
    mine, plain = twins(lm_data, "transformer_lm_layerdrop", "transformer_lm", LM_DIMS, "--task", "language_modeling")
    tokens = torch.randint(4, 40, (8, 32), device="cuda")
    with torch.no_grad():
        ours, theirs = mine(tokens)[0], plain(tokens)[0]
        assert ours.is_cuda and torch.equal(ours, theirs)
        assert torch.equal(mine.half()(tokens)[0], plain.half()(tokens)[0])  # the --fp16 path too


def test_zero_rate_transformer_computes_exactly_what_fairseq_transformer_computes_on_cuda(translation_data):
    mine, plain = twins(translation_data, "transformer_layerdrop", "transformer", MT_DIMS)
    src = torch.randint(4, 20, (6, 9), device="cuda")
    lengths = torch.full((6,), 9, device="cuda")
    prev = torch.randint(4, 20, (6, 7), device="cuda")
    with torch.no_grad():
        ours, theirs = mine(src, lengths, prev)[0], plain(src, lengths, prev)[0]
    assert ours.is_cuda and torch.equal(ours, theirs)


def layers_that_ran(model, updates, device):
    """For each update (train mode, one micro-batch), the indices of the decoder layers that ran."""
    layers, ran = model.decoder.layers, []
    hooks = [layer.register_forward_hook(lambda *_, i=i: ran[-1].append(i)) for i, layer in enumerate(layers)]
    model.to(device).train()
    tokens = torch.randint(4, 40, (2, 16), device=device)
    for update in updates:
        model.set_num_updates(update)
        ran.append([])
        model(tokens)
    for hook in hooks:
        hook.remove()
    return ran


def test_same_seed_and_update_drop_the_same_layers_on_cpu_and_cuda(lm_data):
    def model():
        return build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny",
                           "--decoder-layerdrop", "0.5", "--tokens-per-sample", "16", "--seed", "11")[0]
    updates = range(1, 41)
    on_cpu, on_cuda = layers_that_ran(model(), updates, "cpu"), layers_that_ran(model(), updates, "cuda")
    assert on_cpu == on_cuda
    assert len({tuple(r) for r in on_cuda}) > 5, "the draws should vary with the update"
