"""Is DATA the binarized data a checkpoint can be scored on? Checked from file names and the checkpoint's config,
before fairseq loads anything, so that the tools refuse in one line naming DATA (or --subset) instead of
ending in fairseq's ``FileNotFoundError: DATA/dict.txt`` or ``Could not infer language pair``.

What fairseq reads (0.12): a language model (``language_modeling``, ``masked_lm``) ``DATA/dict.txt`` and
``DATA/SPLIT.idx``; a translation model ``DATA/dict.SRC.txt``, ``DATA/dict.TGT.txt`` and
``DATA/SPLIT.SRC-TGT.SRC.idx`` (or ``TGT-SRC``), the pair taken from the config or, when it has none,
from the first file named ``SPLIT.A-B.*`` (``data_utils.infer_language_pair``). fairseq-preprocess writes these
(``--only-source`` for a language model). Checkpoints of other tasks are not checked here.
"""

import os
from typing import Optional

# task -> special symbols of its dictionary beyond dict.txt (masked_lm adds <mask>)
LM_TASKS = {"language_modeling": 4, "language_modeling_layerdrop": 4, "masked_lm": 5, "masked_lm_layerdrop": 5}
MASKED_LM_TASKS = ("masked_lm", "masked_lm_layerdrop")
TRANSLATION_TASKS = {"translation", "translation_layerdrop"}
REMEDY = "give the binarized data directory the checkpoint was trained on (fairseq-preprocess --destdir)"


def task_config(state) -> dict:
    """The checkpoint's task settings (``cfg.task``, or the legacy ``args``) as a dict."""
    cfg = state.get("cfg") if isinstance(state, dict) else None
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if task is None and state.get("args") is not None:
        task = vars(state["args"])
        task = {**task, "_name": task.get("task")}
    return dict(task or {})


def peek_checkpoint(path):
    """The checkpoint's dict with its tensors mapped, not read (cheap for a large file); None if torch cannot."""
    import torch

    import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold)

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a legacy or broken file: the loader that follows says what it is
        return None


def language_pair(data: str):
    """The pair fairseq infers from DATA's file names (``SPLIT.A-B.*``), or (None, None)."""
    for name in sorted(os.listdir(data)):
        parts = name.split(".")
        if len(parts) >= 3 and len(parts[1].split("-")) == 2:
            return tuple(parts[1].split("-"))
    return None, None


