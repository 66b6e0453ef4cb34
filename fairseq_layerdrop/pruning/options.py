"""The pruning options (the tasks', the export's and the plugin architectures') and how they
become one request per stack.

Fan et al. (arXiv 1909.11556) prune a trained model at inference by keeping a subset of its
layers, without finetuning. The options say which: explicit lists, or a target depth and a
strategy. fairseq's own ``*_layers_to_keep`` model fields, when set (``--model-overrides``, or a
``transformer`` model's own flag in ``fairseq-train``), are read as these options too. A refusal names the
option as it was given: the flag (``--prune-to``) on a command line, the keyword (``prune_to=5``) in the hub.
"""

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Optional

from fairseq.dataclass import FairseqDataclass

from ..compat import hub_keywords
from .state_dict import PruningError, config_get, config_has, config_set, parse_layer_list
from .strategies import check_strategy_request, kept_layers


@dataclass
class PruningOptions(FairseqDataclass):
    encoder_layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "encoder layers to keep, e.g. 0,2,4 (0-based; order is kept; no repeats)"}
    )
    decoder_layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "decoder layers to keep, e.g. 1,3,5 (0-based; order is kept; no repeats)"}
    )
    layers_to_keep: Optional[str] = field(
        default=None, metadata={"help": "layers to keep in every stack (the decoder of a language model)"}
    )
    prune_to: Optional[int] = field(
        default=None, metadata={"help": "prune every stack to this many layers, chosen by --prune-strategy"}
    )
    encoder_prune_to: Optional[int] = field(default=None, metadata={"help": "prune the encoder to this many layers"})
    decoder_prune_to: Optional[int] = field(default=None, metadata={"help": "prune the decoder to this many layers"})
    prune_strategy: Optional[str] = field(
        default=None,
        metadata={"help": "how --prune-to chooses layers: every-other (the default; alias alternate), top, bottom, "
                         "symmetric; data-driven: learned, search:RESULT.json, contribution:SCORES.json"},
    )


PRUNING_FIELDS = tuple(f for f in PruningOptions.__dataclass_fields__ if f not in FairseqDataclass.__dataclass_fields__)
DEPTH_FIELDS = ("prune_to", "encoder_prune_to", "decoder_prune_to")  # what --prune-strategy chooses the layers for
LIST_FIELDS = ("layers_to_keep", "encoder_layers_to_keep", "decoder_layers_to_keep")
_FLAGS = re.compile(r"--(" + "|".join(f.replace("_", "-") for f in PRUNING_FIELDS + ("early_exit",)) + r")(?![\w-])")


def as_keywords(message: str) -> str:
    """``message`` with the pruning options' flags (``--prune-to``) written as the hub's keywords (``prune_to``)."""
    return _FLAGS.sub(lambda m: m.group(1).replace("-", "_"), message)


class Request:
    """What to keep of one stack: an explicit list, or a depth and a strategy."""

    def __init__(self, stack, layers=None, depth=None, strategy=None, source="", keywords=False):
        self.stack, self.layers, self.depth, self.strategy, self.source = stack, layers, depth, strategy, source
        self.keywords = keywords  # given to the hub: name the options as its keywords

    def kept(self, num_layers: int, **context):
        """The kept-layer list for a stack of ``num_layers``; a ``PruningError`` names the flag it came from."""
        with self.naming_the_flag():
            if self.layers is not None:
                return parse_layer_list(self.layers, self.stack, num_layers)
            return kept_layers(self.strategy, num_layers, self.depth, stack=self.stack, **context)

    def check_depth(self, num_layers: int) -> int:
        """The depth this request prunes a stack of ``num_layers`` to, checked before anything is built."""
        with self.naming_the_flag():
            if self.layers is not None:
                return len(parse_layer_list(self.layers, self.stack, num_layers))
            check_strategy_request(self.strategy, num_layers, self.depth, self.stack)
            return self.depth

    @contextmanager
    def naming_the_flag(self):
        try:
            yield
        except PruningError as error:
            message = str(error)
            if message.startswith("--") and not self.keywords:  # it names its flag already (--prune-strategy ...)
                raise
            if not message.startswith("--"):
                message = f"{self.source}: {message}"
            raise PruningError(as_keywords(message) if self.keywords else message) from None


