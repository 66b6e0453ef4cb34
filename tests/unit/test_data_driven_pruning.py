"""Data-driven strategies: learned top-k, search on validation, contribution scores (Sajjad et al.)
(the commands `fairseq-layerdrop search` and `contributions` on a trained checkpoint: tests/integration)."""

import pytest
import torch

from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER
from fairseq_layerdrop.pruning import PruningError, kept_layers
from fairseq_layerdrop.pruning.contribution import layer_contributions, save_contributions
from fairseq_layerdrop.pruning.search import removal_search_cost, save_search_result, search_kept_layers
from tests.helpers import build_model


def test_learned_keeps_the_layers_with_the_highest_keep_probability():
    logits = [0.5, -1.0, 2.0, 0.0, -0.3, 1.0]  # drop logits: keep probability falls as the logit rises
    state = {f"decoder.layers.{i}.{GATE_PARAMETER}": torch.tensor(v) for i, v in enumerate(logits)}
    state["decoder.layers.0.fc1.weight"] = torch.zeros(2, 2)
    assert kept_layers("learned", 6, 3, state_dict=state) == [1, 3, 4]
    assert kept_layers("learned", 6, 1, state_dict=state) == [1]
    assert kept_layers("learned", 6, 5, state_dict=state) == [0, 1, 3, 4, 5]
    tied = {f"decoder.layers.{i}.{GATE_PARAMETER}": torch.tensor(0.0) for i in range(4)}
    assert kept_layers("learned", 4, 2, state_dict=tied) == [0, 1]
    with pytest.raises(PruningError, match="the checkpoint's encoder has no learned layer gates .*--layer-gates"):
        kept_layers("learned", 6, 3, stack="encoder", state_dict=state)
    with pytest.raises(PruningError, match="strategy 'learned' needs state_dict"):
        kept_layers("learned", 6, 3)
    with pytest.raises(PruningError, match=r"needs a file: --prune-strategy search:PATH"):
        kept_layers("search", 6, 3)


def additive_cost(costs):
    """A validation score where dropping layer i costs costs[i]: the best kept set keeps the costliest."""
    return lambda kept: sum(c for i, c in enumerate(costs) if i not in kept)


@pytest.mark.parametrize("budget,beam,method", [(100, 1, "exhaustive"), (30, 1, "beam"), (60, 2, "beam")])
def test_search_finds_the_best_subset_within_the_budget(budget, beam, method):
    costs = [5.0, 1.0, 4.0, 0.0, 3.0, 2.0, 6.0, 7.0]
    lines = []
    best, candidates = search_kept_layers(8, 4, additive_cost(costs), budget=budget, beam=beam, progress=lines.append)
    assert best == [0, 2, 6, 7]
    assert len(candidates) <= budget and {c["method"] for c in candidates} == {method}
    assert len({tuple(c["kept"]) for c in candidates}) == len(candidates), "no candidate evaluated twice"
    assert len(lines) >= len(candidates)
    if method == "exhaustive":
        assert len(candidates) == 70
    else:
        assert len(candidates) <= removal_search_cost(8, 4, beam)


def test_search_refuses_a_budget_below_a_greedy_search():
    with pytest.raises(PruningError, match=r"--budget 10 is too small: C\(8,4\) = 70 subsets, .* needs 26"):
        search_kept_layers(8, 4, additive_cost([0] * 8), budget=10, progress=lambda _: None)


def test_search_result_is_read_back_by_the_search_strategy(tmp_path):
    path = str(tmp_path / "search.json")
    save_search_result(path, "decoder", 8, 4, [0, 3, 5, 7], 12.5, "valid perplexity", "ckpt.pt")
    save_search_result(path, "decoder", 8, 2, [0, 7], 20.0, "valid perplexity", "ckpt.pt")
    assert kept_layers(f"search:{path}", 8, 4) == [0, 3, 5, 7]
    assert kept_layers(f"search:{path}", 8, 2) == [0, 7]
    with pytest.raises(PruningError, match=r"has no result for the decoder at depth 3 \(it has depths \[2, 4\]\)"):
        kept_layers(f"search:{path}", 8, 3)
    with pytest.raises(PruningError, match="was searched on a decoder of 8 layers; this one has 6"):
        kept_layers(f"search:{path}", 6, 4)


def plain_lm(lm_data):
    """fairseq's own transformer_lm (no LayerDrop), pre-norm, so that a zeroed layer is exactly the identity."""
    model, _ = build_model(lm_data, "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", 5,
                           "--decoder-embed-dim", 32, "--decoder-ffn-embed-dim", 64, "--decoder-attention-heads", 2,
                           "--decoder-normalize-before", "--tokens-per-sample", 32)
    return model


def test_an_identity_layer_contributes_least_and_is_dropped_first(lm_data, tmp_path):
    torch.manual_seed(0)
    model = plain_lm(lm_data)
    layer = model.decoder.layers[3]
    with torch.no_grad():  # both residual branches output 0: the layer is the identity
        for linear in (layer.self_attn.out_proj, layer.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
    tokens = torch.randint(4, 40, (3, 16))
    tokens[0, -4:] = 1  # some padding
    batches = [{"net_input": {"src_tokens": tokens, "src_lengths": torch.tensor([12, 16, 16])}}]
    scores = layer_contributions(model, batches, "decoder")
    assert scores[3] == pytest.approx(0.0, abs=1e-6)
    assert min(s for i, s in enumerate(scores) if i != 3) > 0.01
    path = str(tmp_path / "scores.json")
    save_contributions(path, "decoder", scores, "ckpt.pt")
    assert 3 not in kept_layers(f"contribution:{path}", 5, 4)
    ranked = sorted(range(5), key=lambda i: -scores[i])
    assert kept_layers(f"contribution:{path}", 5, 2) == sorted(ranked[:2])
    with pytest.raises(PruningError, match="scores a decoder of 5 layers; this one has 6"):
        kept_layers(f"contribution:{path}", 6, 2)
    with pytest.raises(PruningError, match="no scores for the encoder"):
        kept_layers(f"contribution:{path}", 5, 2, stack="encoder")
