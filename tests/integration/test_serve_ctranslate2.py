"""`fairseq-layerdrop prune --as-fairseq / --for-ctranslate2`: a pruned plugin model written as fairseq's own
architecture, loaded by plain fairseq without --user-dir, converted by ct2-fairseq-converter, and computing in
CTranslate2 what fairseq computes (the expected values come from fairseq's commands and fairseq's hub, never from
the plugin). See docs/serve.md."""

import json
import math
import os
import re
import subprocess

import pytest
import torch

from fairseq_layerdrop.pruning import export
from fairseq_layerdrop.pruning.plain_fairseq import as_plain_fairseq
from fairseq_layerdrop.pruning.state_dict import PruningError
from tests.helpers import BIN, PLUGIN, TRAIN_COMMON, fairseq, run_main

ctranslate2 = pytest.importorskip("ctranslate2")

MT_KEEP = ["--encoder-layers-to-keep", "0,2,4", "--decoder-prune-to", "3"]
MAX_LEN = 12  # fairseq's --max-len-a 0 --max-len-b 12 and CTranslate2's max_decoding_length: up to 12 tokens + </s>
GREEDY = ["--cpu", "--beam", "1", "--batch-size", "64", "--required-batch-size-multiple", "1", "--gen-subset", "test",
          "--max-len-a", "0", "--max-len-b", str(MAX_LEN)]
# int8 (weights quantized per row, activations per batch row) moves the logits of these tiny, barely trained models a
# little. For the LMs: 98-100% of greedy token positions agree and the log-likelihood moves by 0.04%, so the
# thresholds (90% of positions, 1% of the log-likelihood) catch a broken conversion without failing on a legitimate
# quantization flip. The translation model is narrower and its greedy choices are near ties: one flipped first token
# changes the whole hypothesis (measured: 66% of first tokens, 61% of positions agree), so greedy agreement says
# little there. Its check is teacher-forced: int8's log-likelihood of fairseq's own hypotheses must keep most of what
# float32 gains over a uniform guess over the target vocabulary (measured: 92% kept). The conversion itself is checked
# exactly, in float32, by the test before it.
INT8_AGREEMENT = 0.90
INT8_GAIN_KEPT = 0.75
INT8_NLL_TOLERANCE = 0.01


def lines_by_id(output, tag):
    """``{sentence id: tokens}`` of fairseq-generate's ``S-`` / ``H-`` lines."""
    found = {}
    for line in output.splitlines():
        if line.startswith(f"{tag}-"):
            fields = line.split("\t")
            found[int(fields[0][len(tag) + 1:])] = fields[-1].split() if len(fields) > (2 if tag == "H" else 1) else []
    return found


def agreement(reference, other):
    """Share of the reference's token positions (and final </s>) where ``other`` has the same token."""
    same = total = 0
    for ref, out in zip(reference, other):
        ref, out = ref + ["</s>"], out + ["</s>"]
        total += max(len(ref), len(out))
        same += sum(a == b for a, b in zip(ref, out))
    return same / total


