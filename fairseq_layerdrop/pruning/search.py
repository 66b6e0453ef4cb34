"""Search on validation (Fan et al. arXiv 1909.11556, "search on valid"): the kept list that scores best.

For a target depth R of a stack of N layers: every subset when C(N, R) fits the evaluation budget,
otherwise a beam search over removals (beam 1 is greedy: drop, one at a time, the layer whose
removal hurts least). The result is saved as JSON, and ``--prune-strategy search:RESULT.json``
reads it back, so the tasks, the export and the depth sweep take it like any other strategy.
"""

import itertools
import json
import math
import os
from typing import Callable, Dict, List, Sequence, Tuple

from .state_dict import PruningError
from .strategies import register_strategy

Candidate = Tuple[int, ...]


def removal_search_cost(num_layers: int, keep: int, beam: int) -> int:
    """Upper bound on the evaluations of a beam search over removals from N down to R layers."""
    return sum(min(beam * size, math.comb(num_layers, size - 1)) for size in range(keep + 1, num_layers + 1))


def search_kept_layers(
    num_layers: int, keep: int, evaluate: Callable[[List[int]], float], budget: int = 100, beam: int = 1,
    progress: Callable[[str], None] = print,
) -> Tuple[List[int], List[dict]]:
    """The kept list of ``keep`` layers with the lowest ``evaluate(kept)``, and every evaluated candidate.

    Exhaustive if C(N, R) <= ``budget``; otherwise a beam search over removals, whose width is
    reduced (with a note) until its cost fits the budget. Each evaluated candidate is a dict
    (``kept``, ``score``, ``method``, ``step``).
    """
    if not 1 <= keep <= num_layers:
        raise PruningError(f"--keep must be in 1..{num_layers}, got {keep}")
    if budget < 1 or beam < 1:
        raise PruningError(f"--budget and --beam must be at least 1 (got {budget} and {beam})")
    evaluated: Dict[Candidate, dict] = {}

    def score(candidate: Candidate, method: str, step: int, total: int) -> float:
        if candidate not in evaluated:
            value = float(evaluate(list(candidate)))
            evaluated[candidate] = {"kept": list(candidate), "score": value, "method": method, "step": step}
            best = min(evaluated.values(), key=lambda c: c["score"])
            progress(f"[{len(evaluated)}/{total}] {method} step {step}: keep {','.join(map(str, candidate))} -> "
                     f"{value:.4f} (best {best['score']:.4f}: {','.join(map(str, best['kept']))})")
        return evaluated[candidate]["score"]

    subsets = math.comb(num_layers, keep)
    if subsets <= budget:
        progress(f"exhaustive search: {subsets} subsets of {keep} of {num_layers} layers")
        best = min(itertools.combinations(range(num_layers), keep), key=lambda c: score(c, "exhaustive", 0, subsets))
        return list(best), list(evaluated.values())

    width = beam
    while width > 1 and removal_search_cost(num_layers, keep, width) > budget:
        width -= 1
    total = removal_search_cost(num_layers, keep, width)
    if total > budget:
        raise PruningError(f"--budget {budget} is too small: C({num_layers},{keep}) = {subsets} subsets, and a greedy "
                           f"search over removals needs {total} evaluations")
    if width != beam:
        progress(f"note: beam {beam} would exceed --budget {budget}; using beam {width}")
    progress(f"beam search over removals (beam {width}): at most {total} evaluations")
    level: List[Candidate] = [tuple(range(num_layers))]
    for step, size in enumerate(range(num_layers - 1, keep - 1, -1), 1):
        children = list(dict.fromkeys(c[:j] + c[j + 1:] for c in level for j in range(len(c))))
        level = sorted(children, key=lambda c: (score(c, "beam", step, total), c))[:width]
    return list(level[0]), list(evaluated.values())


def save_search_result(path: str, stack: str, num_layers: int, keep: int, kept: Sequence[int], score: float,
                       metric: str, checkpoint: str) -> None:
    """Add (or replace) the result for (stack, keep) in the JSON file at ``path``."""
    result = {"checkpoint": checkpoint, "metric": metric, "stacks": {}}
    if os.path.exists(path):
        with open(path) as f:
            result = json.load(f)
    entry = result["stacks"].setdefault(stack, {"num_layers": num_layers, "kept": {}, "score": {}})
    if entry["num_layers"] != num_layers:
        raise PruningError(f"{path} holds results for a {stack} of {entry['num_layers']} layers, not {num_layers}")
    entry["kept"][str(keep)] = list(kept)
    entry["score"][str(keep)] = score
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


@register_strategy("search", needs=("argument",))
def searched(num_layers: int, keep: int, stack: str = "decoder", argument=None, **context) -> List[int]:
    """``search:RESULT.json``: the kept list that ``fairseq-layerdrop search`` saved for this stack and depth."""
    try:
        with open(argument) as f:
            stacks = json.load(f)["stacks"]
    except (OSError, ValueError, KeyError) as error:
        raise PruningError(f"--prune-strategy search:{argument}: cannot read a search result ({error})") from None
    entry = stacks.get(stack)
    if entry is None or str(keep) not in entry["kept"]:
        have = sorted(int(k) for k in (entry or {}).get("kept", {}))
        raise PruningError(f"--prune-strategy search:{argument} has no result for the {stack} at depth {keep} "
                           f"(it has depths {have}); run fairseq-layerdrop search --stack {stack} --keep {keep}")
    if entry["num_layers"] != num_layers:
        raise PruningError(f"--prune-strategy search:{argument} was searched on a {stack} of {entry['num_layers']} "
                           f"layers; this one has {num_layers}")
    return entry["kept"][str(keep)]
