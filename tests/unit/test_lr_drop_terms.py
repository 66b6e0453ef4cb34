"""LR-Drop's pieces without fairseq's commands: the weights' check, the distances, the attention
probabilities recomputed from a block's inputs, and the two passes' seeded draws."""

import math

import pytest
import torch
from fairseq.modules import MultiheadAttention

from fairseq_layerdrop.criterions import lr_drop_loss
from fairseq_layerdrop.criterions.lr_drop_loss import check_weight, symmetric_kl, symmetric_kl_of_halves
from fairseq_layerdrop.modules.drop_structure import plan_step
from fairseq_layerdrop.modules.seeded_draw import layer_uniforms
from fairseq_layerdrop.modules.siamese_passes import attention_log_probs


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "abc", None, 1e30, "1000001"])
def test_a_bad_weight_is_refused_naming_the_flag(bad):
    with pytest.raises(ValueError, match="--lr-drop-hidden-weight"):
        check_weight(bad, "--lr-drop-hidden-weight")


def test_good_weights_pass():
    assert check_weight("0", "--x") == 0.0 and check_weight(2, "--x") == 2.0 and check_weight("1e6", "--x") == 1e6


def test_symmetric_kl_is_the_mean_of_both_directions_and_zero_on_equal_inputs():
    torch.manual_seed(0)
    p, q = torch.log_softmax(torch.randn(3, 5), -1), torch.log_softmax(torch.randn(3, 5), -1)
    kl_pq = (p.exp() * (p - q)).sum(-1)
    kl_qp = (q.exp() * (q - p)).sum(-1)
    assert torch.allclose(symmetric_kl(p, q), (kl_pq + kl_qp) / 2, atol=1e-6)
    assert torch.equal(symmetric_kl(p, p), torch.zeros(3))


@pytest.mark.parametrize("chunk", [1 << 16, 8], ids=["one chunk", "a chunk per row"])
def test_symmetric_kl_gradients_are_those_of_the_formula(monkeypatch, chunk):
    """The hand-written backward (it keeps only the inputs) against autograd through the formula, and gradcheck;
    computed in one chunk of rows and in many."""
    monkeypatch.setattr(lr_drop_loss, "CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    logits = [torch.randn(2, 3, 7, dtype=torch.double, requires_grad=True) for _ in range(2)]
    weights = torch.randn(2, 3, dtype=torch.double)
    p, q = (torch.log_softmax(x, -1) for x in logits)
    (symmetric_kl(p, q) * weights).sum().backward()
    ours = [x.grad.clone() for x in logits]
    for x in logits:
        x.grad = None
    p, q = (torch.log_softmax(x, -1) for x in logits)
    (0.5 * ((p.exp() - q.exp()) * (p - q)).sum(-1) * weights).sum().backward()
    for mine, reference in zip(ours, (x.grad for x in logits)):
        assert torch.allclose(mine, reference, atol=1e-12) and reference.abs().max() > 1e-3
    p, q = (torch.log_softmax(x.detach(), -1).requires_grad_() for x in logits)
    assert torch.autograd.gradcheck(symmetric_kl, (p, q))


@pytest.mark.parametrize("masked", [False, True])
def test_attention_log_probs_are_the_blocks_own_head_weights(masked):
    torch.manual_seed(0)
    attention = MultiheadAttention(16, 4, self_attention=True).eval()
    x = torch.randn(5, 2, 16)
    future = torch.triu(torch.full((5, 5), float("-inf")), 1) if masked else None
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2]) if masked else None
    # static_kv takes fairseq's own (slow) path, the one that returns every head's weights: heads x B x T x S
    _, weights = attention(query=x, key=x, value=x, key_padding_mask=padding, attn_mask=future, static_kv=True,
                           need_weights=True, need_head_weights=True)
    ours = attention_log_probs(attention, x, x, padding, future).exp()  # B x heads x T x S
    assert torch.allclose(ours, weights.transpose(0, 1), atol=1e-6)


def test_each_pass_has_its_own_draw_pass_0_is_plain_training_and_both_repeat():
    plain = layer_uniforms(8, seed=1, update=5, micro_batch=0, stack="decoder")
    assert torch.equal(layer_uniforms(8, 1, 5, 0, "decoder", pass_index=0), plain)
    second = layer_uniforms(8, 1, 5, 0, "decoder", pass_index=1)
    assert not torch.equal(second, plain)
    assert torch.equal(layer_uniforms(8, 1, 5, 0, "decoder", pass_index=1), second)
    plans = [[p.describe() for p in plan_step("sublayer", [0.5] * 8, 1, 5, 0, "decoder", pass_index=k)]
             for k in (0, 1)]
    assert plans[0] != plans[1]


@pytest.mark.parametrize("chunk", [1 << 16, 8], ids=["one chunk", "a chunk per row"])
def test_kl_of_halves_is_the_kl_of_the_split_tensor_with_the_same_gradient(monkeypatch, chunk):
    """The R-Drop path (one forward over the batch written twice): the same values and gradients as splitting
    the log-probabilities and comparing the halves, without the split's concatenation in backward."""
    monkeypatch.setattr(lr_drop_loss, "CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 7, dtype=torch.double, requires_grad=True)
    weights = torch.randn(2, 3, dtype=torch.double)
    ours = symmetric_kl_of_halves(torch.log_softmax(logits, -1))
    (ours * weights).sum().backward()
    grad, logits.grad = logits.grad.clone(), None
    p, q = torch.log_softmax(logits, -1).chunk(2, dim=0)
    reference = symmetric_kl(p, q)
    (reference * weights).sum().backward()
    assert torch.allclose(ours, reference, atol=1e-12) and reference.min() > 0
    assert torch.allclose(grad, logits.grad, atol=1e-12) and grad.abs().max() > 1e-3
    both = torch.log_softmax(logits.detach(), -1).requires_grad_()
    assert torch.autograd.gradcheck(symmetric_kl_of_halves, (both,))
    with pytest.raises(ValueError, match="even first dimension"):
        symmetric_kl_of_halves(torch.zeros(3, 2))
