"""Which layers to keep when pruning a stack of N layers to R: each strategy returns a kept-layer list.

The kept-layer list is the single currency of pruning: every strategy produces one and every
consumer (the tasks' pruning options, export, depth sweep) takes one. Strategies register by
name, so later ones (learned, searched, contribution-based) plug in without touching callers.
A strategy is ``fn(num_layers, keep, **context) -> list``; ``context`` carries what data-driven
strategies need (``stack``, ``state_dict``, ``cfg``, ...) and simple ones ignore it. A strategy
named ``name:ARGUMENT`` (``search:result.json``) gets ``argument="ARGUMENT"`` in its context.
"""

from typing import Callable, Dict, List, Tuple

from .state_dict import PruningError, check_kept_layers

STRATEGIES: Dict[str, Callable[..., List[int]]] = {}
NEEDS: Dict[str, Tuple[str, ...]] = {}  # the context entries a strategy cannot work without
# the strategies whose name takes ``:ARGUMENT``; for the others ``top:foo`` is refused, not ignored
TAKES_ARGUMENT = set()


def register_strategy(*names, needs: Tuple[str, ...] = ()):
    def register(fn):
        for name in names:
            if name in STRATEGIES:
                raise ValueError(f"pruning strategy {name!r} is already registered")
            STRATEGIES[name] = fn
            NEEDS[name] = tuple(needs)
            if "argument" in needs:
                TAKES_ARGUMENT.add(name)
        return fn
    return register


@register_strategy("every-other", "alternate")
def every_other(num_layers: int, keep: int, **context) -> List[int]:
    """Evenly spaced layers (Fan et al. 2019 "every other"; Sajjad et al. 2020 "alternate").

    Keeps layer floor(i * N / R) for i < R: for 16 -> 8 that is 0, 2, ..., 14, the list of
    fairseq's LayerDrop README. The bottom layer, which reads the embeddings, is always kept;
    with LayerDrop every layer was trained to work without its neighbours, so which end of
    the gap is kept matters little, and starting at 0 makes the lists nest as R halves.
    """
    return [i * num_layers // keep for i in range(keep)]


@register_strategy("top")
def top(num_layers: int, keep: int, **context) -> List[int]:
    """Drop the top N - R layers, keep 0..R-1 (Sajjad et al. 2020, arXiv 2004.03844: their best)."""
    return list(range(keep))


@register_strategy("bottom")
def bottom(num_layers: int, keep: int, **context) -> List[int]:
    """Drop the bottom N - R layers, keep N-R..N-1 (Sajjad et al. 2020)."""
    return list(range(num_layers - keep, num_layers))


@register_strategy("symmetric")
def symmetric(num_layers: int, keep: int, **context) -> List[int]:
    """Drop N - R layers from the middle outwards, keeping ceil(R/2) bottom and floor(R/2) top layers
    (Sajjad et al. 2020)."""
    low = (keep + 1) // 2
    return list(range(low)) + list(range(num_layers - (keep - low), num_layers))


def check_strategy_request(strategy: str, num_layers: int, keep: int, stack: str = "decoder",
                           flag: str = "--prune-strategy") -> None:
    """Refuse an unknown strategy, an argument a strategy does not take, or a target depth outside 1..N
    (naming ``flag``, the option the strategy came from)."""
    name, colon, argument = str(strategy).partition(":")
    if name not in STRATEGIES:
        raise PruningError(f"{flag}: unknown pruning strategy {strategy!r}; "
                           f"choose from {', '.join(sorted(STRATEGIES))}")
    if colon and name not in TAKES_ARGUMENT:
        raise PruningError(f"{flag} {strategy}: {name!r} takes no ':{argument}'; give {flag} {name}")
    if name in TAKES_ARGUMENT and not argument:
        raise PruningError(f"{flag} {strategy}: pruning strategy {name!r} needs a file: "
                           f"{flag} {name}:PATH")
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= num_layers:
        raise PruningError(
            f"cannot prune the {stack} to {keep!r} layers: it has {num_layers}, so choose 1 to {num_layers}"
        )


def kept_layers(strategy: str, num_layers: int, keep: int, stack: str = "decoder", flag: str = "--prune-strategy",
                **context) -> List[int]:
    """The kept-layer list of ``strategy`` for pruning the ``stack``'s ``num_layers`` layers to ``keep``.

    Whatever the strategy (a file it reads included), the result is checked: ``keep`` distinct
    layers of the stack, or a ``PruningError`` naming the strategy.
    """
    check_strategy_request(strategy, num_layers, keep, stack, flag)
    name, _, argument = strategy.partition(":")
    if argument:
        context["argument"] = argument
    missing = [need for need in NEEDS[name] if context.get(need) is None]
    if missing:
        raise PruningError(f"pruning strategy {name!r} needs {', '.join(missing)}")
    layers = STRATEGIES[name](num_layers, keep, stack=stack, **context)
    if not isinstance(layers, (list, tuple)):
        raise PruningError(f"{flag} {strategy} gave {layers!r} for the {stack}, not a list of layers")
    try:
        layers = check_kept_layers(layers, num_layers, stack)
    except PruningError as error:
        raise PruningError(f"--prune-strategy {strategy}: {error}") from None
    if len(layers) != keep:
        raise PruningError(f"--prune-strategy {strategy} gave {len(layers)} layers {layers} for the {stack} "
                           f"at depth {keep}: it must give exactly {keep}")
    return layers