def _dictionary_size(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _split_exists(prefix: str) -> bool:
    """An indexed (``.idx`` + ``.bin``) or raw-text dataset at ``prefix``, as fairseq's ``dataset_exists``."""
    return (os.path.isfile(prefix + ".idx") and os.path.isfile(prefix + ".bin")) or os.path.isfile(prefix)


def _what_it_holds(data: str) -> str:
    src, tgt = language_pair(data)
    if src and os.path.isfile(os.path.join(data, f"dict.{src}.txt")):
        return f"it holds translation data ({src}-{tgt}: dict.{src}.txt, dict.{tgt}.txt)"
    if os.path.isfile(os.path.join(data, "dict.txt")):
        return "it holds language-model data (dict.txt, no SPLIT.SRC-TGT.* files)"
    return "it holds no fairseq-preprocess output" if not os.listdir(data) else "it has no dictionary"


def _embedding_rows(model_state, key: str) -> Optional[int]:
    weight = (model_state or {}).get(key)
    return int(weight.shape[0]) if getattr(weight, "shape", None) else None


def data_problem(data: str, state, subset: str, kind: Optional[str] = None, source_lang=None,
                 target_lang=None) -> Optional[str]:
    """Why DATA cannot serve the checkpoint ``state`` (and split ``subset``), or None.

    ``kind`` ("lm" or "translation") is how the data will be read; by default, from the checkpoint's task.
    ``source_lang`` / ``target_lang`` override the checkpoint's (``-s`` / ``-t`` given to fairseq).
    """
    task = task_config(state)
    name = task.get("_name")
    if kind is None:
        kind = "lm" if name in LM_TASKS else "translation" if name in TRANSLATION_TASKS else None
    if kind is None:
        return None
    trained_as = f"task {name}" if name else kind
    model_state = state.get("model") if isinstance(state, dict) else None
    if kind == "lm":
        dictionary = os.path.join(data, "dict.txt")
        if not os.path.isfile(dictionary):
            return (f"DATA {data} has no dict.txt, which a language model ({trained_as}) reads: "
                    f"{_what_it_holds(data)}; {REMEDY}")
        rows = _embedding_rows(model_state, "decoder.embed_tokens.weight")
        if rows is None:  # a RoBERTa's embeddings
            rows = _embedding_rows(model_state, "encoder.sentence_encoder.embed_tokens.weight")
        size = _dictionary_size(dictionary) + LM_TASKS.get(name, 4)
        if rows is not None and rows != size:
            return (f"DATA {data}: its dict.txt makes a vocabulary of {size} symbols, but the checkpoint's "
                    f"embeddings have {rows}: not the data this model was trained on; {REMEDY}")
        if not _split_exists(os.path.join(data, subset)):
            return f"--subset {subset}: DATA {data} has no {subset} split ({subset}.idx and {subset}.bin)"
        return None
    src = source_lang or task.get("source_lang")
    tgt = target_lang or task.get("target_lang")
    if not (src and tgt):
        inferred = language_pair(data)
        src, tgt = src or inferred[0], tgt or inferred[1]
    if not (src and tgt):
        return (f"DATA {data} has no SPLIT.SRC-TGT.* files to take the language pair of a translation model "
                f"({trained_as}) from: {_what_it_holds(data)}; {REMEDY}")
    sides = ((src, "source", "encoder.embed_tokens.weight"), (tgt, "target", "decoder.embed_tokens.weight"))
    for lang, side, key in sides:
        dictionary = os.path.join(data, f"dict.{lang}.txt")
        if not os.path.isfile(dictionary):
            return (f"DATA {data} has no dict.{lang}.txt, the {side} dictionary of a {src}-{tgt} translation "
                    f"model: {_what_it_holds(data)}; {REMEDY}")
        rows = _embedding_rows(model_state, key)
        size = _dictionary_size(dictionary) + 4
        if rows is not None and rows != size:
            return (f"DATA {data}: its dict.{lang}.txt makes a {side} vocabulary of {size} symbols, but the "
                    f"checkpoint's embeddings have {rows}: not the data this model was trained on; {REMEDY}")
    if not any(_split_exists(os.path.join(data, f"{subset}.{a}-{b}.{src}")) for a, b in ((src, tgt), (tgt, src))):
        return (f"--subset {subset}: DATA {data} has no {subset} split of {src}-{tgt} "
                f"({subset}.{src}-{tgt}.{src}.idx and .bin)")
    return None


def load_checked(args):
    """``load_for_scoring(args)`` (``pruning/validation.py``) after checking DATA against the checkpoint; a
    ValueError naming what is wrong, also for a data directory this check does not know how to read."""
    from fairseq_layerdrop.pruning.validation import check_scoring_arguments, load_for_scoring

    check_scoring_arguments(args)
    state = peek_checkpoint(args.checkpoint)
    problem = data_problem(args.data, state, args.subset) if isinstance(state, dict) else None
    del state
    if problem:
        raise ValueError(problem)
    try:
        return load_for_scoring(args)
    except FileNotFoundError as error:  # a task not checked above, reading a file DATA lacks
        raise ValueError(f"DATA {args.data}: no {error.filename or error}; {REMEDY}") from None
    except Exception as error:
        if "Could not infer language pair" not in str(error):
            raise
        raise ValueError(f"DATA {args.data} has no SPLIT.SRC-TGT.* files to take the language pair from; "
                         f"{REMEDY}") from None
