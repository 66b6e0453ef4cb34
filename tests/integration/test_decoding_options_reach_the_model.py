"""The decoding options (``--early-exit``, ``--self-speculative``, ``--draft-tokens``) for checkpoints saved by
fairseq's own tasks (how the README trains a model), through the commands a user runs: each either changes
what runs, giving the number an independent route gives, or is refused naming it. Issue 23: fairseq-validate
and the hub ran the full model, or plain beam search, without a word."""

import re

import pytest
import torch

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from fairseq_layerdrop.decoding.options import DecodingOptionError
from fairseq_layerdrop.pruning.state_dict import PruningError
from tests.helpers import PLUGIN, fairseq
from tests.integration.test_hub_interface import hub_lm, hub_translator, raw_lines


@pytest.fixture(scope="module")
def fairseq_lm_checkpoint(lm_checkpoint, tmp_path_factory):
    """A checkpoint of fairseq's own ``transformer_lm`` and ``language_modeling`` task, holding the weights of
    ``lm_checkpoint`` (at inference the plugin's LM computes what fairseq's computes with the same weights)."""
    from fairseq.models.transformer_lm import TransformerLanguageModelConfig

    state = torch.load(lm_checkpoint, map_location="cpu", weights_only=True)
    fields = set(TransformerLanguageModelConfig.__dataclass_fields__)
    model_cfg = {k: v for k, v in state["cfg"]["model"].items() if k in fields}
    model_cfg["_name"] = "transformer_lm"
    cfg = dict(state["cfg"], model=model_cfg)
    path = tmp_path_factory.mktemp("fairseq_lm") / "checkpoint.pt"
    torch.save({"args": None, "cfg": cfg, "model": dict(state["model"]),  # a plain dict: no --user-dir mark
                "optimizer_history": state["optimizer_history"], "extra_state": state["extra_state"]}, path)
    return path


def validate_loss(data, checkpoint, *flags):
    """fairseq-validate's loss on the test split, and its log."""
    out = fairseq("fairseq-validate", data, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop", "--path",
                  checkpoint, "--cpu", "--max-tokens", "2000", "--valid-subset", "test", *flags)
    log = out.stdout + out.stderr
    return float(re.search(r"valid on 'test' subset \| loss ([0-9.]+)", log).group(1)), log


def test_early_exit_in_fairseq_validate_runs_the_first_layers_of_either_kind_of_lm(lm_data, lm_checkpoint,
                                                                                    fairseq_lm_checkpoint):
    """fairseq-validate builds the checkpoint's task (fairseq's language_modeling) and ignored the task named on
    the command line with --early-exit; on fairseq's own transformer_lm, --prune-to was refused instead."""
    expected, log = validate_loss(lm_data, lm_checkpoint, "--prune-to", "1", "--prune-strategy", "top")
    assert "pruning the decoder: keeping layers [0] of 6" in log, log[-2000:]
    loss, log = validate_loss(lm_data, lm_checkpoint, "--early-exit", "1")
    assert "pruning the decoder: keeping layers [0] of 6" in log and loss == expected, log[-2000:]
    loss, log = validate_loss(lm_data, fairseq_lm_checkpoint, "--early-exit", "1")  # --prune-to: the hub test
    assert "pruning the decoder: keeping layers [0] of 6" in log and loss == expected, log[-2000:]


def truncated_by_hand(hub, depth):
    decoder = hub.models[0].decoder
    decoder.layers = torch.nn.ModuleList(list(decoder.layers)[:depth])
    decoder.num_layers = depth
    return hub


def test_early_exit_through_the_hub_runs_the_first_layers_or_is_refused_by_name(lm_data, lm_checkpoint,
                                                                                 fairseq_lm_checkpoint):
    from fairseq.models.transformer_lm import TransformerLanguageModel

    sentences = raw_lines(lm_data, "test.txt")[:10]
    expected = [r["positional_scores"] for r in truncated_by_hand(hub_lm(fairseq_lm_checkpoint, lm_data), 2)
                .score(sentences)]
    full = [r["positional_scores"] for r in hub_lm(fairseq_lm_checkpoint, lm_data).score(sentences)]
    assert not torch.allclose(full[0], expected[0], atol=1e-3)  # the comparisons below can tell

    for checkpoint in (lm_checkpoint, fairseq_lm_checkpoint):
        # without the plugin's task, no task reads early_exit: refused, with the form that works
        with pytest.raises(DecodingOptionError, match=re.escape(
                "early_exit=2 was passed to the loader but no task read it: this checkpoint's task "
                "(language_modeling) does not take the plugin's decoding options, so the model would run all its "
                "layers. Name the plugin's task with the option inside it (hub: task={'_name': "
                "'language_modeling_layerdrop', 'early_exit': 2}")):
            hub_lm(checkpoint, lm_data, early_exit=2)
        for task in ({"_name": "language_modeling_layerdrop", "early_exit": 2}, "language_modeling_layerdrop"):
            extra = {} if isinstance(task, dict) else {"early_exit": 2}  # the task named as text works too
            hub = hub_lm(checkpoint, lm_data, task=task, **extra)
            assert isinstance(hub.models[0], TransformerLanguageModel) and len(hub.models[0].decoder.layers) == 2
            for result, scores in zip(hub.score(sentences), expected):
                torch.testing.assert_close(result["positional_scores"], scores, rtol=0, atol=1e-5)

    # early exit is chosen at load: a generate keyword cannot change it, and is not ignored either
    with pytest.raises(DecodingOptionError, match=r"early_exit=3 was passed to generate, but early exit is chosen "
                                                  r"when the model loads .*loaded with early_exit=2"):
        hub.sample(sentences[:1], beam=1, early_exit=3)
    with pytest.raises(PruningError, match=r"prune_to=2 was passed to the loader but no model read it"):
        hub_lm(fairseq_lm_checkpoint, lm_data, prune_to=2)  # consistent with early_exit above


