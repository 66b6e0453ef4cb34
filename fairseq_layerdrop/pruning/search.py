"""Search on validation (Fan et al. arXiv 1909.11556, "search on valid"): the kept list that scores best.

For a target depth R of a stack of N layers: every subset when C(N, R) fits the evaluation budget,
otherwise a beam search over removals (beam 1 is greedy: drop, one at a time, the layer whose
removal hurts least). The result is saved as JSON, and ``--prune-strategy search:RESULT.json``
reads it back, so the tasks, the export and the depth sweep take it like any other strategy.
"""

import itertools
import json
import math
from typing import Callable, Dict, List, Sequence, Tuple

from .state_dict import PruningError
from .strategies import register_strategy

Candidate = Tuple[int, ...]


def removal_search_cost(num_layers: int, keep: int, beam: int) -> int:
    """Upper bound on the evaluations of a beam search over removals from N down to R layers."""
    return sum(min(beam * size, math.comb(num_layers, size - 1)) for size in range(keep + 1, num_layers + 1))


def search_plan(num_layers: int, keep: int, budget: int = 100, beam: int = 1) -> Tuple[str, int, int]:
    """How the search for ``keep`` of ``num_layers`` layers runs within ``budget``: ``("exhaustive", 0,
    subsets)`` or ``("beam", width, most evaluations)``; a PruningError naming the flag for a request it cannot
    serve (checked before any scoring)."""
    if not 1 <= keep <= num_layers:
        raise PruningError(f"--keep must be in 1..{num_layers}, got {keep}")
    if budget < 1 or beam < 1:
        raise PruningError(f"--budget and --beam must be at least 1 (got {budget} and {beam})")
    subsets = math.comb(num_layers, keep)
    if subsets <= budget:
        return "exhaustive", 0, subsets
    width = beam
    while width > 1 and removal_search_cost(num_layers, keep, width) > budget:
        width -= 1
    total = removal_search_cost(num_layers, keep, width)
    if total > budget:
        raise PruningError(f"--budget {budget} is too small: C({num_layers},{keep}) = {subsets} subsets, and a greedy "
                           f"search over removals needs {total} evaluations")
    return "beam", width, total


def search_kept_layers(
    num_layers: int, keep: int, evaluate: Callable[[List[int]], float], budget: int = 100, beam: int = 1,
    progress: Callable[[str], None] = print,
) -> Tuple[List[int], List[dict]]:
    """The kept list of ``keep`` layers with the lowest ``evaluate(kept)``, and every evaluated candidate.

    Exhaustive if C(N, R) <= ``budget``; otherwise a beam search over removals, whose width is
    reduced (with a note) until its cost fits the budget. Each evaluated candidate is a dict
    (``kept``, ``score``, ``method``, ``step``).
    """
    method, width, total = search_plan(num_layers, keep, budget, beam)
    evaluated: Dict[Candidate, dict] = {}

    def score(candidate: Candidate, method: str, step: int, total: int) -> float:
        if candidate not in evaluated:
            value = float(evaluate(list(candidate)))
            evaluated[candidate] = {"kept": list(candidate), "score": value, "method": method, "step": step}
            best = min(evaluated.values(), key=lambda c: c["score"])
            progress(f"[{len(evaluated)}/{total}] {method} step {step}: keep {','.join(map(str, candidate))} -> "
                     f"{value:.4f} (best {best['score']:.4f}: {','.join(map(str, best['kept']))})")
        return evaluated[candidate]["score"]

    if method == "exhaustive":
        progress(f"exhaustive search: {total} subsets of {keep} of {num_layers} layers")
        best = min(itertools.combinations(range(num_layers), keep), key=lambda c: score(c, "exhaustive", 0, total))
        return list(best), list(evaluated.values())

    if width != beam:
        progress(f"note: beam {beam} would exceed --budget {budget}; using beam {width}")
    progress(f"beam search over removals (beam {width}): at most {total} evaluations")
    level: List[Candidate] = [tuple(range(num_layers))]
    for step, size in enumerate(range(num_layers - 1, keep - 1, -1), 1):
        children = list(dict.fromkeys(c[:j] + c[j + 1:] for c in level for j in range(len(c))))
        level = sorted(children, key=lambda c: (score(c, "beam", step, total), c))[:width]
    return list(level[0]), list(evaluated.values())


