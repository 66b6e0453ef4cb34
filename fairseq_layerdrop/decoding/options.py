"""The decoding options of the plugin's tasks: early exit and self-speculative decoding.

LayerSkip (Elhoushi et al., ACL 2024, arXiv 2404.16710) exits a decoder early, after its first E
layers, through the model's own output head; and decodes *self-speculatively*: the first E layers
draft K tokens, the whole model checks them in one pass, and the output is exactly the full model's
greedy output.

    --early-exit E                          decode with decoder layers 0..E-1 and the output head
    --self-speculative E --draft-tokens K   draft K tokens with the first E layers, verify with all

The checks here need no model: they run when the task is set up, before any checkpoint or data
is read. The checks against the model's depth run when the model is built (``check_exit_depth``).
Options that no task would read are refused by name (``check_decoding_overrides_read``,
``check_generate_options``): only the plugin's tasks take them.
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


DECODING_FIELDS = ("early_exit", "self_speculative", "draft_tokens")


class DecodingOptionError(ValueError):
    """A bad --early-exit, --self-speculative or --draft-tokens; the message names the flag."""


def option_value(cfg, name):
    """``cfg.name``, or None where ``cfg`` has no such field."""
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
    early = _positive(option_value(cfg, "early_exit"), "--early-exit")
    exit_layer = _positive(option_value(cfg, "self_speculative"), "--self-speculative")
    draft = _positive(option_value(cfg, "draft_tokens"), "--draft-tokens")
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


def _plugin_task_for(task_name):
    return "language_modeling_layerdrop" if "language_model" in (task_name or "") else "translation_layerdrop"


def _flag(name):
    return "--" + name.replace("_", "-")


def same_value(value, read):
    """Whether an option given as ``value`` (an int, or text from a keyword argument) is the ``read`` one."""
    return read is not None and str(value).strip() == str(read).strip()


def check_decoding_overrides_read(arg_overrides, task, cfg=None):
    """Refuse a load where a decoding option was passed as an override (the hub's ``from_pretrained(...,
    early_exit=1)``, ``--model-overrides``, fairseq-validate's flags) but the task that loaded the model
    did not read it: a task of fairseq's own has no such field, and fairseq writes an override only
    where a field of that name exists, so the full model would run without a word."""
    asked = {k: v for k, v in (arg_overrides or {}).items() if k in DECODING_FIELDS and v is not None}
    if not asked:
        return
    from ..tasks.decoding_task import DecodingTask

    options = getattr(task, "cfg", None) if getattr(task, "cfg", None) is not None else getattr(task, "args", None)
    reads = isinstance(task, DecodingTask)
    unread = {k: v for k, v in asked.items() if not (reads and same_value(v, option_value(options, k)))}
    if not unread:
        return
    given = ", ".join(f"{k}={v!r}" for k, v in unread.items())
    if reads:  # the command's own task, built from its flags (fairseq-generate, -eval-lm, -interactive)
        flags = " ".join(f"{_flag(k)} {v}" for k, v in unread.items())
        raise DecodingOptionError(f"{given} was passed as a model override, which the task does not read: the task "
                                  f"takes its decoding options from the command line; give {flags} instead")
    name = getattr(getattr(cfg, "task", None), "_name", None) or getattr(getattr(task, "cfg", None), "_name", None)
    name = name or type(task).__name__
    plugin = _plugin_task_for(name)
    effect = ("the model would run all its layers" if "early_exit" in unread
              else "it would decode with plain search")
    example = dict(_name=plugin, **unread)
    flags = " ".join(f"{_flag(k)} {v}" for k, v in unread.items())
    raise DecodingOptionError(
        f"{given} was passed to the loader but no task read it: this checkpoint's task ({name}) does not take the "
        f"plugin's decoding options, so {effect}. Name the plugin's task with the option inside it (hub: "
        f"task={example!r}; fairseq-validate: --user-dir ... --task {plugin} {flags})"
    )


def check_generate_options(task, options):
    """Refuse decoding options given to the hub's ``generate`` / ``translate`` / ``sample`` for a model whose
    task does not read them (fairseq's own task: it would run plain beam search and ignore them)."""
    from ..tasks.decoding_task import DecodingTask

    asked = {k: options[k] for k in DECODING_FIELDS if options.get(k) is not None}
    if not asked or isinstance(task, DecodingTask):
        return
    options_cfg = getattr(task, "cfg", None) if getattr(task, "cfg", None) is not None else getattr(task, "args", None)
    name = getattr(options_cfg, "_name", None) or getattr(options_cfg, "task", None) or type(task).__name__
    given = ", ".join(f"{k}={v!r}" for k, v in asked.items())
    example = {"_name": _plugin_task_for(name)}
    if "early_exit" in asked:
        example["early_exit"] = asked["early_exit"]
    raise DecodingOptionError(
        f"{given} was passed to generate, but this model's task ({name}) does not take the plugin's decoding "
        f"options, so fairseq would ignore it and decode with plain search. Load the model with the plugin's "
        f"task: from_pretrained(..., user_dir=..., task={example!r})"
    )


COMMANDS_THAT_DO_NOT_DECODE = {"fairseq_cli.eval_lm": "fairseq-eval-lm scores the data",
                               "fairseq_cli.validate": "fairseq-validate computes the loss",
                               "fairseq_cli.train": "fairseq-train decodes only to validate with --eval-bleu"}


def check_command_decodes(cfg, command):
    """Refuse ``--self-speculative`` / ``--draft-tokens`` given to a command that decodes nothing
    (``command``: the module of its ``main``), and ``--early-exit`` given to fairseq-train, before any
    checkpoint or data is read."""
    task = option_value(cfg, "task")
    early = option_value(task, "early_exit")
    if command == "fairseq_cli.hydra_train":  # fairseq-hydra-train: fairseq-train's main, configured by hydra
        command = "fairseq_cli.train"
    if command == "fairseq_cli.train" and early is not None:
        raise DecodingOptionError(
            f"--early-exit {early} decodes with the first {early} decoder layers of a trained model (fairseq-generate, "
            f"-interactive, -eval-lm, -validate, the hub); fairseq-train would silently train a model of {early} "
            f"decoder layers. To train the exits, use --criterion early_exit_cross_entropy (translation: "
            f"early_exit_label_smoothed_cross_entropy); to continue training the first {early} layers, "
            f"--decoder-prune-to {early} --prune-strategy top")
    asked = [k for k in ("self_speculative", "draft_tokens") if option_value(task, k) is not None]
    if not asked or command not in COMMANDS_THAT_DO_NOT_DECODE:
        return
    if command == "fairseq_cli.train" and option_value(task, "eval_bleu"):
        return
    flags = " and ".join(_flag(k) for k in asked)
    early = "" if command == "fairseq_cli.train" else " (--early-exit E works here: it runs the first E decoder layers)"
    raise DecodingOptionError(
        f"{flags}: {COMMANDS_THAT_DO_NOT_DECODE[command]} and decodes nothing, so {'they' if len(asked) > 1 else 'it'} "
        f"would be ignored. Self-speculative decoding is for fairseq-generate, fairseq-interactive and the hub's "
        f"sample / translate{early}"
    )
