"""The task side of early exit and self-speculative decoding (LayerSkip, arXiv 2404.16710).

A mixin for the plugin's tasks. ``--early-exit E`` becomes a pruning request (keep decoder layers
0..E-1: the model's output head then reads layer E's output), so it works with every search fairseq
has and loads only what it runs. ``--self-speculative E --draft-tokens K`` makes ``build_generator``
return a ``SelfSpeculativeGenerator`` (greedy only). fairseq-generate, fairseq-interactive and the
hub interface (``TransformerLanguageModel.from_pretrained(...).sample(..., self_speculative=E,
draft_tokens=K)``, when the checkpoint's task is one of the plugin's) all reach the generator through
``build_generator``; a keyword given there replaces the value the model was loaded with, except
``early_exit``, which only loading can change.

Bad values stop with a message naming the flag: the model-free checks when the task is set up,
before any checkpoint or data is read; the checks against the depth when the model is built, before
the data is read. Options that nothing would read are refused too: for a checkpoint of fairseq's own
task (unless the plugin's task is named), and in commands that decode nothing (``compat.py``, 4, 15, 16).
"""

from argparse import Namespace

from ..decoding.options import DecodingOptionError, check_decoding_options, check_exit_depth, option_value, same_value
from ..pruning.state_dict import stack_depth


class DecodingTask:
    """Mixin for a fairseq task whose config includes ``DecodingOptions`` (put it before ``PruneOnLoadTask``)."""

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        check_decoding_options(cfg)
        return super().setup_task(cfg, **kwargs)

    def _decoding_options(self):
        return check_decoding_options(self.cfg if getattr(self, "cfg", None) is not None else self.args)

    def build_model(self, cfg, from_checkpoint=False):
        early, exit_layer, _ = self._decoding_options()
        depth = stack_depth(cfg, "decoder")
        if early is not None and depth is not None:
            check_exit_depth(early, "--early-exit", depth, allow_full=True)
        model = super().build_model(cfg, from_checkpoint)
        if exit_layer is not None:
            check_self_speculative_model(model, exit_layer)
        return model

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        early, exit_layer, draft = self._decoding_options()
        asked_exit = option_value(args, "early_exit")
        if asked_exit is not None and not same_value(asked_exit, early):
            raise DecodingOptionError(
                f"early_exit={asked_exit!r} was passed to generate, but early exit is chosen when the model loads "
                f"(it loads only the decoder's first E layers; this model was loaded with early_exit={early!r}): pass "
                f"it to the loader, from_pretrained(..., task={{'_name': ..., 'early_exit': {asked_exit!r}}}), or "
                f"to the command as --early-exit {asked_exit}")
        asked = {k: option_value(args, k) for k in ("self_speculative", "draft_tokens")
                 if option_value(args, k) is not None}
        if asked:  # the hub interface passes them here; each replaces the value the model was loaded with
            merged = Namespace(early_exit=None, self_speculative=exit_layer, draft_tokens=draft)
            vars(merged).update(asked)
            _, exit_layer, draft = check_decoding_options(merged)
        if exit_layer is None:
            return super().build_generator(models, args, seq_gen_cls, extra_gen_cls_kwargs, prefix_allowed_tokens_fn)
        refuse_unsupported_search(args, models, extra_gen_cls_kwargs, prefix_allowed_tokens_fn)
        check_self_speculative_model(models[0], exit_layer)
        from ..decoding.self_speculative import SelfSpeculativeGenerator

        extra = dict(extra_gen_cls_kwargs or {}, exit_layer=exit_layer, draft_tokens=draft)
        return super().build_generator(models, args, SelfSpeculativeGenerator, extra, None)


def check_self_speculative_model(model, exit_layer):
    """Self-speculative decoding runs a fairseq transformer decoder in layer ranges (``decoding/layer_range.py``):
    refuse another decoder (an LSTM, a convolutional one) and an exit layer beyond its depth, naming the flag."""
    from fairseq.models.transformer import TransformerDecoderBase

    decoder = getattr(model, "decoder", None)
    if not isinstance(decoder, TransformerDecoderBase):
        raise DecodingOptionError(
            f"--self-speculative runs the layers of a transformer decoder (fairseq's TransformerDecoderBase); this "
            f"model's decoder is {type(decoder).__name__}")
    check_exit_depth(exit_layer, "--self-speculative", len(decoder.layers), allow_full=False)


def refuse_unsupported_search(args, models, extra_gen_cls_kwargs, prefix_allowed_tokens_fn):
    """Self-speculative decoding is greedy: refuse every other search, naming the flag."""
    def get(name, default=None):
        return getattr(args, name, default)

    problems = []
    if get("beam", 5) != 1:
        problems.append(f"--beam {get('beam', 5)} (it decodes greedily: give --beam 1)")
    if get("sampling", False):
        problems.append("--sampling (only greedy decoding is lossless here)")
    if get("nbest", 1) != 1:
        problems.append(f"--nbest {get('nbest')} (greedy decoding has one hypothesis)")
    if (get("diverse_beam_groups", -1) or -1) > 0 or (get("diversity_rate", -1) or -1) > -1:
        problems.append("diverse beam search (--diverse-beam-groups / --diversity-rate)")
    if get("score_reference", False):
        problems.append("--score-reference (it scores the given targets and decodes nothing)")
    for flag, name in (("--match-source-len", "match_source_len"), ("--constraints", "constraints"),
                       ("--print-alignment", "print_alignment"), ("--retain-dropout", "retain_dropout")):
        if get(name, False):
            problems.append(flag)
    if (get("no_repeat_ngram_size", 0) or 0) > 0:
        problems.append("--no-repeat-ngram-size")
    if prefix_allowed_tokens_fn is not None or get("prefix_allowed_tokens_fn") is not None:
        problems.append("prefix_allowed_tokens_fn")
    if (extra_gen_cls_kwargs or {}).get("lm_model") is not None:
        problems.append("--lm-path (language model fusion)")
    if len(models) != 1:
        problems.append(f"an ensemble of {len(models)} models (give one --path)")
    if problems:
        raise DecodingOptionError("--self-speculative supports plain greedy decoding of one model only; "
                                  "not: " + "; ".join(problems))
