"""Early exit and self-speculative decoding through fairseq-generate and fairseq-interactive.

Self-speculative output must be token for token fairseq's own greedy (``--beam 1``) output, on the
whole test split of the toy data, for several exit layers E and draft lengths K, in translation and
in language-model prompt continuation; ``--early-exit E`` must decode as the decoder pruned to its
first E layers; bad flags must stop with a message naming the flag, before the data is read.
Models: the session's 2-epoch tiny LM (6 layers, pre-norm with a final layer norm) and, for translation, a pre-norm tiny
6+6 model as initialized (one update at lr 1e-9): the session's 2-epoch translation model answers "t19"
to everything, which would hide a wrong cache, and a few updates more collapse it the same way; an
untrained model's output depends on its whole input and runs to the maximum length. Decoded in
batches (the generator decodes one sentence at a time, fairseq's greedy the whole batch), with
a maximum length that depends on the batch (``--max-len-a 1``), as fairseq computes it.
"""

import re

import pytest
import torch

from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq, load_models

MT_DECODE = ["--cpu", "--beam", "1", "--batch-size", "8", "--required-batch-size-multiple", "1", "--max-len-a", "1",
             "--max-len-b", "3", "--gen-subset", "test"]  # batches of any size: every sentence of the split
TEST_SENTENCES = 50  # the translation test split of tests/conftest.py
LM_DECODE = ["--cpu", "--beam", "1", "--batch-size", "4", "--buffer-size", "4", "--max-len-b", "24"]
SUMMARY = re.compile(r"self-speculative decoding \(draft with layers 1-(\d+) of (\d+), (\d+) draft tokens\): "
                     r"([\d,]+) sentences, ([\d,]+) tokens .* accepted ([\d,]+) of ([\d,]+) drafted tokens "
                     r"\((?:acceptance rate [\d.]+%|no drafts)\), ([\d,]+) verifications .*; tokens: ([\d,]+) accepted "
                     r"drafts \+ ([\d,]+) chosen by the full model \+ ([\d,]+) forced")


