"""The task side of early exit and self-speculative decoding (LayerSkip, arXiv 2404.16710).

A mixin for the plugin's tasks. ``--early-exit E`` becomes a pruning request (keep decoder layers
0..E-1: the model's output head then reads layer E's output), so it works with every search fairseq
has and loads only what it runs. ``--self-speculative E --draft-tokens K`` makes ``build_generator``
return a ``SelfSpeculativeGenerator`` (greedy only). fairseq-generate, fairseq-interactive and the
hub interface (``TransformerLanguageModel.from_pretrained(...).sample(..., self_speculative=E,
draft_tokens=K)``, when the checkpoint's task is one of the plugin's) all reach the generator through
``build_generator``.

Bad values stop with a message naming the flag: the model-free checks when the task is set up,
before any checkpoint or data is read; the checks against the depth when the model is built, before
the data is read.
"""

from ..decoding.options import DecodingOptionError, check_decoding_options, check_exit_depth
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
            check_exit_depth(exit_layer, "--self-speculative", len(model.decoder.layers), allow_full=False)
        return model

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        _, exit_layer, draft = self._decoding_options()
        if getattr(args, "self_speculative", None) is not None or getattr(args, "draft_tokens", None) is not None:
            _, exit_layer, draft = check_decoding_options(args)  # the hub interface passes them here
        if exit_layer is None:
            return super().build_generator(models, args, seq_gen_cls, extra_gen_cls_kwargs, prefix_allowed_tokens_fn)
        refuse_unsupported_search(args, models, extra_gen_cls_kwargs, prefix_allowed_tokens_fn)
        check_exit_depth(exit_layer, "--self-speculative", len(models[0].decoder.layers), allow_full=False)
        from ..decoding.self_speculative import SelfSpeculativeGenerator

        extra = dict(extra_gen_cls_kwargs or {}, exit_layer=exit_layer, draft_tokens=draft)
        return super().build_generator(models, args, SelfSpeculativeGenerator, extra, None)


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
