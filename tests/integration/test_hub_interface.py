"""fairseq's hub interface (``TransformerModel.from_pretrained``, ``TransformerLanguageModel.from_pretrained``)
loads plugin models pruned on load (pruning options as keyword arguments) and exported pruned checkpoints,
and translates and scores with them exactly as fairseq-generate and fairseq-eval-lm do (fairseq issue 2507
was a pruned model that ``from_pretrained`` could not load)."""

import re

import pytest
import torch

from tests.helpers import PLUGIN, fairseq

GENERATION = dict(beam=5, max_len_a=1, max_len_b=5)  # bounded: an undertrained model would run to 200 tokens


def hub_translator(checkpoint, data, **pruning):
    from fairseq.models.transformer import TransformerModel

    return TransformerModel.from_pretrained(
        str(checkpoint.parent), checkpoint_file=checkpoint.name, data_name_or_path=str(data), user_dir=PLUGIN, **pruning
    )


def hub_lm(checkpoint, data, **pruning):
    from fairseq.models.transformer_lm import TransformerLanguageModel

    return TransformerLanguageModel.from_pretrained(
        str(checkpoint.parent), checkpoint_file=checkpoint.name, data_name_or_path=str(data), user_dir=PLUGIN, **pruning
    )


def raw_lines(data, name):
    return (data.parent / "raw" / name).read_text().splitlines()


def export(checkpoint, out, *pruning):
    fairseq("fairseq-layerdrop-prune", checkpoint, out, *pruning)
    return out