def test_self_speculative_keywords_of_the_hub_work_with_the_plugins_task_and_are_refused_without(
        mt_checkpoint, fairseq_mt_checkpoint, translation_data):
    sources = raw_lines(translation_data, "test.src")[:6]
    options = dict(max_len_a=1, max_len_b=5, self_speculative=2, draft_tokens=3)
    for checkpoint in (mt_checkpoint, fairseq_mt_checkpoint):  # both saved by fairseq's translation task
        hub = hub_translator(checkpoint, translation_data)
        for beam in (5, 1):
            with pytest.raises(DecodingOptionError, match=re.escape(
                    "self_speculative=2, draft_tokens=3 was passed to generate, but this model's task (translation) "
                    "does not take the plugin's decoding options, so fairseq would ignore it and decode with plain "
                    "search. Load the model with the plugin's task: from_pretrained(..., user_dir=..., "
                    "task={'_name': 'translation_layerdrop'})")):
                hub.translate(sources[0], beam=beam, **options)
        with pytest.raises(DecodingOptionError, match=r"early_exit=2 was passed to generate.*task=\{'_name': "
                                                      r"'translation_layerdrop', 'early_exit': 2\}"):
            hub.translate(sources[0], beam=1, early_exit=2)
        with pytest.raises(DecodingOptionError, match=r"self_speculative=2, draft_tokens=3 was passed to the "
                                                      r"loader but no task read it.*so it would decode with plain "
                                                      r"search"):
            hub_translator(checkpoint, translation_data, self_speculative=2, draft_tokens=3)

        # the form the message gives works: the output is greedy decoding's, through the plugin's generator
        hub = hub_translator(checkpoint, translation_data, task={"_name": "translation_layerdrop"})
        greedy = [hub.translate(s, beam=1, max_len_a=1, max_len_b=5) for s in sources]
        built, build = [], hub.task.build_generator
        hub.task.build_generator = lambda *a, **k: built.append(build(*a, **k)) or built[-1]
        assert [hub.translate(s, beam=1, **options) for s in sources] == greedy
        assert type(built[-1]).__name__ == "SelfSpeculativeGenerator" and built[-1].exit_layer == 2
        with pytest.raises(DecodingOptionError, match=r"--self-speculative supports plain greedy decoding.*--beam 5"):
            hub.translate(sources[0], beam=5, **options)

    # options given at load apply to every call; a keyword replaces one of them (here K), not all
    hub = hub_translator(mt_checkpoint, translation_data,
                         task={"_name": "translation_layerdrop", "self_speculative": 2, "draft_tokens": 3})
    built, build = [], hub.task.build_generator
    hub.task.build_generator = lambda *a, **k: built.append(build(*a, **k)) or built[-1]
    assert [hub.translate(s, beam=1, max_len_a=1, max_len_b=5, draft_tokens=1) for s in sources] == greedy
    assert (built[-1].exit_layer, built[-1].draft_tokens) == (2, 1)


def test_self_speculative_in_a_command_that_decodes_nothing_is_refused_before_loading(lm_data, lm_checkpoint):
    out = fairseq("fairseq-eval-lm", lm_data, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop", "--path",
                  lm_checkpoint, "--cpu", "--self-speculative", "2", "--draft-tokens", "4", check=False)
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-2000:]
    assert ("DecodingOptionError: --self-speculative and --draft-tokens: fairseq-eval-lm scores the data and decodes "
            "nothing, so they would be ignored") in log, log[-2000:]
    assert "loading model" not in log and "loaded" not in log  # neither the checkpoint nor the data