def hypotheses(stdout):
    """{sentence id: hypothesis text} from fairseq's H- lines."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("H-"):
            key, _, text = line.split("\t")
            found[int(key[2:])] = text
    return found


def positional_score_count(stdout):
    """How many tokens fairseq scored (its P- lines: one score per token, end of sentence included)."""
    return sum(len(line.split("\t")[1].split()) for line in stdout.splitlines() if line.startswith("P-"))


def summary(stderr):
    match = SUMMARY.search(stderr)
    assert match, f"no self-speculative summary in the log:\n{stderr[-2000:]}"
    (exit_layer, depth, draft, sentences, tokens, accepted, drafted, verifications, accepted_again, chosen,
     forced) = (int(g.replace(",", "")) for g in match.groups())
    assert accepted_again == accepted
    return dict(exit_layer=exit_layer, depth=depth, draft=draft, sentences=sentences, tokens=tokens,
                accepted=accepted, drafted=drafted, verifications=verifications, chosen=chosen, forced=forced)


class Hypotheses(dict):
    """{sentence id: text}, and the number of tokens generated (``tokens``)."""


def generate(data, checkpoint, *flags, check=True):
    return fairseq("fairseq-generate", data, "--user-dir", PLUGIN, "--task", "translation_layerdrop",
                   "--path", checkpoint, *MT_DECODE, *flags, check=check)


@pytest.fixture(scope="module")
def lm_prompts(lm_data, tmp_path_factory):
    """One prompt per sentence of the LM test split: its first 1 to 4 words (lengths vary within a batch)."""
    lines = (lm_data.parent / "raw" / "test.txt").read_text().splitlines()
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("".join(" ".join(line.split()[: 1 + i % 4]) + "\n" for i, line in enumerate(lines)))
    return path, len(lines)


def interactive(lm_data, checkpoint, prompts, *flags, check=True):
    return fairseq("fairseq-interactive", lm_data, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                   "--path", checkpoint, *LM_DECODE, "--input", prompts, *flags, check=check)


@pytest.fixture(scope="module")
def mt_checkpoint(translation_data, tmp_path_factory):
    """A pre-norm transformer_layerdrop_tiny as initialized (its head has the final layer norm)."""
    save_dir = tmp_path_factory.mktemp("mt_prenorm")
    fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
            "--arch", "transformer_layerdrop_tiny", "--encoder-normalize-before", "--decoder-normalize-before",
            "--max-update", "1", "--lr", "1e-9", "--no-save-optimizer-state", "--disable-validation")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def mt_greedy(translation_data, mt_checkpoint):
    proc = generate(translation_data, mt_checkpoint)
    found = Hypotheses(hypotheses(proc.stdout))
    assert len(found) == sum(line.startswith("S-") for line in proc.stdout.splitlines()) == TEST_SENTENCES
    assert len(set(found.values())) > len(found) // 2  # outputs depend on the input
    found.tokens = positional_score_count(proc.stdout)
    return found


@pytest.fixture(scope="module")
def lm_greedy(lm_data, lm_checkpoint, lm_prompts):
    found = hypotheses(interactive(lm_data, lm_checkpoint, lm_prompts[0]).stdout)
    assert len(found) == lm_prompts[1]
    return found


@pytest.mark.parametrize("exit_layer, draft", [(1, 2), (3, 4), (5, 6)])
def test_translation_self_speculative_is_greedy(translation_data, mt_checkpoint, mt_greedy, exit_layer, draft):
    proc = generate(translation_data, mt_checkpoint, "--self-speculative", exit_layer, "--draft-tokens", draft)
    assert hypotheses(proc.stdout) == mt_greedy
    stats = summary(proc.stderr)
    assert (stats["exit_layer"], stats["depth"], stats["draft"], stats["sentences"]) == (exit_layer, 6, draft, len(mt_greedy))
    assert stats["tokens"] == mt_greedy.tokens
    assert stats["accepted"] + stats["chosen"] + stats["forced"] == stats["tokens"]
    assert stats["chosen"] <= stats["verifications"] and stats["drafted"] <= draft * stats["verifications"]
    assert stats["accepted"] <= stats["drafted"]


@pytest.mark.parametrize("exit_layer, draft", [(1, 6), (2, 4), (5, 2)])
def test_lm_continuation_self_speculative_is_greedy(lm_data, lm_checkpoint, lm_prompts, lm_greedy, exit_layer, draft):
    proc = interactive(lm_data, lm_checkpoint, lm_prompts[0], "--self-speculative", exit_layer, "--draft-tokens", draft)
    assert hypotheses(proc.stdout) == lm_greedy
    stats = summary(proc.stderr)
    assert (stats["exit_layer"], stats["draft"], stats["sentences"]) == (exit_layer, draft, lm_prompts[1])
    prompt_tokens = sum(len(line.split()) for line in lm_prompts[0].read_text().splitlines())
    assert stats["tokens"] == positional_score_count(proc.stdout) - prompt_tokens  # the prompt is not generated
    assert stats["accepted"] + stats["chosen"] + stats["forced"] == stats["tokens"]
    assert stats["chosen"] <= stats["verifications"] and stats["accepted"] <= stats["drafted"]


def test_translation_through_fairseq_interactive_is_greedy(translation_data, mt_checkpoint):
    source = translation_data.parent / "raw" / "test.src"

    def translate(*flags):
        return fairseq("fairseq-interactive", translation_data, "--user-dir", PLUGIN, "--task", "translation_layerdrop",
                       "--source-lang", "src", "--target-lang", "tgt", "--path", mt_checkpoint, "--cpu", "--beam", "1",
                       "--batch-size", "8", "--buffer-size", "8", "--max-len-a", "1", "--max-len-b", "3", "--input", source,
                       *flags)

    greedy = hypotheses(translate().stdout)
    assert len(greedy) == len(source.read_text().splitlines()) == TEST_SENTENCES
    proc = translate("--self-speculative", 2, "--draft-tokens", 3)
    assert hypotheses(proc.stdout) == greedy
    stats = summary(proc.stderr)
    assert (stats["exit_layer"], stats["depth"], stats["draft"], stats["sentences"]) == (2, 6, 3, TEST_SENTENCES)


def test_translation_early_exit_is_top_pruning(translation_data, mt_checkpoint, mt_greedy):
    exited = generate(translation_data, mt_checkpoint, "--early-exit", 2)
    pruned = generate(translation_data, mt_checkpoint, "--decoder-prune-to", 2, "--prune-strategy", "top")
    assert "pruning the decoder: keeping layers [0, 1] of 6" in exited.stderr
    assert hypotheses(exited.stdout) == hypotheses(pruned.stdout)
    assert hypotheses(exited.stdout) != mt_greedy  # two layers of six do decode differently


def test_lm_early_exit_is_top_pruning(lm_data, lm_checkpoint, lm_prompts, lm_greedy):
    exited = interactive(lm_data, lm_checkpoint, lm_prompts[0], "--early-exit", 3)
    pruned = interactive(lm_data, lm_checkpoint, lm_prompts[0], "--layers-to-keep", "0,1,2")
    assert "pruning the decoder: keeping layers [0, 1, 2] of 6" in exited.stderr
    assert hypotheses(exited.stdout) == hypotheses(pruned.stdout)
    assert hypotheses(exited.stdout) != lm_greedy


def test_layer_ranges_compute_the_pruned_and_the_full_decoder(translation_data, mt_checkpoint):
    """The drafting path (layers 0..E-1 and the head, one position at a time, cached) gives the
    log-probabilities of the decoder pruned to its first E layers; the verifying path (layers E..N-1
    over several positions at once) completes them to the full decoder's."""
    from fairseq_layerdrop.decoding.layer_range import DecoderLayerRange

    full, task = load_models(translation_data, mt_checkpoint, "--task", "translation_layerdrop")
    pruned, _ = load_models(translation_data, mt_checkpoint, "--task", "translation_layerdrop", "--early-exit", "2")
    src = torch.tensor([[5, 9, 12, 7, task.source_dictionary.eos()]])
    prev = torch.tensor([[task.target_dictionary.eos(), 8, 15, 6, 11]])
    with torch.no_grad():
        expected_full = full.get_normalized_probs(full(src, torch.tensor([5]), prev), log_probs=True)[0]
        expected_exit = pruned.get_normalized_probs(pruned(src, torch.tensor([5]), prev), log_probs=True)[0]
        stack = DecoderLayerRange(full.decoder, full.encoder(src, src_lengths=torch.tensor([5])), 8)
        tokens = prev[0].tolist()
        drafted = [stack.run(stack.embed([t], i), 0, 2, i) for i, t in enumerate(tokens)]
        exit_lprobs = torch.cat([stack.log_probs(h) for h in drafted])
        full_lprobs = stack.log_probs(stack.run(torch.cat(drafted), 2, 6, 0))
    assert torch.allclose(exit_lprobs, expected_exit, atol=1e-5)
    assert torch.allclose(full_lprobs, expected_full, atol=1e-5)
    assert not torch.allclose(exit_lprobs, full_lprobs, atol=1e-3)