def convert_with_ct2_command(checkpoint, data, out_dir, *extra):
    subprocess.run([os.path.join(BIN, "ct2-fairseq-converter"), "--model_path", str(checkpoint), "--data_dir",
                    str(data), "--output_dir", str(out_dir), "--unsafe_deserialization", *extra],
                   check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return str(out_dir)


def convert_in_process(checkpoint, data, out_dir):
    """What ``ct2-fairseq-converter ... --unsafe_deserialization`` does, without its 5 s of imports."""
    from ctranslate2.converters import FairseqConverter

    FairseqConverter(str(checkpoint), str(data), unsafe_deserialization=True).convert(str(out_dir))
    return str(out_dir)


@pytest.fixture(scope="module")
def mt_model(translation_data, tmp_path_factory):
    """A post-norm transformer_layerdrop_tiny trained until its greedy outputs differ per sentence (about 60 updates)."""
    save_dir = tmp_path_factory.mktemp("serve_mt")
    common = [a for a in TRAIN_COMMON if a not in ("--max-tokens", "2000", "--lr", "0.005")]
    fairseq("fairseq-train", translation_data, *common, "--max-tokens", "400", "--lr", "0.002", "--save-dir", save_dir,
            "--user-dir", PLUGIN, "--arch", "transformer_layerdrop_tiny", "--max-epoch", "5", "--disable-validation")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def mt_served(mt_model, translation_data, tmp_path_factory):
    """The pruned exports (plain and for CTranslate2), the CTranslate2 model, and fairseq's greedy outputs."""
    root = tmp_path_factory.mktemp("serve_mt_out")
    run_main(export.main, mt_model, root / "plain.pt", *MT_KEEP, "--as-fairseq")
    run_main(export.main, mt_model, root / "ct2.pt", *MT_KEEP, "--for-ctranslate2")
    plain = fairseq("fairseq-generate", translation_data, "--path", root / "plain.pt", *GREEDY)  # no --user-dir
    on_load = fairseq("fairseq-generate", translation_data, "--path", mt_model, *GREEDY, "--user-dir", PLUGIN,
                      "--task", "translation_layerdrop", *MT_KEEP)
    ct2_dir = convert_with_ct2_command(root / "ct2.pt", translation_data, root / "ct2_model")
    return root, plain.stdout, on_load.stdout, ct2_dir


def test_plain_fairseq_generate_loads_the_translation_export_and_reproduces_the_pruned_plugin_model(mt_served):
    root, plain, on_load, _ = mt_served
    hypotheses = lines_by_id(plain, "H")
    assert len(hypotheses) == 50 and hypotheses == lines_by_id(on_load, "H")
    assert len({tuple(h) for h in hypotheses.values()}) > 10  # a model whose outputs differ: the check has teeth
    state = torch.load(root / "plain.pt", weights_only=True)  # torch's safe loader, as plain fairseq loads it
    model, task = state["cfg"]["model"], state["cfg"]["task"]
    assert (model["_name"], model["arch"], task["_name"]) == ("transformer", "transformer", "translation")
    assert (model["encoder_layers"], model["decoder_layers"], model["encoder_layerdrop"]) == (3, 3, 0.0)
    assert "layerdrop_structure" not in model and "prune_to" not in task and state["args"] is None


def test_ctranslate2_greedy_translation_is_fairseq_generate_beam_1_token_for_token(mt_served):
    _, plain, _, ct2_dir = mt_served
    sources, expected = lines_by_id(plain, "S"), lines_by_id(plain, "H")
    ids = sorted(sources)
    translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type="float32", intra_threads=1)
    results = translator.translate_batch([sources[i] for i in ids], beam_size=1, max_decoding_length=MAX_LEN,
                                         min_decoding_length=1)  # fairseq's --min-len 1: no </s> first
    assert [r.hypotheses[0] for r in results] == [expected[i] for i in ids]


def test_ctranslate2_int8_translation_runs_and_keeps_most_of_float32s_log_likelihood(mt_served):
    _, plain, _, ct2_dir = mt_served
    sources, expected = lines_by_id(plain, "S"), lines_by_id(plain, "H")
    ids = sorted(sources)
    source_batch, target_batch = [sources[i] for i in ids], [expected[i] for i in ids]
    translators = {compute_type: ctranslate2.Translator(ct2_dir, device="cpu", compute_type=compute_type,
                                                        intra_threads=1) for compute_type in ("float32", "int8")}
    nll = {}
    for compute_type, translator in translators.items():
        scored = translator.score_batch(source_batch, target_batch)  # each target token and </s>, given the ones before
        assert [len(r.log_probs) for r in scored] == [len(t) + 1 for t in target_batch]
        nll[compute_type] = -sum(sum(r.log_probs) for r in scored) / sum(len(t) + 1 for t in target_batch)
    results = translators["int8"].translate_batch(source_batch, beam_size=1, max_decoding_length=MAX_LEN,
                                                  min_decoding_length=1)
    assert len(results) == 50 and all(r.hypotheses[0] for r in results)
    with open(os.path.join(ct2_dir, "target_vocabulary.json")) as vocabulary:
        uniform = math.log(len(json.load(vocabulary)))  # the per-token loss of a model that learned nothing
    assert nll["float32"] < uniform - 1.0  # the model learned something for int8 to keep
    assert (uniform - nll["int8"]) / (uniform - nll["float32"]) >= INT8_GAIN_KEPT


