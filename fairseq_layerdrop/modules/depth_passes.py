"""Which sub-network each forward pass of in-place depth distillation runs (the sandwich rule).

Yu & Huang (*Universally Slimmable Networks*, ICCV 2019, arXiv 1903.05134) train, at every step, the
full network on the labels and some sub-networks on the full network's predictions ("in-place
distillation"; the "sandwich rule" always includes the smallest one). Here a sub-network is a choice of
layers of each stack, made one of two ways:

- the LayerDrop draw of the model (``--decoder-layerdrop P`` ...), with the pass's own index, as LR-Drop's
  second pass (``seeded_draw.layer_uniforms``);
- a menu of the depths you will deploy, ``--depth-menu 2,4,6`` (``ENC:DEC`` pairs for translation,
  ``6:3,3:3``; a plain number sets every stack), with a pruning strategy (``--menu-strategy every-other``):
  a pass then runs exactly the layers that pruning to that depth keeps (SoFT, arXiv 2309.08968, trains
  nested depths the same way). Which entry a pass takes is a seeded draw, a pure function of (seed,
  update, micro-batch, pass), so every worker agrees and a resumed run repeats it.

Pass 0 is the full network: every layer, no LayerDrop. ``depth_pass`` sets the stacks for one pass; a
sub-network pass runs only its layers (``SeededLayerDropList.forced_kept``), which is where its speed-up
comes from. Every pass is written to the draws log (``--layerdrop-draws-log``) with its index.
"""

import contextlib
from typing import Dict, List, Optional, Sequence

from .layer_drop import SeededLayerDropList
from .seeded_draw import layer_uniforms
from ..pruning.strategies import STRATEGIES

MENU_STRATEGIES = ("every-other", "top", "bottom", "symmetric")
MENU_SAMPLINGS = ("random", "sandwich")
MENU_DRAW = "depth_menu"  # the draw's name, distinct from every stack's


def parse_depth_menu(text: str, depths: Dict[str, int], flag: str = "--depth-menu") -> List[Dict[str, int]]:
    """The menu ``text`` as one ``{stack: depth}`` per entry, checked against the stacks' ``depths``.

    ``"2,4,6"``: each number is every stack's depth. ``"6:3,3:3"``: ``ENCODER:DECODER`` for a model with an
    encoder and a decoder (in the order of ``depths``).
    """
    names = list(depths)
    entries = [e.strip() for e in str(text).split(",")]
    if not entries or any(not e for e in entries):
        raise ValueError(f"{flag} needs a comma-separated list of depths, e.g. {flag} 2,4,6; got {text!r}")
    menu = []
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (1, len(names)):
            example = ":".join(str(depths[n] // 2 or 1) for n in names)
            raise ValueError(f"{flag} {text}: {entry!r} is not a depth or a {':'.join(n.upper() for n in names)} "
                             f"pair (e.g. {example})")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{flag} {text}: {entry!r} is not a whole number of layers") from None
        if len(values) == 1:
            values = values * len(names)
        for name, value in zip(names, values):
            if not 1 <= value <= depths[name]:
                raise ValueError(f"{flag} {text}: the {name} has {depths[name]} layers, so each of its depths must "
                                 f"be in 1..{depths[name]}; got {value}")
        menu.append(dict(zip(names, values)))
    return menu


def check_menu_strategy(strategy: str, flag: str = "--menu-strategy") -> str:
    if strategy not in MENU_STRATEGIES:
        raise ValueError(f"{flag} must be one of {', '.join(MENU_STRATEGIES)} (the pruning strategies that need no "
                         f"data), got {strategy!r}")
    return strategy


def check_menu_sampling(sampling: str, flag: str = "--menu-sampling") -> str:
    if sampling not in MENU_SAMPLINGS:
        raise ValueError(f"{flag} must be one of {', '.join(MENU_SAMPLINGS)}, got {sampling!r}")
    return sampling


def menu_entry(menu: Sequence[Dict[str, int]], sampling: str, seed: int, update: int, micro_batch: int,
               pass_index: int) -> Dict[str, int]:
    """The entry sub-network pass ``pass_index`` (1, 2, ...) takes: uniform over the menu, a pure function of
    the arguments; with ``sandwich`` sampling pass 1 always takes the smallest entry (Yu & Huang's rule)."""
    if sampling == "sandwich" and pass_index == 1:
        return min(menu, key=lambda e: (sum(e.values()), tuple(e.values())))
    u = float(layer_uniforms(1, seed, update, micro_batch, MENU_DRAW, pass_index)[0])
    return menu[min(int(u * len(menu)), len(menu) - 1)]


def menu_kept(entry: Dict[str, int], strategy: str, depths: Dict[str, int]) -> Dict[str, List[int]]:
    """The layers each stack keeps at ``entry``'s depths: exactly what pruning with ``strategy`` keeps."""
    return {name: STRATEGIES[strategy](depths[name], entry[name]) for name in depths}


@contextlib.contextmanager
def depth_pass(stacks: Sequence[SeededLayerDropList], kept: Optional[Dict[str, List[int]]], pass_index: int,
               last: bool):
    """Run the next forward as pass ``pass_index``: ``kept`` layers per stack (None: the LayerDrop draw of the
    pass); ``last``: the micro-batch's draw count advances after it."""
    try:
        for stack in stacks:
            stack.forced_kept = None if kept is None else list(kept[stack.stack])
            stack.pass_index, stack.hold_micro_batch, stack.pass_label = pass_index, not last, pass_index
        yield
    finally:
        for stack in stacks:
            stack.forced_kept, stack.pass_index, stack.hold_micro_batch, stack.pass_label = None, 0, False, None
