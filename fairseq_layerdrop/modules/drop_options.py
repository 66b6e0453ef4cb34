"""The structured-LayerDrop training options, and how they become one stack's seeded drop list.

``--encoder-layerdrop P`` / ``--decoder-layerdrop P`` (fairseq's names) set each stack's rate;
these options say what is dropped and how the rate varies over depth (Fan et al., arXiv 1909.11556):

    --layerdrop-structure layer|sublayer|attention|ffn|head|head+layer
    --layerdrop-schedule uniform|linear|linear-reverse|exponential|progressive
    --layerdrop-ramp-updates T                    LayerSkip's time ramp exp(t ln2 / T) - 1 of the rates
    --layerdrop-pld-gamma G                       Progressive Layer Dropping's gamma (progressive)
    --decoder-layerdrop-rates 0,0.1,0.2,...       an explicit rate per layer
    --decoder-layerdrop-protect 0,11              layers never dropped (Fan et al., Fig. 5)
    --decoder-layerdrop-target-depth 6            sets the rate to p* = 1 - 6 / N
    --layerdrop-draws-log FILE                    each step's decisions as JSON lines, per rank
    --layer-gates                                 learned per-layer rates (modules/layer_gates.py)

(and the same ``--encoder-*`` for encoder-decoder models). Bad input stops the model build with
a message naming the flag; the resolved rates are logged at start. The draws log is the training
command's: a model loaded from a checkpoint (fairseq-generate, -eval-lm, -validate, the hub) does not
reuse the path saved in it, unless the hub is given it again (``layerdrop_draws_log=FILE``).
"""

import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.utils import safe_getattr
from omegaconf import II

from .drop_schedule import PLD_GAMMA, SCHEDULES, layer_drop_rates, parse_number_list, rate_for_target_depth, rate_ramp
from .drop_structure import STRUCTURES, check_structure
from .layer_drop import attach_layerdrop, check_layerdrop_rate

logger = logging.getLogger(__name__)


@dataclass
class DecoderLayerDropOptions(FairseqDataclass):
    layerdrop_structure: str = field(
        default="layer", metadata={"help": f"what LayerDrop drops: {', '.join(STRUCTURES)} (Fan et al. Fig. 4)"}
    )
    layerdrop_schedule: str = field(
        default="uniform",
        metadata={"help": f"LayerDrop rate over depth: {', '.join(SCHEDULES)} (linear: 0 at the bottom to p at the top; "
                          "exponential: LayerSkip's (exp(l ln2 / (L-1)) - 1) p; progressive: Progressive Layer Dropping, "
                          "rate (i p / L)(1 - exp(-gamma t)) for layer i = 1..L at update t); see docs/early_exit.md"},
    )
    layerdrop_ramp_updates: Optional[int] = field(
        default=None, metadata={"help": "LayerSkip's time curriculum: multiply the LayerDrop rates by exp(t ln2 / T) - 1 "
                                        "at update t < T (0 at the start, the full rates from update T on)"}
    )
    layerdrop_pld_gamma: Optional[float] = field(
        default=None, metadata={"help": f"gamma of --layerdrop-schedule progressive (default {PLD_GAMMA}): the rates "
                                        "approach their final values as 1 - exp(-gamma t)"}
    )
    decoder_layerdrop_rates: Optional[str] = field(
        default=None, metadata={"help": "decoder LayerDrop rate of every layer, e.g. 0,0.1,0.2 (replaces the schedule)"}
    )
    decoder_layerdrop_protect: Optional[str] = field(
        default=None, metadata={"help": "decoder layers never dropped, e.g. 0,5"}
    )
    decoder_layerdrop_target_depth: Optional[int] = field(
        default=None, metadata={"help": "set --decoder-layerdrop to p* = 1 - R/N for the depth R you will prune to"}
    )
    layer_gates: bool = field(
        default=False,
        metadata={"help": "learn each layer's drop rate, mean = the stack's rate (data-driven pruning; "
                          "see modules/layer_gates.py); needs --layerdrop-structure layer and a uniform schedule"},
    )
    layerdrop_draws_log: Optional[str] = field(
        default=None, metadata={"help": "append each training step's drop decisions as JSON lines to FILE.rank<R>"}
    )
    ddp_backend: str = II("distributed_training.ddp_backend")
    criterion: Optional[str] = II("criterion._name")  # --layer-gates needs a gated criterion (checked at start)


@dataclass
class LayerDropOptions(DecoderLayerDropOptions):
    encoder_layerdrop_rates: Optional[str] = field(
        default=None, metadata={"help": "encoder LayerDrop rate of every layer, e.g. 0,0.1,0.2 (replaces the schedule)"}
    )
    encoder_layerdrop_protect: Optional[str] = field(
        default=None, metadata={"help": "encoder layers never dropped, e.g. 0,5"}
    )
    encoder_layerdrop_target_depth: Optional[int] = field(
        default=None, metadata={"help": "set --encoder-layerdrop to p* = 1 - R/N for the depth R you will prune to"}
    )


