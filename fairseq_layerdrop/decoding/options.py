"""The decoding options of the plugin's tasks: early exit and self-speculative decoding.

LayerSkip (Elhoushi et al., ACL 2024, arXiv 2404.16710) exits a decoder early, after its first E
layers, through the model's own output head; and decodes *self-speculatively*: the first E layers
draft K tokens, the whole model checks them in one pass, and the output is exactly the full model's
greedy output.

    --early-exit E                          decode with decoder layers 0..E-1 and the output head
    --self-speculative E --draft-tokens K   draft K tokens with the first E layers, verify with all

The checks here need no model: they run when the task is set up, before any checkpoint or data
is read. The checks against the model's depth run when the model is built (``check_exit_depth``).
"""

from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass


@dataclass
class DecodingOptions(FairseqDataclass):
    early_exit: Optional[int] = field(
        default=None,
        metadata={"help": "decode with the first E decoder layers and the output head (LayerSkip's early exit; "
                          "the same as pruning the decoder to layers 0..E-1)"},
    )
    self_speculative: Optional[int] = field(
        default=None,
        metadata={"help": "self-speculative greedy decoding (LayerSkip): draft with the first E decoder layers, "
                          "verify with the whole model; output identical to --beam 1. Needs --draft-tokens"},
    )
    draft_tokens: Optional[int] = field(
        default=None, metadata={"help": "tokens drafted per verification with --self-speculative (K >= 1)"}
    )


class DecodingOptionError(ValueError):
    """A bad --early-exit, --self-speculative or --draft-tokens; the message names the flag."""


def _get(cfg, name):
    try:
        return getattr(cfg, name, None)
    except Exception:  # an omegaconf struct without the key
        return None


def _positive(value, flag):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            text = str(value).strip()
            value = int(text)
        except ValueError:
            raise DecodingOptionError(f"{flag} must be a whole number of layers or tokens, got {value!r}") from None
    if value < 1:
        raise DecodingOptionError(f"{flag} must be at least 1, got {value}")
    return value


def check_decoding_options(cfg):
    """Validate the options without a model; return ``(early_exit, self_speculative, draft_tokens)``."""
    early = _positive(_get(cfg, "early_exit"), "--early-exit")
    exit_layer = _positive(_get(cfg, "self_speculative"), "--self-speculative")
    draft = _positive(_get(cfg, "draft_tokens"), "--draft-tokens")
    if exit_layer is not None and draft is None:
        raise DecodingOptionError("--self-speculative E needs --draft-tokens K (how many tokens to draft per "
                                  "verification, e.g. --draft-tokens 4)")
    if draft is not None and exit_layer is None:
        raise DecodingOptionError("--draft-tokens K needs --self-speculative E (the decoder layer to draft from)")
    if early is not None and exit_layer is not None:
        raise DecodingOptionError("--early-exit and --self-speculative exclude each other: --early-exit E decodes "
                                  "with E layers only, --self-speculative E drafts with them and verifies with all")
    return early, exit_layer, draft


def check_exit_depth(value, flag, depth, allow_full):
    """Refuse an exit layer beyond the decoder's ``depth`` (or at it, for self-speculation), naming ``flag``."""
    top = depth if allow_full else depth - 1
    if top < 1:
        raise DecodingOptionError(f"{flag}: the decoder has {depth} layer(s); self-speculation needs at least 2")
    if not 1 <= value <= top:
        what = "its layers" if allow_full else "the layers below its top one (the rest verifies the drafts)"
        raise DecodingOptionError(f"{flag} {value}: the decoder has {depth} layers, so choose 1 to {top} ({what})")