@pytest.fixture(scope="module")
def post_norm_lm(lm_data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("serve_post_norm_lm")
    fairseq("fairseq-train", lm_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN, "--task",
            "language_modeling", "--tokens-per-sample", "64", "--arch", "transformer_lm_layerdrop_tiny",
            "--decoder-post-norm", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module", params=["pre-norm", "post-norm"])
def lm_served(request, lm_data, tmp_path_factory):
    """A pruned plugin LM (pre-norm: the named variants' default; post-norm: --decoder-post-norm) exported both
    ways and converted."""
    checkpoint = request.getfixturevalue("lm_checkpoint" if request.param == "pre-norm" else "post_norm_lm")
    root = tmp_path_factory.mktemp(f"serve_lm_{request.param}")
    run_main(export.main, checkpoint, root / "plain.pt", "--prune-to", "3", "--as-fairseq")
    run_main(export.main, checkpoint, root / "ct2.pt", "--prune-to", "3", "--for-ctranslate2")
    return request.param, checkpoint, root, convert_in_process(root / "ct2.pt", lm_data, root / "ct2_model")


def perplexity(*args):
    proc = fairseq("fairseq-eval-lm", *args, "--cpu", "--tokens-per-sample", "64")
    return re.search(r"Perplexity: ([0-9.]+)", proc.stdout + proc.stderr).group(1)


def test_plain_fairseq_eval_lm_loads_the_lm_export_and_reproduces_the_pruned_plugin_model(lm_served, lm_data):
    norm, checkpoint, root, _ = lm_served
    plain = perplexity(lm_data, "--path", root / "plain.pt")  # no --user-dir
    on_load = perplexity(lm_data, "--path", checkpoint, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                         "--prune-to", "3")
    assert plain == on_load
    model = torch.load(root / "plain.pt", weights_only=True)["cfg"]["model"]
    assert model["_name"] == "transformer_lm" and model["decoder_layers"] == 3
    assert model["decoder_normalize_before"] is (norm == "pre-norm")


def fairseq_scores(root, lm_data, sentences):
    """Per-token natural log-probabilities (each word, then </s>) from fairseq's hub, on the plain export."""
    from fairseq.models.transformer_lm import TransformerLanguageModel

    lm = TransformerLanguageModel.from_pretrained(str(root), checkpoint_file="plain.pt",
                                                  data_name_or_path=str(lm_data)).eval()
    scores = []
    for sentence in sentences:
        tokens = lm.encode(sentence)  # the words and </s>: score them all given </s> first, as fairseq-eval-lm does
        with torch.no_grad():
            logits = lm.models[0](torch.cat([tokens[-1:], tokens[:-1]]).unsqueeze(0))[0]
            log_probs = lm.models[0].get_normalized_probs((logits, None), log_probs=True)[0]
        scores.append(log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist())
    return scores


def test_ctranslate2_lm_log_probs_are_fairseqs(lm_served, lm_data):
    _, _, root, ct2_dir = lm_served
    sentences = [line.split() for line in open(os.path.join(os.path.dirname(lm_data), "raw", "test.txt"))]
    expected = fairseq_scores(root, lm_data, [" ".join(s) for s in sentences])
    generator = ctranslate2.Generator(ct2_dir, device="cpu", compute_type="float32", intra_threads=1)
    results = generator.score_batch([["</s>"] + s + ["</s>"] for s in sentences])  # the first token is not scored
    assert len(results) == len(expected) == 100
    for result, reference in zip(results, expected):
        assert result.log_probs == pytest.approx(reference, abs=1e-4)
    int8 = ctranslate2.Generator(ct2_dir, device="cpu", compute_type="int8", intra_threads=1)
    nll = {name: -sum(sum(r.log_probs) for r in batch) for name, batch in
           (("float32", results), ("int8", int8.score_batch([["</s>"] + s + ["</s>"] for s in sentences])))}
    assert nll["int8"] == pytest.approx(nll["float32"], rel=INT8_NLL_TOLERANCE)


def test_ctranslate2_greedy_lm_continuation_is_fairseq_generate_beam_1(lm_served, lm_data):
    _, _, root, ct2_dir = lm_served
    proc = fairseq("fairseq-generate", lm_data, "--path", root / "plain.pt", "--task", "language_modeling", *GREEDY,
                   "--sample-break-mode", "eos", "--tokens-per-sample", "64", "--prefix-size", "3")
    prompts, expected = lines_by_id(proc.stdout, "S"), lines_by_id(proc.stdout, "H")
    ids = sorted(prompts)
    generator = ctranslate2.Generator(ct2_dir, device="cpu", compute_type="float32", intra_threads=1)
    results = generator.generate_batch([["</s>"] + prompts[i][:3] for i in ids], beam_size=1, max_length=MAX_LEN,
                                       include_prompt_in_result=True)
    assert len(ids) == 100 and [r.sequences[0] for r in results] == [expected[i] for i in ids]
    int8 = ctranslate2.Generator(ct2_dir, device="cpu", compute_type="int8", intra_threads=1)
    quantized = int8.generate_batch([["</s>"] + prompts[i][:3] for i in ids], beam_size=1, max_length=MAX_LEN,
                                    include_prompt_in_result=True)
    assert agreement([expected[i] for i in ids], [r.sequences[0] for r in quantized]) >= INT8_AGREEMENT


def test_an_unpruned_plugin_checkpoint_converts_too(lm_checkpoint, lm_data, tmp_path):
    proc = run_main(export.main, lm_checkpoint, tmp_path / "full.pt", "--for-ctranslate2")
    assert "kept layers" not in proc.stdout and "transformer_lm_layerdrop_tiny -> transformer_lm" in proc.stdout
    generator = ctranslate2.Generator(convert_in_process(tmp_path / "full.pt", lm_data, tmp_path / "ct2"))
    assert len(generator.score_batch([["</s>", "w1", "w2"]])[0].log_probs) == 2


def test_gates_and_plugin_task_and_criterion_map_to_fairseqs_own(lm_checkpoint):
    state = torch.load(lm_checkpoint, weights_only=True)
    state["cfg"]["task"]["_name"] = "language_modeling_layerdrop"
    state["cfg"]["task"]["early_exit"] = 2
    state["cfg"]["criterion"] = {"_name": "gated_cross_entropy", "sentence_avg": False, "gate_weight": 0.5,
                                 "gate_baseline_decay": 0.9}
    state["cfg"]["model"]["layer_gates"] = True
    for i in range(6):
        state["model"][f"decoder.layers.{i}.layerdrop_gate"] = torch.zeros(())
    notes = as_plain_fairseq(state)
    assert state["cfg"]["task"]["_name"] == "language_modeling" and "early_exit" not in state["cfg"]["task"]
    assert state["cfg"]["criterion"] == {"_name": "cross_entropy", "sentence_avg": False}
    assert not any(k.endswith("layerdrop_gate") for k in state["model"])
    assert not hasattr(state["model"], "load_with_user_dir")  # the plugin's --user-dir mark is gone
    assert any("early_exit" in n for n in notes) and any("gate_weight" in n for n in notes)
    assert any("layer_gates" in n for n in notes) and any("6 learned layer gates" in n for n in notes)


def edit(checkpoint, change):
    state = torch.load(checkpoint, weights_only=True)
    change(state)
    return state


def drop_keys(prefix):
    def change(state):
        for key in [k for k in state["model"] if k.startswith(prefix)]:
            del state["model"][key]
    return change


@pytest.mark.parametrize("change, ct2, message", [
    (lambda s: s["model"].__setitem__("decoder.layers.0.layer_scale", torch.ones(64)), False,
     r"^--as-fairseq: fairseq's transformer_lm cannot run these weights: parameters it has no place for: "
     r"decoder\.layers\.0\.layer_scale$"),
    (drop_keys("decoder.layers.1.fc"), False, r"decoder layer 1 has no feed-forward block$"),
    (drop_keys("decoder.layers.2.self_attn."), False, r"decoder layer 2 has no self-attention$"),
    (lambda s: s["cfg"]["model"].update(decoder_normalize_before=False), False,
     r"cannot run these weights: parameters it has no place for: decoder\.layer_norm\.weight"),
    (lambda s: s["cfg"]["model"].update(_name="lstm_lm"), False,
     r"writes fairseq's transformer, transformer_lm and roberta; this checkpoint's model is lstm_lm"),
    (lambda s: s["cfg"]["model"].update(activation_fn="tanh"), True,
     r"^--for-ctranslate2: CTranslate2's Transformer cannot compute this transformer_lm: --activation-fn tanh"),
    (lambda s: s["cfg"]["model"].update(decoder_output_dim=32), True,
     r"only one of --decoder-input-dim and --decoder-output-dim differing"),
    (lambda s: s["cfg"]["optimizer"].update(_name="early_exit_cross_entropy"), False,
     r"still names what only the plugin registers, .*cfg\.optimizer\._name=early_exit_cross_entropy"),
])
def test_what_fairseq_or_ctranslate2_cannot_express_is_refused_in_one_line(lm_checkpoint, change, ct2, message):
    with pytest.raises(PruningError, match=message) as error:
        as_plain_fairseq(edit(lm_checkpoint, change), for_ctranslate2=ct2)
    assert "\n" not in str(error.value)


def test_the_command_refuses_and_writes_nothing(lm_checkpoint, tmp_path):
    state = edit(lm_checkpoint, lambda s: s["cfg"]["model"].update(activation_fn="tanh"))
    torch.save(state, tmp_path / "tanh.pt")
    proc = run_main(export.main, tmp_path / "tanh.pt", tmp_path / "out.pt", "--for-ctranslate2", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: --for-ctranslate2: CTranslate2's")
    assert not (tmp_path / "out.pt").exists()
    proc = run_main(export.main, lm_checkpoint, tmp_path / "out.pt", check=False)
    assert proc.returncode == 1 and "or --as-fairseq / --for-ctranslate2 to convert without pruning" in proc.stderr

