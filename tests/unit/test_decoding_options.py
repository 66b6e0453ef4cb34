"""The checks of --early-exit, --self-speculative and --draft-tokens (decoding/options.py) without a model."""

import re
from argparse import Namespace

import pytest

from fairseq_layerdrop.decoding.options import DecodingOptionError, check_decoding_options, check_exit_depth


def options(**kwargs):
    return Namespace(**{"early_exit": None, "self_speculative": None, "draft_tokens": None, **kwargs})


def test_valid_options_are_returned_as_numbers():
    assert check_decoding_options(options()) == (None, None, None)
    assert check_decoding_options(options(early_exit=3)) == (3, None, None)
    assert check_decoding_options(options(self_speculative="2", draft_tokens=4)) == (None, 2, 4)


@pytest.mark.parametrize("given, flag", [
    (dict(early_exit=0), "--early-exit must be at least 1"),
    (dict(self_speculative=-1, draft_tokens=2), "--self-speculative must be at least 1"),
    (dict(self_speculative=2, draft_tokens=0), "--draft-tokens must be at least 1"),
    (dict(self_speculative="two", draft_tokens=2), "--self-speculative must be a whole number"),
    (dict(self_speculative=2), "--self-speculative E needs --draft-tokens"),
    (dict(draft_tokens=4), "--draft-tokens K needs --self-speculative"),
    (dict(early_exit=2, self_speculative=2, draft_tokens=2), "--early-exit and --self-speculative exclude"),
])
def test_bad_options_name_their_flag(given, flag):
    with pytest.raises(DecodingOptionError, match=flag):
        check_decoding_options(options(**given))


def test_exit_depth_bounds():
    check_exit_depth(6, "--early-exit", 6, allow_full=True)  # early exit at the top is the full model
    check_exit_depth(5, "--self-speculative", 6, allow_full=False)
    with pytest.raises(DecodingOptionError, match=r"--self-speculative 6: the decoder has 6 layers, so choose 1 to 5"):
        check_exit_depth(6, "--self-speculative", 6, allow_full=False)
    with pytest.raises(DecodingOptionError, match=r"--early-exit 7: the decoder has 6 layers, so choose 1 to 6"):
        check_exit_depth(7, "--early-exit", 6, allow_full=True)
    with pytest.raises(DecodingOptionError, match="at least 2"):
        check_exit_depth(1, "--self-speculative", 1, allow_full=False)


def test_decoding_overrides_that_no_task_reads_are_refused_by_name():
    """``check_decoding_overrides_read``: what the loaders (the hub's keywords, --model-overrides, fairseq-validate's
    flags) pass must reach a task that reads it, or the model runs all its layers / decodes with plain search."""
    from fairseq.tasks.language_modeling import LanguageModelingTask

    from fairseq_layerdrop.decoding.options import check_decoding_overrides_read
    from fairseq_layerdrop.tasks.language_modeling_layerdrop import LanguageModelingLayerDropTask

    fairseq_task = LanguageModelingTask.__new__(LanguageModelingTask)
    fairseq_task.cfg = Namespace(_name="language_modeling")
    plugin_task = LanguageModelingLayerDropTask.__new__(LanguageModelingLayerDropTask)
    plugin_task.cfg = Namespace(_name="language_modeling_layerdrop", early_exit=2, self_speculative=None,
                                draft_tokens=None)
    check_decoding_overrides_read({"data": "bin", "early_exit": None}, fairseq_task)  # nothing asked
    check_decoding_overrides_read({"early_exit": "2"}, plugin_task)  # read (a hub keyword as text)
    with pytest.raises(DecodingOptionError, match=re.escape(
            "early_exit=1 was passed to the loader but no task read it: this checkpoint's task (language_modeling) "
            "does not take the plugin's decoding options, so the model would run all its layers. Name the plugin's "
            "task with the option inside it (hub: task={'_name': 'language_modeling_layerdrop', 'early_exit': 1}; "
            "fairseq-validate: --user-dir ... --task language_modeling_layerdrop --early-exit 1)")):
        check_decoding_overrides_read({"early_exit": 1}, fairseq_task)
    # fairseq-generate --task language_modeling_layerdrop --model-overrides "{'early_exit': 3}": the command's task
    # reads its own flags, not the override
    with pytest.raises(DecodingOptionError, match=r"early_exit=3 was passed as a model override, which the task "
                                                  r"does not read.*give --early-exit 3 instead"):
        check_decoding_overrides_read({"early_exit": 3}, plugin_task)