def pruning_requests(options, model_cfg, stacks) -> Dict[str, Request]:
    """Read the task options (and fairseq's model-level ``*_layers_to_keep``) into one request per stack."""
    requests = {}
    strategy = config_get(options, "prune_strategy") or "every-other"
    keywords = hub_keywords() is not None

    def named(field, value):  # how the user gave the option: a flag, or a keyword of the hub
        return f"{field}={value!r}" if keywords else "--" + field.replace("_", "-")

    def put(stack, request):
        if stack in requests:
            raise PruningError(
                f"the {stack} is pruned twice: by {requests[stack].source} and by {request.source}; give one"
            )
        requests[stack] = request

    for stack in ("encoder", "decoder"):
        explicit = config_get(options, f"{stack}_layers_to_keep")
        model_level = config_get(model_cfg, f"{stack}_layers_to_keep")
        if explicit is None and model_level not in (None, "", []):
            explicit = model_level
        if explicit is not None:
            put(stack, Request(stack, layers=explicit, source=named(f"{stack}_layers_to_keep", explicit),
                               keywords=keywords))
        depth = _as_depth(config_get(options, f"{stack}_prune_to"))
        if depth is not None:
            put(stack, Request(stack, depth=depth, strategy=strategy, keywords=keywords,
                               source=named(f"{stack}_prune_to", config_get(options, f"{stack}_prune_to"))))
    for stack in stacks:
        if config_get(options, "layers_to_keep") is not None:
            put(stack, Request(stack, layers=config_get(options, "layers_to_keep"), keywords=keywords,
                               source=named("layers_to_keep", config_get(options, "layers_to_keep"))))
        if config_get(options, "prune_to") is not None:
            put(stack, Request(stack, depth=_as_depth(config_get(options, "prune_to")), strategy=strategy,
                               source=named("prune_to", config_get(options, "prune_to")), keywords=keywords))
    early_exit = config_get(options, "early_exit")  # the task's --early-exit E: the decoder's first E layers
    if early_exit is not None and "decoder" in stacks:
        put("decoder", Request("decoder", layers=",".join(map(str, range(int(early_exit)))),
                               source=named("early_exit", early_exit), keywords=keywords))
    for stack in requests:
        if stack not in stacks:
            raise PruningError(f"{requests[stack].source}: this model has no {stack}")
    return requests


def _as_depth(value):
    """A depth given as text (``prune_to="3"``: fairseq's overrides and the hub's keyword arguments
    pass values as they are given) becomes an int; anything else is left for the depth check to refuse."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def clear_pruning_options(cfg) -> None:
    """Set every pruning option (and fairseq's ``*_layers_to_keep``) present in ``cfg`` to None,
    so that nothing downstream prunes a second time (nor finds a strategy without its depth)."""
    for name in PRUNING_FIELDS:
        if config_has(cfg, name) and config_get(cfg, name) is not None:
            config_set(cfg, name, None)


def check_strategy_has_a_depth(options) -> None:
    """Refuse ``--prune-strategy`` given without a depth for it to choose the layers of (``--prune-to``,
    ``--encoder-prune-to``, ``--decoder-prune-to``): nothing would read it. For a command line's options, at
    start; not for a checkpoint's saved ones, which may keep a strategy whose depth was used and cleared."""
    strategy = config_get(options, "prune_strategy")
    if strategy is None or any(config_get(options, name) is not None for name in DEPTH_FIELDS):
        return
    lists = [f"--{name.replace('_', '-')}" for name in LIST_FIELDS if config_get(options, name) not in (None, "", [])]
    remedy = (f"{' and '.join(lists)} {'lists' if len(lists) == 1 else 'list'} the kept layers; drop --prune-strategy"
              if lists else f"add --prune-to R to keep R layers chosen by {strategy}, or drop --prune-strategy")
    raise PruningError(f"--prune-strategy {strategy} is given without --prune-to, --encoder-prune-to or "
                       f"--decoder-prune-to, so it would be ignored: {remedy}")
