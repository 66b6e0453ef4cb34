"""Strategy files read by ``--prune-strategy search:FILE`` / ``contribution:FILE``, and strategy names,
through the export command: a malformed file is refused naming the file, never half-applied."""

import json
import re

import pytest
import torch

from tests.unit.test_export_safety import run, synthetic_checkpoint

SEARCH_SHORT = {"stacks": {"decoder": {"num_layers": 4, "kept": {"3": [0, 2]}}}}


@pytest.mark.parametrize("kind, content, message", [
    ("search", SEARCH_SHORT, r"gave 2 layers \[0, 2\] for the decoder at depth 3: it must give exactly 3"),
    ("search", [1, 2, 3], r"not a search result \(expected a JSON object with \"stacks\"\)"),
    ("search", {"stacks": None}, r"not a search result"),
    ("search", {"stacks": {"decoder": {"num_layers": 4, "kept": {"3": "0,1,2"}}}}, r"is '0,1,2', not a list"),
    ("search", {"stacks": {"decoder": {"kept": {"3": [0, 1, 2]}}}}, r"the decoder entry is malformed"),
    ("search", {"stacks": {"decoder": {"num_layers": 4, "kept": {"3": [0, 1, 9]}}}}, r"kept layer\(s\) \[9\] out of range"),
    ("contribution", {"stacks": {"decoder": {"scores": ["0.1", "0.2", "0.3", "0.4"]}}}, r"must be a list of finite numbers"),
    ("contribution", {"stacks": {"decoder": {"scores": [0.1, float("nan"), 0.3, 0.4]}}}, r"must be a list of finite numbers"),
    ("contribution", {"stacks": {"decoder": {"scores": [0.1, True, 0.3, 0.4]}}}, r"must be a list of finite numbers"),
    ("contribution", {"stacks": None}, r"no scores for the decoder"),
])
def test_a_malformed_strategy_file_is_refused_naming_it_and_nothing_is_written(tmp_path, kind, content, message):
    torch.save(synthetic_checkpoint(4), tmp_path / "full.pt")
    strategy_file = tmp_path / "strategy.json"
    strategy_file.write_text(json.dumps(content))
    refusal = run(tmp_path / "full.pt", tmp_path / "out.pt", "--prune-to", "3", "--prune-strategy",
                  f"{kind}:{strategy_file}")
    assert refusal is not None and f"--prune-strategy {kind}:{strategy_file}" in refusal, refusal
    assert re.search(message, refusal), refusal
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("strategy, message", [
    ("top:foo", "--prune-strategy top:foo: 'top' takes no ':foo'; give --prune-strategy top"),
    ("search:", "--prune-strategy search:: pruning strategy 'search' needs a file: --prune-strategy search:PATH"),
    ("middle", "--prune-strategy: unknown pruning strategy 'middle'"),
])
def test_a_strategy_argument_is_never_ignored(tmp_path, strategy, message):
    torch.save(synthetic_checkpoint(4), tmp_path / "full.pt")
    refusal = run(tmp_path / "full.pt", tmp_path / "out.pt", "--prune-to", "2", "--prune-strategy", strategy)
    assert refusal is not None and message in refusal, refusal


def test_a_well_formed_search_file_gives_its_list(tmp_path):
    torch.save(synthetic_checkpoint(4), tmp_path / "full.pt")
    (tmp_path / "search.json").write_text(json.dumps({"stacks": {"decoder": {"num_layers": 4, "kept": {"3": [3, 0, 2]}}}}))
    assert run(tmp_path / "full.pt", tmp_path / "out.pt", "--prune-to", "3", "--prune-strategy",
               f"search:{tmp_path / 'search.json'}") is None
    model = torch.load(tmp_path / "out.pt", weights_only=True)["model"]
    assert [model[f"decoder.layers.{j}.fc1.bias"][0].item() for j in range(3)] == [3.0, 0.0, 2.0]