@pytest.mark.parametrize("command, refused", [
    ("fairseq_cli.eval_lm", "fairseq-eval-lm scores the data and decodes nothing"),
    ("fairseq_cli.validate", "fairseq-validate computes the loss and decodes nothing"),
    ("fairseq_cli.train", "fairseq-train decodes only to validate with --eval-bleu"),
    ("fairseq_cli.hydra_train", "fairseq-train decodes only to validate with --eval-bleu"),
    ("fairseq_cli.interactive", None),
])
def test_self_speculative_options_of_a_command_that_decodes_nothing_are_refused(command, refused):
    from fairseq_layerdrop.decoding.options import check_command_decodes

    cfg = Namespace(task=options(self_speculative=2, draft_tokens=4, eval_bleu=False))
    if refused is None:
        check_command_decodes(cfg, command)
    else:
        with pytest.raises(DecodingOptionError, match="--self-speculative and --draft-tokens: " + refused):
            check_command_decodes(cfg, command)
    if not command.endswith("train"):
        check_command_decodes(Namespace(task=options(early_exit=2)), command)  # early exit prunes: it works there
    else:  # it would train a model of E layers, not the exits
        with pytest.raises(DecodingOptionError, match=r"--early-exit 2 decodes with the first 2 decoder layers of a "
                                                      r"trained model .*fairseq-train would silently train a model "
                                                      r"of 2 decoder layers.*--criterion early_exit_cross_entropy"):
            check_command_decodes(Namespace(task=options(early_exit=2)), command)
    cfg.task.eval_bleu = True  # fairseq-train --eval-bleu decodes the valid set with the task's generator
    check_command_decodes(cfg, "fairseq_cli.train")


def test_self_speculative_refuses_score_reference():
    from fairseq_layerdrop.tasks.decoding_task import refuse_unsupported_search

    with pytest.raises(DecodingOptionError, match=r"not: --score-reference \(it scores the given targets"):
        refuse_unsupported_search(Namespace(beam=1, score_reference=True), [object()], None, None)
    refuse_unsupported_search(Namespace(beam=1, score_reference=False), [object()], None, None)


def test_a_plugin_task_named_for_a_checkpoint_replaces_only_the_fairseq_task_it_extends():
    """fairseq-validate passes ``--task NAME`` as a string override, which fairseq ignores for a saved task."""
    from omegaconf import OmegaConf

    from fairseq_layerdrop.compat import switch_to_named_plugin_task

    def saved(name):
        cfg = OmegaConf.create({"task": {"_name": name, "data": "old"}, "model": {"_name": "transformer_lm"}})
        OmegaConf.set_struct(cfg, True)
        return cfg

    cfg = saved("language_modeling")
    assert switch_to_named_plugin_task(cfg, {"task": "language_modeling_layerdrop", "early_exit": 2, "beam": 1})
    assert cfg.task._name == "language_modeling_layerdrop" and cfg.task.early_exit == 2 and "beam" not in cfg.task
    for name, named in (("translation", "language_modeling_layerdrop"),  # not the task it extends: fairseq's rule
                        ("language_modeling", "translation"),  # fairseq's own task named: fairseq's rule
                        ("language_modeling_layerdrop", "language_modeling_layerdrop")):
        cfg = saved(name)
        assert not switch_to_named_plugin_task(cfg, {"task": named, "early_exit": 2})
        assert cfg.task._name == name and "early_exit" not in cfg.task
    assert not switch_to_named_plugin_task(saved("language_modeling"), {"task": {"_name": "x"}})  # the hub's dict


def test_self_speculative_refuses_a_decoder_that_is_not_a_transformer(translation_data):
    """DecoderLayerRange runs a fairseq transformer decoder's modules; an LSTM decoder is refused, naming the flag."""
    from tests.helpers import build_model

    small = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
             "--decoder-out-embed-dim", "16", "--encoder-hidden-size", "16", "--decoder-hidden-size", "16"]
    with pytest.raises(DecodingOptionError, match=r"--self-speculative runs the layers of a transformer decoder "
                                                  r"\(fairseq's TransformerDecoderBase\); this model's decoder is "
                                                  r"LSTMDecoder"):
        build_model(translation_data, "--task", "translation_layerdrop", "--arch", "lstm", *small,
                    "--self-speculative", "1", "--draft-tokens", "2")