def stack_rates(args, stack: str, num_layers: int):
    """The per-layer rates of ``stack`` ("encoder"/"decoder") of ``num_layers`` layers, from the options."""
    flag = f"--{stack}-layerdrop"
    p = check_layerdrop_rate(safe_getattr(args, f"{stack}_layerdrop", 0.0) or 0.0, flag)
    depth = safe_getattr(args, f"{stack}_layerdrop_target_depth", None)
    if depth is not None:
        p = rate_for_target_depth(num_layers, depth, f"{flag}-target-depth")
        logger.info(f"{stack} LayerDrop rate from the target depth: p* = 1 - {depth}/{num_layers} = {p:.4f}")
    listed = safe_getattr(args, f"{stack}_layerdrop_rates", None)
    rates = parse_number_list(listed, f"{flag}-rates") if listed not in (None, "") else None
    protect = safe_getattr(args, f"{stack}_layerdrop_protect", None)
    protect = parse_number_list(protect, f"{flag}-protect", int) if protect not in (None, "") else []
    schedule = safe_getattr(args, "layerdrop_schedule", "uniform") or "uniform"
    return layer_drop_rates(num_layers, p, schedule, rates, protect, flag)


def stack_ramp(args):
    """The rates' factor over training (``drop_schedule.RateRamp``) the options ask for, checked."""
    schedule = safe_getattr(args, "layerdrop_schedule", "uniform") or "uniform"
    ramp = rate_ramp(schedule, safe_getattr(args, "layerdrop_ramp_updates", None),
                     safe_getattr(args, "layerdrop_pld_gamma", None))
    if not ramp.constant and safe_getattr(args, "layer_gates", False):
        raise ValueError("--layer-gates learns constant per-layer rates: drop --layerdrop-ramp-updates and "
                         "--layerdrop-schedule progressive")
    return ramp


def check_stack_options(args, stack: str) -> None:
    """Refuse bad options at start, against the configured depth (before any pruning)."""
    structure = check_structure(safe_getattr(args, "layerdrop_structure", "layer") or "layer")
    stack_ramp(args)
    rates = stack_rates(args, stack, safe_getattr(args, f"{stack}_layers"))
    heads = safe_getattr(args, f"{stack}_attention_heads", None)
    if structure in ("head", "head+layer") and any(r > 0 for r in rates) and heads is not None and int(heads) < 2:
        raise ValueError(
            f"--layerdrop-structure {structure} drops attention heads, but --{stack}-attention-heads is {heads}: "
            f"dropping the only head drops the whole attention block. Use --layerdrop-structure attention for that, "
            f"or give --{stack}-attention-heads 2 or more"
        )
    if any(r > 0 for r in rates) and safe_getattr(args, "ddp_backend", None) == "fully_sharded":
        raise ValueError(
            "LayerDrop is not supported with --ddp-backend fully_sharded: FSDP needs every rank to run every layer "
            "(fairseq issue 3875). Use --ddp-backend c10d or legacy_ddp, or set the LayerDrop rates to 0."
        )


def attach_stack_drop(stack_module, args, stack: str) -> None:
    """Give ``stack_module`` (a built fairseq encoder or decoder) the seeded drop list the options ask for."""
    structure = check_structure(safe_getattr(args, "layerdrop_structure", "layer") or "layer")
    num_layers = len(stack_module.layers)
    if num_layers != safe_getattr(args, f"{stack}_layers", num_layers):
        raise AssertionError("the stack must be built before its drop list")
    try:
        rates = stack_rates(args, stack, num_layers)
    except ValueError:
        # a model pruned on load has fewer layers than its training options describe; it is loaded to
        # evaluate (nothing drops) or to train on, at the options' mean rate
        full = check_layerdrop_rate(safe_getattr(args, f"{stack}_layerdrop", 0.0) or 0.0, f"--{stack}-layerdrop")
        rates = [full] * num_layers
        logger.info(f"{stack}: the LayerDrop options describe another depth than the {num_layers} layers built "
                    f"(pruned); using the uniform rate {full} for training")
    ramp = stack_ramp(args)
    logger.info(f"{stack} LayerDrop ({structure}): mean rate {sum(rates) / max(num_layers, 1):.4f}, "
                f"per layer [{', '.join(f'{r:.3f}' for r in rates)}]" + (f", {ramp.describe()}" if not ramp.constant else ""))
    attach_layerdrop(stack_module, p=safe_getattr(args, f"{stack}_layerdrop", 0.0) or 0.0,
                     seed=safe_getattr(args, "seed", 1), stack=stack, rates=rates, structure=structure,
                     draws_log=draws_log(args), ramp=ramp)


def draws_log(args) -> Optional[str]:
    """The ``--layerdrop-draws-log`` path of a model built to train, or given again to the hub; None for a model
    loaded from a checkpoint, whose saved path belongs to the training run (another process, maybe another
    machine): a hub model in training mode would otherwise append its draws to that run's log."""
    from ..compat import building_from_checkpoint
    from ..compat import hub_keywords

    path = safe_getattr(args, "layerdrop_draws_log", None)
    if path and building_from_checkpoint() and "layerdrop_draws_log" not in (hub_keywords() or {}):
        logger.info(f"not reusing the draws log saved in the checkpoint ({path}): it belongs to the training run")
        return None
    return path