def check_search_result(path: str, stack: str, num_layers: int, flag: str = "--out"):
    """The search result already at ``path`` (None if none), if results for a ``stack`` of ``num_layers`` can be
    added to it; a PruningError naming ``flag`` otherwise (checked before the search, not after)."""
    from .contribution import existing_result

    try:
        result = existing_result(path, flag)
    except ValueError as error:
        raise PruningError(str(error)) from None
    entry = (result or {}).get("stacks", {}).get(stack)
    if entry is not None and (not isinstance(entry, dict) or entry.get("num_layers") != num_layers):
        found = entry.get("num_layers") if isinstance(entry, dict) else entry
        raise PruningError(f"{flag} {path} holds results for a {stack} of {found} layers, not {num_layers}: "
                           f"give another --out for this checkpoint")
    return result


def save_search_result(path: str, stack: str, num_layers: int, keep: int, kept: Sequence[int], score: float,
                       metric: str, checkpoint: str) -> None:
    """Add (or replace) the result for (stack, keep) in the JSON file at ``path``."""
    result = check_search_result(path, stack, num_layers) or {"checkpoint": checkpoint, "metric": metric,
                                                                "stacks": {}}
    entry = result["stacks"].setdefault(stack, {"num_layers": num_layers, "kept": {}, "score": {}})
    entry["kept"][str(keep)] = list(kept)
    entry["score"][str(keep)] = score
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


@register_strategy("search", needs=("argument",))
def searched(num_layers: int, keep: int, stack: str = "decoder", argument=None, **context) -> List[int]:
    """``search:RESULT.json``: the kept list that ``fairseq-layerdrop search`` saved for this stack and depth.

    The file is checked as it is read (an object with ``stacks.STACK.num_layers`` and
    ``stacks.STACK.kept.DEPTH`` lists); ``kept_layers`` then checks the list itself (``keep``
    distinct layers of the stack).
    """
    flag = f"--prune-strategy search:{argument}"
    try:
        with open(argument) as f:
            result = json.load(f)
    except (OSError, ValueError) as error:
        raise PruningError(f"{flag}: cannot read a search result ({error})") from None
    stacks = result.get("stacks") if isinstance(result, dict) else None
    if not isinstance(stacks, dict):
        raise PruningError(f"{flag}: not a search result (expected a JSON object with \"stacks\"); "
                           "write it with fairseq-layerdrop search")
    entry = stacks.get(stack)
    if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("kept"), dict)
                                  and type(entry.get("num_layers")) is int):
        raise PruningError(f"{flag}: the {stack} entry is malformed (expected num_layers and kept); "
                           "write it with fairseq-layerdrop search")
    if entry is None or str(keep) not in entry["kept"]:
        have = sorted((str(k) for k in (entry or {}).get("kept", {})), key=lambda k: (not k.isdigit(), k.zfill(9)))
        raise PruningError(f"{flag} has no result for the {stack} at depth {keep} "
                           f"(it has depths [{', '.join(have)}]); run fairseq-layerdrop search --stack {stack} --keep {keep}")
    if entry["num_layers"] != num_layers:
        raise PruningError(f"{flag} was searched on a {stack} of {entry['num_layers']} "
                           f"layers; this one has {num_layers}")
    kept = entry["kept"][str(keep)]
    if not isinstance(kept, list):
        raise PruningError(f"{flag}: the {stack}'s entry for depth {keep} is {kept!r}, not a list of layers")
    return kept