@pytest.mark.parametrize("flags, message", [
    (["--self-speculative", "6", "--draft-tokens", "2"], "--self-speculative 6: the decoder has 6 layers, so choose 1 to 5"),
    (["--early-exit", "7"], "--early-exit 7: the decoder has 6 layers, so choose 1 to 6"),
    (["--self-speculative", "2"], "--self-speculative E needs --draft-tokens K"),
    (["--self-speculative", "2", "--draft-tokens", "0"], "--draft-tokens must be at least 1"),
    (["--self-speculative", "two", "--draft-tokens", "2"], "argument --self-speculative: invalid int value: 'two'"),
])
def test_bad_flags_stop_before_the_data_is_read(translation_data, mt_checkpoint, flags, message):
    proc = generate(translation_data, mt_checkpoint, *flags, "--gen-subset", "nosuchsplit", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Dataset not found" not in proc.stderr  # the (missing) split was never looked for


@pytest.mark.parametrize("flags, message", [(["--beam", "5"], "--beam 5 (it decodes greedily: give --beam 1)"),
                                            (["--sampling"], "--sampling")])
def test_other_searches_are_refused(lm_data, lm_checkpoint, lm_prompts, flags, message):
    proc = interactive(lm_data, lm_checkpoint, lm_prompts[0], "--self-speculative", 2, "--draft-tokens", 2, *flags,
                       check=False)
    assert proc.returncode != 0
    assert "--self-speculative supports plain greedy decoding of one model only" in proc.stderr
    assert message in proc.stderr


def positional_scores(stdout):
    """{sentence id: [score per token]} from fairseq's P- lines."""
    return {int(line.split("\t")[0][2:]): [float(v) for v in line.split("\t")[1].split()]
            for line in stdout.splitlines() if line.startswith("P-")}


def targets(stdout):
    return {int(line.split("\t")[0][2:]): line.split("\t")[1] for line in stdout.splitlines() if line.startswith("T-")}


def assert_same_scores(found, expected):
    assert found.keys() == expected.keys()
    for key in expected:
        assert found[key] == pytest.approx(expected[key], abs=2e-4), key  # printed with 4 decimals


PREFIX = 6  # forced target tokens; the toy targets have 3 to 10 words, so a third of them end inside the prefix


@pytest.fixture(scope="module")
def upper_layers_add_nothing(mt_checkpoint, tmp_path_factory):
    """The pre-norm model with decoder layers 2..5 adding exactly zero to the residual stream (their attention
    output and fc2 projections zeroed: x + 0 = x), so the full model's choice is the draft of layers 0..1."""
    state = torch.load(mt_checkpoint, weights_only=False)
    for key, value in state["model"].items():
        upper = key.startswith("decoder.layers.") and int(key.split(".")[2]) >= 2
        if upper and (".out_proj." in key or ".fc2." in key):
            value.zero_()
    path = tmp_path_factory.mktemp("mt_upper_zero") / "checkpoint.pt"
    torch.save(state, path)
    return path


def test_a_prefix_that_ends_the_sentence_ends_it_as_in_fairseq_and_the_counts_are_exact(
        translation_data, upper_layers_add_nothing):
    """``--prefix-size 6``, longer than a third of the references, forces their ``</s>``: fairseq's greedy ends
    those hypotheses there (each is its reference), and so must self-speculative decoding (it decoded on).

    The counts, by hand: every draft is accepted (see the fixture), ``--min-len 10 --max-len-b 10`` make every
    other hypothesis 10 tokens and the ``</s>`` forced at 10. After the 6 prefix tokens, with E=2, K=3: one
    verification drafts positions 6-8 (all accepted) and takes the full model's bonus token at 9; a second one
    only scores the forced ``</s>`` at 10, which is no draft. A hypothesis that ended in its prefix costs nothing."""
    flags = ["--prefix-size", PREFIX, "--max-len-a", 0, "--max-len-b", 10, "--min-len", 10]
    greedy = generate(translation_data, upper_layers_add_nothing, *flags)
    proc = generate(translation_data, upper_layers_add_nothing, *flags, "--self-speculative", 2, "--draft-tokens", 3)
    expected, refs = hypotheses(greedy.stdout), targets(greedy.stdout)
    assert hypotheses(proc.stdout) == expected
    assert_same_scores(positional_scores(proc.stdout), positional_scores(greedy.stdout))
    short = [i for i, ref in refs.items() if len(ref.split()) + 1 <= PREFIX]  # its </s> inside the prefix
    assert 10 <= len(short) < len(refs) == TEST_SENTENCES
    assert all(expected[i] == refs[i] for i in short)  # fairseq's own rule, as this test reads it
    assert all(len(scores) == 11 for i, scores in positional_scores(greedy.stdout).items() if i not in short)
    long = TEST_SENTENCES - len(short)
    assert summary(proc.stderr) == dict(exit_layer=2, depth=6, draft=3, sentences=TEST_SENTENCES, tokens=5 * long,
                                        verifications=2 * long, drafted=3 * long, accepted=3 * long, chosen=long,
                                        forced=long)


def test_lm_blocks_with_end_of_sentence_through_fairseq_generate(lm_data, lm_checkpoint):
    """An LM through fairseq-generate with the default ``--sample-break-mode none``: each block (the whole
    block is the forced prefix) holds ``</s>``, where fairseq's greedy ends the hypothesis. Nothing is left to
    draft, and the summary says so instead of an acceptance rate."""
    def run(*flags):
        return fairseq("fairseq-generate", lm_data, "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                       "--path", lm_checkpoint, "--cpu", "--beam", "1", "--batch-size", "4", "--tokens-per-sample",
                       "64", "--gen-subset", "test", *flags)

    greedy = run()
    proc = run("--self-speculative", 2, "--draft-tokens", 4)
    expected = hypotheses(greedy.stdout)
    assert len(expected) > 20
    assert hypotheses(proc.stdout) == expected
    assert_same_scores(positional_scores(proc.stdout), positional_scores(greedy.stdout))
    stats = summary(proc.stderr)
    assert (stats["sentences"], stats["tokens"], stats["drafted"], stats["verifications"]) == (len(expected), 0, 0, 0)
    assert "(no drafts)" in proc.stderr