def interactive_hypotheses(data, sources, tmp_path, *flags):
    """fairseq-interactive's hypotheses for ``sources`` (raw text, as the hub reads it), one sentence per batch."""
    (tmp_path / "input.txt").write_text("\n".join(sources) + "\n")
    out = fairseq("fairseq-interactive", data, "--user-dir", PLUGIN, "--cpu", "--batch-size", "1", "--buffer-size", "1",
                  "--input", tmp_path / "input.txt",
                  "--beam", GENERATION["beam"], "--max-len-a", GENERATION["max_len_a"],
                  "--max-len-b", GENERATION["max_len_b"], *flags).stdout
    hypotheses = {int(m.group(1)): m.group(2) for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", out, re.M)}
    return [hypotheses[i] for i in range(len(hypotheses))]


def translate(hub, sources):
    """The hub's translations, one sentence per batch as fairseq-interactive above (batch padding may
    change the last digits of the scores, and with them a beam's choice on an undertrained model)."""
    return [hub.translate(source, **GENERATION) for source in sources]


def layer_calls(model, run):
    """``run()``, counting the forward calls of each encoder and decoder layer of ``model``."""
    calls = {}
    handles = []
    for stack in ("encoder", "decoder"):
        for i, layer in enumerate(getattr(getattr(model, stack, None), "layers", [])):
            calls[stack, i] = 0
            handles.append(layer.register_forward_hook(lambda *_, key=(stack, i): calls.__setitem__(key, calls[key] + 1)))
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return result, calls


def test_translation_pruned_on_load_equals_fairseq_interactive_and_the_export(mt_checkpoint, translation_data,
                                                                             tmp_path):
    pruning = dict(encoder_prune_to=3, decoder_layers_to_keep="0,2")
    sources = raw_lines(translation_data, "test.src")[:8]
    expected = interactive_hypotheses(translation_data, sources, tmp_path, "--path", mt_checkpoint, "--task",
                                      "translation_layerdrop", "--encoder-prune-to", "3", "--decoder-layers-to-keep", "0,2")
    assert len(expected) == len(sources) == 8

    hub = hub_translator(mt_checkpoint, translation_data, **pruning)
    model = hub.models[0]
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (3, 2)
    translations, calls = layer_calls(model, lambda: translate(hub, sources))
    assert translations == expected
    assert sorted(calls) == [("decoder", 0), ("decoder", 1), ("encoder", 0), ("encoder", 1), ("encoder", 2)]
    assert all(count > 0 for count in calls.values()), calls  # every kept layer ran; no others exist

    # the kept layers are the full model's 0,2,4 (encoder, every-other) and 0,2 (decoder), renumbered
    full = torch.load(mt_checkpoint, map_location="cpu", weights_only=True)["model"]
    for stack, kept in (("encoder", [0, 2, 4]), ("decoder", [0, 2])):
        for new, old in enumerate(kept):
            assert torch.equal(getattr(model, stack).layers[new].fc1.weight, full[f"{stack}.layers.{old}.fc1.weight"])

    # the full model translates differently, so the comparison above can tell pruned from unpruned
    assert translate(hub_translator(mt_checkpoint, translation_data), sources) != expected

    exported = export(mt_checkpoint, tmp_path / "model.pt", "--encoder-prune-to", "3", "--decoder-layers-to-keep", "0,2")
    hub_exported = hub_translator(exported, translation_data)
    assert (len(hub_exported.models[0].encoder.layers), len(hub_exported.models[0].decoder.layers)) == (3, 2)
    assert translate(hub_exported, sources) == expected


def eval_lm_word_scores(data, checkpoint, *flags):
    """fairseq-eval-lm's natural-log score of each token of each test sentence (``--sample-break-mode eos``)."""
    out = fairseq("fairseq-eval-lm", data, "--user-dir", PLUGIN, "--path", checkpoint, "--gen-subset", "test", "--cpu",
                  "--max-tokens", "2000", "--sample-break-mode", "eos", "--output-word-probs", *flags)
    scores = {}
    for m in re.finditer(r"eval_lm:(\d+) (.*)$", out.stdout + out.stderr, re.M):
        scores[int(m.group(1))] = [float(s) for s in re.findall(r"\[(-?[\d.]+(?:e-?\d+)?)\]", m.group(2))]
    return [scores[i] for i in range(len(scores))]


def test_lm_scores_pruned_on_load_equal_fairseq_eval_lm_and_the_export(lm_checkpoint, lm_data, tmp_path):
    sentences = raw_lines(lm_data, "test.txt")
    expected = eval_lm_word_scores(lm_data, lm_checkpoint, "--task", "language_modeling_layerdrop", "--prune-to", "3")
    assert len(expected) == len(sentences) == 100

    hub = hub_lm(lm_checkpoint, lm_data, prune_to="3")  # a depth as text, as overrides often are, is read as 3
    assert len(hub.models[0].decoder.layers) == 3
    results, calls = layer_calls(hub.models[0], lambda: hub.score(sentences))
    assert sorted(calls) == [("decoder", 0), ("decoder", 1), ("decoder", 2)] and min(calls.values()) > 0
    for result, words in zip(results, expected):
        # the hub scores the words; eval-lm scores the words and the end of sentence
        assert result["positional_scores"].tolist() == pytest.approx(words[:-1], abs=2e-6)

    full_scores = hub_lm(lm_checkpoint, lm_data).score(sentences[:3])
    assert full_scores[0]["positional_scores"].tolist() != pytest.approx(expected[0][:-1], abs=1e-3)

    exported = export(lm_checkpoint, tmp_path / "model.pt", "--prune-to", "3")
    hub_exported = hub_lm(exported, lm_data)
    assert len(hub_exported.models[0].decoder.layers) == 3
    for a, b in zip(hub_exported.score(sentences), results):
        assert torch.equal(a["positional_scores"], b["positional_scores"])
    prompts = [" ".join(s.split()[:3]) for s in sentences[:4]]
    greedy = dict(beam=1, sampling=False, max_len_b=8)
    assert hub_exported.sample(prompts, **greedy) == hub.sample(prompts, **greedy)


def test_pruning_option_a_fairseq_model_does_not_read_is_refused(fairseq_mt_checkpoint, translation_data):
    from fairseq_layerdrop.pruning.state_dict import PruningError

    with pytest.raises(PruningError, match=r"prune_to=3 was passed to the loader but no model read it.*"
                                           r"task=\{'_name': 'translation_layerdrop', 'prune_to': 3\}"):
        hub_translator(fairseq_mt_checkpoint, translation_data, prune_to=3)

    # what the message proposes works: fairseq's own transformer, pruned by the plugin's task
    hub = hub_translator(fairseq_mt_checkpoint, translation_data, task={"_name": "translation_layerdrop", "prune_to": 3})
    assert (len(hub.models[0].encoder.layers), len(hub.models[0].decoder.layers)) == (3, 3)
    assert type(hub.models[0]).__name__ == "TransformerModel"


@pytest.mark.parametrize("model, keywords, message", [
    ("lm", dict(prune_to=7), "prune_to=7: cannot prune the decoder to 7 layers: it has 6, so choose 1 to 6"),
    ("lm", dict(prune_to=0), "prune_to=0: cannot prune the decoder to 0 layers: it has 6, so choose 1 to 6"),
    ("lm", dict(prune_to=2, prune_strategy="middle"), "prune_strategy: unknown pruning strategy 'middle'"),
    ("mt", dict(decoder_layers_to_keep="0,9"), "decoder_layers_to_keep='0,9': kept layer(s) [9] out of range for "
                                               "the decoder (it has 6 layers"),
    ("mt", dict(encoder_prune_to=9), "encoder_prune_to=9: cannot prune the encoder to 9 layers: it has 6"),
])
def test_a_bad_pruning_keyword_is_refused_naming_the_keyword_not_a_flag(request, model, keywords, message):
    """The hub user typed ``prune_to=7``, not ``--prune-to 7``: the refusal says what was typed."""
    from fairseq_layerdrop.pruning.state_dict import PruningError

    load, checkpoint, data = ((hub_lm, "lm_checkpoint", "lm_data") if model == "lm" else
                              (hub_translator, "mt_checkpoint", "translation_data"))
    with pytest.raises(PruningError) as refused:
        load(request.getfixturevalue(checkpoint), request.getfixturevalue(data), **keywords)
    assert message in str(refused.value) and "--" not in str(refused.value), str(refused.value)


def test_lm_self_speculative_through_the_hub_is_the_greedy_continuation(lm_checkpoint, lm_data):
    """``TransformerLanguageModel.from_pretrained(...).sample(prompts, beam=1, self_speculative=E, draft_tokens=K)``
    continues every prompt exactly as plain greedy decoding does, through the self-speculative generator."""
    from fairseq_layerdrop.decoding.self_speculative import SelfSpeculativeGenerator

    # the checkpoint was trained with fairseq's language_modeling task: the plugin's task is named as an override
    hub = hub_lm(lm_checkpoint, lm_data, task={"_name": "language_modeling_layerdrop"})
    prompts = [" ".join(s.split()[: 1 + i % 4]) for i, s in enumerate(raw_lines(lm_data, "test.txt")[:24])]
    greedy = dict(beam=1, sampling=False, max_len_b=16)
    expected = hub.sample(prompts, **greedy)
    assert len(set(expected)) > len(expected) // 2  # continuations depend on the prompt

    built = []
    original = hub.task.build_generator

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    hub.task.build_generator = spy
    for exit_layer, draft in ((1, 4), (3, 2)):
        assert hub.sample(prompts, **greedy, self_speculative=exit_layer, draft_tokens=draft) == expected
        generator = built[-1]
        assert isinstance(generator, SelfSpeculativeGenerator)
        assert (generator.exit_layer, generator.draft_tokens) == (exit_layer, draft)
    with pytest.raises(ValueError, match=r"--self-speculative supports plain greedy decoding.*--beam 5"):
        hub.sample(prompts[:2], beam=5, self_speculative=2, draft_tokens=2)
