"""The pruning path of the export (options -> kept lists -> pruned checkpoint), thrown random keep lists,
depths, strategies and malformed strategy files: each case either refuses with a message naming the
flag or the file, or yields a checkpoint whose kept layers and depth are exactly what was asked."""

import json
import math
import random
import shlex

import pytest
import torch

from fairseq_layerdrop.modules.layer_gates import GATE_PARAMETER
from fairseq_layerdrop.pruning import PruningError
from fairseq_layerdrop.pruning.export import build_parser, prune_checkpoint

FLAGS = ("--layers-to-keep", "--decoder-layers-to-keep", "--prune-to", "--decoder-prune-to", "--prune-strategy")


def checkpoint(num_layers, logits):
    model = {"decoder.embed_tokens.weight": torch.full((3, 2), -1.0)}
    for i in range(num_layers):
        model[f"decoder.layers.{i}.fc1.weight"] = torch.full((2, 2), float(i))
        model[f"decoder.layers.{i}.{GATE_PARAMETER}"] = torch.tensor(logits[i])
    return {"cfg": {"model": {"decoder_layers": num_layers, "decoder_layerdrop": 0.2}, "task": {}}, "model": model}


def kept_in(state):
    """Which original layers the pruned state holds, in order (layer i's weights are filled with i)."""
    depth = len({k.split(".")[2] for k in state["model"] if ".layers." in k and k.endswith("fc1.weight")})
    return [int(state["model"][f"decoder.layers.{j}.fc1.weight"][0, 0]) for j in range(depth)]


def strategy_files(rng, tmp_path, num_layers, depth):
    """A strategy file, valid or malformed, and the list it should give (None: it must be refused)."""
    case = rng.randrange(12)
    path = tmp_path / f"strategy{rng.randrange(10**9)}.json"
    right = sorted(rng.sample(range(num_layers), min(depth, num_layers))) if 1 <= depth <= num_layers else [0]
    scores = [rng.random() for _ in range(num_layers)]
    content, expected, kind = None, None, "search"
    if case == 0:
        content, expected = {"stacks": {"decoder": {"num_layers": num_layers, "kept": {str(depth): right}}}}, right
    elif case == 1:  # a list one layer short
        content = {"stacks": {"decoder": {"num_layers": num_layers, "kept": {str(depth): right[:-1]}}}}
    elif case == 2:
        content = [1, 2, 3]
    elif case == 3:
        content = {"stacks": None}
    elif case == 4:
        content = {"stacks": {"decoder": {"num_layers": num_layers, "kept": {str(depth): "0,1"}}}}
    elif case == 5:
        content = {"stacks": {"decoder": {"num_layers": num_layers + 1, "kept": {str(depth): right}}}}
    elif case == 6:
        kind, content = "contribution", {"stacks": {"decoder": {"scores": scores}}}
        expected = sorted(sorted(range(num_layers), key=lambda i: (-scores[i], i))[:depth])
    elif case == 7:
        kind, content = "contribution", {"stacks": {"decoder": {"scores": [str(s) for s in scores]}}}
    elif case == 8:
        kind, content = "contribution", {"stacks": {"decoder": {"scores": scores[:-1] + [float("nan")]}}}
    elif case == 9:
        kind, content = "contribution", {"stacks": {"decoder": {"scores": scores + [0.5]}}}
    elif case == 10:
        path.write_text("{not json")
        return f"{kind}:{path}", None
    else:
        return f"{kind}:{path}", None  # no such file
    path.write_text(json.dumps(content))
    return f"{kind}:{path}", expected


def random_case(rng, tmp_path):
    """(argv, num_layers, logits, expected kept list or None for a refusal or "any" for a valid depth)."""
    num_layers = rng.randint(1, 8)
    logits = [round(rng.uniform(-2, 2), 3) for _ in range(num_layers)]
    if rng.random() < 0.1:
        logits = [0.0] * num_layers  # untrained gates
    flag = rng.choice(FLAGS[:4])
    if "keep" in flag:
        size = rng.randint(0, num_layers + 1)
        items = [str(rng.randrange(-1, num_layers + 2)) for _ in range(size)]
        if rng.random() < 0.1:
            items.append(rng.choice(["x", "1.5", " ", "2-3"]))
        text = ",".join(items)
        layers = [int(i) for i in items] if all(i.lstrip("-").isdigit() for i in items) else None
        valid = layers and len(set(layers)) == len(layers) and all(0 <= i < num_layers for i in layers)
        return [f"{flag}={text}"], num_layers, logits, layers if valid else None
    depth = rng.randint(-1, num_layers + 2)
    strategy = rng.choice(["every-other", "alternate", "top", "bottom", "symmetric", "learned", *["file"] * 8,
                           "top:foo", "middle", "search:", "learned:x"])
    expected = "any" if 1 <= depth <= num_layers else None
    if strategy == "file":
        strategy, listed = strategy_files(rng, tmp_path, num_layers, depth)
        expected = listed if expected else None
    elif strategy in ("top:foo", "middle", "search:", "learned:x"):
        expected = None
    elif strategy == "learned":
        if len(set(logits)) == 1 and depth < num_layers:
            expected = None
        elif expected:
            expected = sorted(sorted(range(num_layers), key=lambda i: (logits[i], i))[:depth])
    elif expected:
        expected = {"top": list(range(depth)), "bottom": list(range(num_layers - depth, num_layers)),
                    "every-other": [math.floor(i * num_layers / depth) for i in range(depth)],
                    "alternate": [math.floor(i * num_layers / depth) for i in range(depth)],
                    "symmetric": list(range((depth + 1) // 2)) + list(range(num_layers - depth // 2, num_layers)),
                    }[strategy]
    return [f"{flag}={depth}", f"--prune-strategy={strategy}"], num_layers, logits, expected


def test_random_pruning_requests_refuse_naming_the_flag_or_file_or_prune_exactly_as_asked(tmp_path):
    rng = random.Random(13)
    parser = build_parser()
    refused = pruned = 0
    for case in range(400):
        argv, num_layers, logits, expected = random_case(rng, tmp_path)
        state = checkpoint(num_layers, logits)
        options = parser.parse_args(["in.pt", "out.pt", *argv])
        where = f"case {case}: {shlex.join(argv)} on {num_layers} layers"
        try:
            kept = prune_checkpoint(state, options)
        except PruningError as error:
            message = str(error)
            assert expected is None, f"{where}: refused ({message}) but should give {expected}"
            named = [f for f in FLAGS if f in message] + [p for p in argv if ".json" in p and p.split(":", 1)[1] in message]
            assert named, f"{where}: the refusal names no flag or file: {message}"
            refused += 1
            continue
        assert expected is not None, f"{where}: accepted ({kept}) but should be refused"
        depth = len(kept["decoder"])
        if expected != "any":
            assert kept["decoder"] == expected, where
        else:
            assert depth == int(argv[0].split("=")[1]) and len(set(kept["decoder"])) == depth, where
        assert kept_in(state) == kept["decoder"], where  # the weights are those of the kept layers, in order
        assert state["cfg"]["model"]["decoder_layers"] == depth, where
        gates = [state["model"][f"decoder.layers.{j}.{GATE_PARAMETER}"].item() for j in range(depth)]
        assert gates == pytest.approx([logits[i] for i in kept["decoder"]]), where
        pruned += 1
    assert refused > 100 and pruned > 50, (refused, pruned)  # both outcomes were exercised
