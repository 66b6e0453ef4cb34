"""LR-Drop's training loss, term by term, against a naive re-computation (criterions/lr_drop_loss.py).

A step at which the two passes draw different layers (so the criterion runs two forwards), some layer runs in
neither pass, and the batch has padded rows. The reference runs each pass's kept layers (from the draw's
definition) through fairseq's own decoder loop, and evaluates the docs' formulas on what that returns:

    task(pass 0) + task(pass 1)
      + w_out  * sum_t (KL(p0||p1) + KL(p1||p0)) / 2
      + w_hid  * mean over slots l that ran in either pass of sum_t mean_c (h0_l - h1_l)^2
      + w_attn * mean over blocks that ran in both passes of sum_t mean_heads (KL(a0||a1) + KL(a1||a0)) / 2

and the logged values: each term divided by fairseq's sample size (tokens, or sentences with --sentence-avg).
"""

import math

import pytest
import torch
from fairseq.logging import metrics

from fairseq_layerdrop.criterions.lr_drop_loss import LRDropCrossEntropyCriterion
from tests.unit.naive_lm import kept_layers, naive_pass, nll_sum, sym_kl, tiny_lm

LAYERS, P, SEED = 4, 0.5, 1
WEIGHTS = {"output": 0.7, "hidden": 0.3, "attention": 0.2}


def a_step_with_different_draws():
    """An update at which the passes differ, share a layer (an attention block is compared) and leave one out."""
    for update in range(200):
        kept = [kept_layers(LAYERS, P, SEED, update, k) for k in (0, 1)]
        both, either = set(kept[0]) & set(kept[1]), set(kept[0]) | set(kept[1])
        if kept[0] != kept[1] and both and len(either) < LAYERS and len(both) < len(either):
            return update, kept
    raise AssertionError("no such step in 200 updates")


def slot_state(states, kept, slot):
    """The residual stream after ``slot``: the output of the last kept layer at or below it (else the embeddings)."""
    return states[sum(1 for layer in kept if layer <= slot)]


def naive_terms(model, sample, kept, pad):
    (lp0, states0, att0), (lp1, states1, att1) = (naive_pass(model, sample, k, head_weights=True) for k in kept)
    target = sample["target"]
    tokens = target.ne(pad)  # B x T
    task = nll_sum(lp0, target, pad) + nll_sum(lp1, target, pad)
    output = (sym_kl(lp0, lp1) * tokens).sum()
    hidden = []
    for slot in range(LAYERS):
        if slot in kept[0] or slot in kept[1]:  # a slot that ran in neither pass repeats the one below: not compared
            diff = (slot_state(states0, kept[0], slot) - slot_state(states1, kept[1], slot)).pow(2).mean(-1)  # T x B
            hidden.append((diff * tokens.t()).sum())
    attention = []
    for layer in sorted(set(kept[0]) & set(kept[1])):  # blocks that ran in both passes
        a0, a1 = att0[layer].log(), att1[layer].log()  # B x H x T x S
        per_query = sym_kl(a0, a1).mean(1)  # the heads' mean: B x T
        attention.append((per_query * tokens).sum())  # padded query positions do not count
    return task, {"output": output, "hidden": sum(hidden) / len(hidden), "attention": sum(attention) / len(attention)}


@pytest.fixture(scope="module")
def step(lm_data):
    model, task, sample = tiny_lm(lm_data, "--decoder-layers", str(LAYERS), "--decoder-layerdrop", str(P))
    update, kept = a_step_with_different_draws()
    pad = task.target_dictionary.pad()
    with torch.no_grad():
        task_loss, terms = naive_terms(model, sample, kept, pad)
    return model, task, sample, update, kept, task_loss, terms


def run_criterion(model, task, sample, update, sentence_avg):
    criterion = LRDropCrossEntropyCriterion(task, sentence_avg, WEIGHTS["output"], WEIGHTS["hidden"],
                                            WEIGHTS["attention"])
    model.train()
    model.decoder.layers.set_num_updates(update)
    model.decoder.layers.micro_batch = 0
    with torch.no_grad():
        return criterion(model, sample)


def test_the_step_has_what_the_terms_must_handle(step):
    model, task, sample, update, kept, task_loss, terms = step
    pad = task.target_dictionary.pad()
    assert set(range(LAYERS)) - set(kept[0]) - set(kept[1])  # a slot in neither pass
    assert sample["target"].eq(pad).any()  # padded query positions
    assert all(v > 1e-4 for v in terms.values()), terms  # every term is large enough to tell variants apart


def test_every_term_and_the_two_task_losses_equal_the_naive_computation(step):
    """Kills: the hidden term comparing slots that ran in neither pass, the attention term counting padded
    query positions or summing the heads, and the loss taking pass 0's task loss twice."""
    model, task, sample, update, kept, task_loss, terms = step
    loss, sample_size, log = run_criterion(model, task, sample, update, sentence_avg=False)
    assert model.decoder.layers.last_kept == kept[1]  # the criterion ran the draws the reference ran
    for term in ("output", "hidden", "attention"):
        assert log[f"lrd_{term}"].item() == pytest.approx(terms[term].item(), rel=1e-4), term
    assert log["nll_loss"].item() == pytest.approx(task_loss.item(), rel=1e-5)
    expected = task_loss + sum(WEIGHTS[t] * terms[t] for t in WEIGHTS)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert sample_size == sample["ntokens"] == int(sample["target"].ne(task.target_dictionary.pad()).sum())


@pytest.mark.parametrize("sentence_avg", [False, True], ids=["per-token", "sentence-avg"])
def test_sentence_avg_divides_the_loss_and_every_logged_term_by_the_sentences(step, sentence_avg):
    model, task, sample, update, kept, task_loss, terms = step
    loss, sample_size, log = run_criterion(model, task, sample, update, sentence_avg)
    sentences = sample["target"].size(0)
    tokens = int(sample["target"].ne(task.target_dictionary.pad()).sum())
    divisor = sentences if sentence_avg else tokens
    assert sample_size == divisor and sentences != tokens
    expected = task_loss + sum(WEIGHTS[t] * terms[t] for t in WEIGHTS)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # a sum: the trainer divides it by sample_size
    with metrics.aggregate(new_root=True) as agg:
        LRDropCrossEntropyCriterion.reduce_metrics([log])
        logged = agg.get_smoothed_values()
    assert logged["loss"] == pytest.approx(expected.item() / divisor / math.log(2), rel=1e-3)
    assert logged["lrd_output"] == pytest.approx(terms["output"].item() / divisor / math.log(2), rel=1e-4)
    assert logged["lrd_attention"] == pytest.approx(terms["attention"].item() / divisor / math.log(2), rel=1e-4)
    assert logged["lrd_hidden"] == pytest.approx(terms["hidden"].item() / divisor, rel=1e-4)
