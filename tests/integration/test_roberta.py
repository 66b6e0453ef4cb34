"""RoBERTa (encoder-only, masked LM) with the plugin: ``roberta_layerdrop`` pre-training, pruning the encoder of
the plugin's and of fairseq's own ``roberta`` (on load, by export, with every strategy), fine-tuning a pruned
model on sentence classification, and the hub. Tiny models (4 layers of width 32) on a generated corpus."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import fairseq_layerdrop  # noqa: F401  (allow-lists the classes plugin checkpoints hold, for torch.load here)
from scripts.data import toy_data
from tests.conftest import preprocess
from tests.helpers import PLUGIN, TRAIN_COMMON, build_model, fairseq, json_logs, run_main

SHAPE = ["--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
         "--encoder-attention-heads", "2"]
PRETRAIN = [*TRAIN_COMMON, "--task", "masked_lm", "--criterion", "masked_lm", "--tokens-per-sample", "32",
            "--batch-size", "8", "--max-update", "6", *SHAPE]
# fairseq's RoBERTa fine-tuning flags (examples/roberta/README.glue.md), at this size
FINETUNE = [*TRAIN_COMMON, "--criterion", "sentence_prediction", "--num-classes", "2", "--max-positions", "32",
            "--init-token", "0", "--separator-token", "2", "--batch-size", "8", "--required-batch-size-multiple", "1",
            "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--max-update", "3",
            "--encoder-layerdrop", "0"]
LAYERS = "encoder.sentence_encoder.layers."
HEAD = "sentence_classification_head"
DATA_READ = re.compile(r"loaded \d+ (examples|blocks) from")  # fairseq's log line for each split it reads


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``mlm``: a masked-LM corpus (fairseq-preprocess --only-source); ``classes``: sentence classification
    data on its dictionary (``input0``, ``label``: whether the first word's number is even)."""
    root = tmp_path_factory.mktemp("roberta_data")
    (root / "raw").mkdir()
    for split, count, seed in (("train", 200, 1), ("valid", 40, 2)):
        lines = toy_data.lm_sentences(count, seed)
        (root / "raw" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        labels = ["even" if int(line.split()[0][1:]) % 2 == 0 else "odd" for line in lines]
        (root / "raw" / f"{split}.label").write_text("\n".join(labels) + "\n")
    preprocess("--only-source", "--trainpref", root / "raw/train.txt", "--validpref", root / "raw/valid.txt",
               "--destdir", root / "mlm", "--workers", "1")
    preprocess("--only-source", "--trainpref", root / "raw/train.txt", "--validpref", root / "raw/valid.txt",
               "--srcdict", root / "mlm/dict.txt", "--destdir", root / "classes/input0", "--workers", "1")
    preprocess("--only-source", "--trainpref", root / "raw/train.label", "--validpref", root / "raw/valid.label",
               "--destdir", root / "classes/label", "--workers", "1")
    return root


def pretrain(corpus, save_dir, *args):
    proc = fairseq("fairseq-train", corpus / "mlm", *PRETRAIN, "--save-dir", save_dir, *args)
    return save_dir / "checkpoint_last.pt", proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def fairseq_roberta(corpus, tmp_path_factory):
    """fairseq's own ``--arch roberta``, trained without the plugin: (checkpoint, log)."""
    return pretrain(corpus, tmp_path_factory.mktemp("fairseq_roberta"), "--arch", "roberta")


@pytest.fixture(scope="module")
def roberta_layerdrop(corpus, tmp_path_factory):
    """``roberta_layerdrop_tiny`` at its default rate (the paper's 0.2), with a draws log: (checkpoint, log, draws)."""
    save_dir = tmp_path_factory.mktemp("roberta_layerdrop")
    checkpoint, log = pretrain(corpus, save_dir, "--user-dir", PLUGIN, "--arch", "roberta_layerdrop_tiny",
                               "--layerdrop-draws-log", save_dir / "draws.jsonl")
    return checkpoint, log, save_dir / "draws.jsonl.rank0"


def finetune(corpus, save_dir, *args):
    proc = fairseq("fairseq-train", corpus / "classes", *FINETUNE, "--save-dir", save_dir, "--user-dir", PLUGIN, *args)
    return save_dir / "checkpoint_last.pt", proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def classifier(corpus, roberta_layerdrop, tmp_path_factory):
    """``roberta_layerdrop_tiny`` fine-tuned at full depth (it has a classification head)."""
    return finetune(corpus, tmp_path_factory.mktemp("classifier"), "--task", "sentence_prediction",
                    "--arch", "roberta_layerdrop_tiny", *SHAPE, "--restore-file", roberta_layerdrop[0])[0]


@pytest.fixture(scope="module")
def fairseq_classifier(corpus, fairseq_roberta, tmp_path_factory):
    """fairseq's own ``roberta`` fine-tuned with fairseq's ``sentence_prediction`` (the plugin only lets torch load
    the argparse config of the checkpoint it restores)."""
    return finetune(corpus, tmp_path_factory.mktemp("fairseq_classifier"), "--task", "sentence_prediction",
                    "--arch", "roberta", *SHAPE, "--restore-file", fairseq_roberta[0])[0]


def losses(log):
    return [(r["num_updates"], r["loss"], r["gnorm"]) for r in json_logs(log, "train_inner")]


def export(source, target, *options, check=True):
    from fairseq_layerdrop.pruning import export as export_module

    return run_main(export_module.main, source, target, *options, check=check)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def expected_pruned(original, kept):
    """The pruned state dict, built by hand: encoder layer ``kept[i]`` becomes layer ``i``, other keys as they were."""
    expected = {}
    for key, value in original.items():
        if key.startswith(LAYERS):
            old, rest = key[len(LAYERS):].split(".", 1)
            if int(old) in kept:
                expected[f"{LAYERS}{kept.index(int(old))}.{rest}"] = value
        else:
            expected[key] = value
    return expected


def assert_pruned_exactly(original, pruned, kept):
    expected = expected_pruned(original, kept)
    assert sorted(pruned) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(pruned[key], value), key
    untouched = [k for k in original if not k.startswith(LAYERS)]
    assert any(k.startswith("encoder.lm_head.") for k in untouched)
    assert "encoder.sentence_encoder.embed_tokens.weight" in untouched
    assert f"classification_heads.{HEAD}.out_proj.weight" in untouched


# -- the architecture ------------------------------------------------------------------------------------------


def test_roberta_layerdrop_at_rate_0_trains_exactly_as_fairseq_roberta(corpus, fairseq_roberta, tmp_path):
    checkpoint, log = pretrain(corpus, tmp_path, "--user-dir", PLUGIN, "--arch", "roberta_layerdrop_tiny",
                               "--encoder-layerdrop", "0")
    ours, theirs = losses(log), losses(fairseq_roberta[1])
    assert len(ours) == 6 and ours == theirs
    assert all(r["enc_layers_ran"] == 4 for r in json_logs(log, "train_inner"))
    ours, theirs = load(checkpoint)["model"], load(fairseq_roberta[0])["model"]
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # the same weights after 6 updates


def test_roberta_layerdrop_skips_layers_at_its_default_rate(roberta_layerdrop):
    checkpoint, log, draws = roberta_layerdrop
    records = [json.loads(line) for line in open(draws)]
    assert {r["stack"] for r in records} == {"encoder"} and len(records) == 6
    ran = [sum(plan != "-" for plan in r["plans"]) for r in records]
    assert min(ran) < 4  # layers were skipped
    assert [r["enc_layers_ran"] for r in json_logs(log, "train_inner")] == ran
    assert "encoder LayerDrop (layer): mean rate 0.2000" in log
    assert load(checkpoint)["cfg"]["model"].encoder_layerdrop == 0.2


def test_encoder_layers_are_the_seeded_drop_list(corpus):
    from fairseq_layerdrop.modules.layer_drop import SeededLayerDropList

    model, _ = build_model(corpus / "mlm", "--task", "masked_lm", "--arch", "roberta_layerdrop_tiny",
                           "--encoder-layerdrop", "0.3", "--layerdrop-schedule", "linear", "--seed", "5")
    layers = model.encoder.sentence_encoder.layers
    assert isinstance(layers, SeededLayerDropList) and len(layers) == 4 and layers.seed == 5
    assert layers.rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    model.train()
    model._get_adaptive_head_loss()  # fairseq's AdaPruning regularizer reads every layer, and draws nothing
    assert layers.micro_batch == 0 and model.encoder.sentence_encoder.layers is layers
    with pytest.raises(ValueError, match="--encoder-layerdrop must be in"):
        build_model(corpus / "mlm", "--task", "masked_lm", "--arch", "roberta_layerdrop_tiny",
                    "--encoder-layerdrop", "1")


# -- pruning: export ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["classifier", "fairseq_classifier"])
@pytest.mark.parametrize("options, kept", [
    (["--encoder-layers-to-keep", "3,1"], [3, 1]),
    (["--prune-to", "2"], [0, 2]),
    (["--prune-to", "2", "--prune-strategy", "alternate"], [0, 2]),
    (["--prune-to", "2", "--prune-strategy", "top"], [0, 1]),
    (["--prune-to", "3", "--prune-strategy", "bottom"], [1, 2, 3]),
    (["--encoder-prune-to", "3", "--prune-strategy", "symmetric"], [0, 1, 3]),
])
def test_pruning_a_roberta_keeps_exactly_the_asked_layers_and_nothing_else_changes(checkpoint, options, kept, request,
                                                                                   tmp_path):
    source = request.getfixturevalue(checkpoint)
    proc = export(source, tmp_path / "small.pt", *options)
    assert f"encoder: kept layers {','.join(map(str, kept))}" in proc.stdout
    original, pruned = load(source), load(tmp_path / "small.pt")
    assert_pruned_exactly(original["model"], pruned["model"], kept)
    config = pruned["cfg"]["model"]
    config = config if isinstance(config, dict) else vars(config)
    assert config["encoder_layers"] == len(kept) and not config.get("encoder_layers_to_keep")


def test_search_and_contribution_strategies_prune_a_fairseq_roberta(corpus, fairseq_classifier, fairseq_roberta,
                                                                    tmp_path):
    from fairseq_layerdrop.cli import contributions, search

    checkpoint = fairseq_roberta[0]  # scored on validation masked-LM loss
    out = run_main(search.main, checkpoint, corpus / "mlm", "--stack", "encoder", "--keep", "2",
                   "--out", tmp_path / "search").stdout
    rows = list(csv.DictReader(open(tmp_path / "search" / "search.csv")))
    assert len(rows) == 6  # C(4, 2): every pair scored
    kept = [int(i) for i in min(rows, key=lambda r: float(r["perplexity"]))["kept"].split(",")]
    assert f"best encoder layers at depth 2: {','.join(map(str, kept))}" in out
    run_main(contributions.main, checkpoint, corpus / "mlm", "--stack", "encoder", "--out", tmp_path / "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())["stacks"]["encoder"]["scores"]
    assert len(scores) == 4 and all(s > 0 for s in scores)
    by_score = sorted(sorted(range(4), key=lambda i: -scores[i])[:3])
    for strategy, expected in ((f"search:{tmp_path / 'search' / 'search.json'}", kept),
                               (f"contribution:{tmp_path / 'scores.json'}", by_score)):
        depth = len(expected)
        export(fairseq_classifier, tmp_path / "small.pt", "--prune-to", depth, "--prune-strategy", strategy,
               "--overwrite")
        assert_pruned_exactly(load(fairseq_classifier)["model"], load(tmp_path / "small.pt")["model"], expected)


def test_search_scores_the_masked_lm_loss_fairseq_validate_reports(corpus, fairseq_roberta, tmp_path):
    from fairseq_layerdrop.pruning.validation import load_checkpoint, perplexity, validation_batches

    model, task = load_checkpoint(str(fairseq_roberta[0]), str(corpus / "mlm"))
    full = perplexity(model, validation_batches(model, task))
    proc = fairseq("fairseq-validate", corpus / "mlm", "--task", "masked_lm", "--path", fairseq_roberta[0], "--cpu",
                   "--user-dir", PLUGIN, "--max-tokens", "4096", "--required-batch-size-multiple", "1")
    assert float(re.search(r"\| ppl ([0-9.]+)", proc.stdout + proc.stderr).group(1)) == pytest.approx(full, abs=0.006)


# -- pruning: on load, and the export in plain fairseq -------------------------------------------------------------


def validate(corpus, checkpoint, *args):
    proc = fairseq("fairseq-validate", corpus / "mlm", "--task", "masked_lm", "--path", checkpoint, "--cpu",
                   "--max-tokens", "4096", "--required-batch-size-multiple", "1", *args)
    log = proc.stdout + proc.stderr
    return float(re.search(r"valid on 'valid' subset \| loss ([0-9.]+)", log).group(1)), log


def test_fairseq_roberta_export_loads_in_plain_fairseq_and_scores_as_pruning_on_load(corpus, fairseq_roberta, tmp_path):
    export(fairseq_roberta[0], tmp_path / "small.pt", "--encoder-layers-to-keep", "0,3")
    on_load, log = validate(corpus, fairseq_roberta[0], "--user-dir", PLUGIN, "--task", "masked_lm_layerdrop",
                            "--encoder-layers-to-keep", "0,3")
    assert "pruning the encoder: keeping layers [0, 3] of 4" in log
    plain, log = validate(corpus, tmp_path / "small.pt")  # no --user-dir: plain fairseq
    assert plain == on_load and "fairseq_layerdrop" not in log
    full, _ = validate(corpus, fairseq_roberta[0], "--user-dir", PLUGIN)
    assert full != on_load


def test_roberta_layerdrop_pruned_on_load_scores_as_its_export(corpus, roberta_layerdrop, tmp_path):
    export(roberta_layerdrop[0], tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "bottom")
    on_load, log = validate(corpus, roberta_layerdrop[0], "--user-dir", PLUGIN, "--task", "masked_lm_layerdrop",
                            "--prune-to", "2", "--prune-strategy", "bottom")
    assert "pruning the encoder: keeping layers [2, 3] of 4" in log
    assert validate(corpus, tmp_path / "small.pt", "--user-dir", PLUGIN)[0] == on_load


def test_bad_pruning_requests_are_refused_naming_the_flag_before_data_is_read(corpus, fairseq_roberta, tmp_path):
    for options, message in (
        (["--prune-to", "5"], "--prune-to: cannot prune the encoder to 5 layers: it has 4, so choose 1 to 4"),
        (["--decoder-layers-to-keep", "0"], "--decoder-layers-to-keep: this model has no decoder"),
        (["--encoder-layers-to-keep", "0,4"], "kept layer(s) [4] out of range for the encoder (it has 4 layers"),
    ):
        proc = export(fairseq_roberta[0], tmp_path / "out.pt", *options, check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert os.listdir(tmp_path) == []
    proc = fairseq("fairseq-validate", corpus / "mlm", "--task", "masked_lm", "--path", fairseq_roberta[0], "--cpu",
                   "--max-tokens", "4096", "--user-dir", PLUGIN, "--task", "masked_lm_layerdrop", "--prune-to", "5",
                   check=False)
    assert proc.returncode != 0
    assert "--prune-to: cannot prune the encoder to 5 layers: it has 4" in proc.stderr.strip().splitlines()[-1]
    assert not DATA_READ.search(proc.stdout + proc.stderr)
    proc = fairseq("fairseq-train", corpus / "classes", *FINETUNE, "--save-dir", tmp_path / "ft", "--user-dir", PLUGIN,
                   "--task", "sentence_prediction_layerdrop", "--arch", "roberta", *SHAPE,
                   "--restore-file", fairseq_roberta[0], "--decoder-layers-to-keep", "0", check=False)
    assert proc.returncode != 0
    assert "--decoder-layers-to-keep: this model has no decoder" in proc.stderr.strip().splitlines()[-1]
    assert not DATA_READ.search(proc.stdout + proc.stderr)


# -- fine-tuning a pruned model, the hub ---------------------------------------------------------------------------


def test_finetuning_an_export_equals_finetuning_a_checkpoint_pruned_as_it_loads(corpus, roberta_layerdrop, tmp_path):
    export(roberta_layerdrop[0], tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "top")
    _, from_export = finetune(corpus, tmp_path / "a", "--task", "sentence_prediction", "--arch",
                              "roberta_layerdrop_tiny", *SHAPE, "--encoder-layers", "2",
                              "--restore-file", tmp_path / "small.pt")
    checkpoint, on_load = finetune(corpus, tmp_path / "b", "--task", "sentence_prediction_layerdrop", "--arch",
                                   "roberta_layerdrop_tiny", *SHAPE, "--restore-file", roberta_layerdrop[0],
                                   "--prune-to", "2", "--prune-strategy", "top")
    assert "pruning the encoder: keeping layers [0, 1] of 4" in on_load
    assert losses(on_load) == losses(from_export) and len(losses(on_load)) == 3
    saved = load(checkpoint)
    config = saved["cfg"]["model"]
    assert config.encoder_layers == 2 and config.prune_to is None  # it will not prune again
    assert f"classification_heads.{HEAD}.out_proj.weight" in saved["model"]


def hub(checkpoint, corpus, data="classes", **kwargs):
    from fairseq.models.roberta import RobertaModel

    return RobertaModel.from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name,
                                        data_name_or_path=str(corpus / data), bpe=None, user_dir=PLUGIN,
                                        **kwargs).eval()  # no dropout (fairseq's README does the same)


def sentences(hub_model, corpus):
    lines = (corpus / "raw" / "valid.txt").read_text().splitlines()[:6]
    encode = hub_model.task.source_dictionary.encode_line
    return [torch.cat([torch.tensor([0]), encode(line, append_eos=True, add_if_not_exist=False).long()])
            for line in lines]


def test_hub_loads_scores_and_classifies_pruned_on_load(corpus, classifier, fairseq_classifier, tmp_path):
    pruned = hub(classifier, corpus, prune_to=2)
    assert len(pruned.model.encoder.sentence_encoder.layers) == 2
    export(classifier, tmp_path / "small.pt", "--prune-to", "2")
    exported = hub(tmp_path / "small.pt", corpus)
    full = hub(classifier, corpus)
    for tokens in sentences(pruned, corpus):
        classes = pruned.predict(HEAD, tokens)
        assert classes.shape == (1, 2) and torch.equal(classes, exported.predict(HEAD, tokens))
        with torch.no_grad():
            scores = pruned.model(tokens.unsqueeze(0))[0]  # the masked-LM head's logits
            assert torch.equal(scores, exported.model(tokens.unsqueeze(0))[0])
            assert not torch.equal(scores, full.model(tokens.unsqueeze(0))[0])
    # fairseq's own roberta: the plugin's task, named, prunes it
    theirs = hub(fairseq_classifier, corpus, task="sentence_prediction_layerdrop", prune_to=2)
    assert type(theirs.model).__name__ == "RobertaModel" and len(theirs.model.encoder.sentence_encoder.layers) == 2
    assert theirs.predict(HEAD, sentences(theirs, corpus)[0]).shape == (1, 2)


def test_a_classification_head_the_checkpoint_lacks_is_refused(corpus, classifier):
    with pytest.raises(ValueError, match=r"--classification-head-name other: the checkpoint has no classification "
                                         rf"head 'other' \(it has {HEAD}\)"):
        hub(classifier, corpus, task="sentence_prediction_layerdrop", classification_head_name="other")


def test_fairseq_roberta_classifier_export_loads_in_plain_fairseq_hub(corpus, fairseq_classifier, tmp_path):
    export(fairseq_classifier, tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "symmetric")
    expected = hub(fairseq_classifier, corpus, task="sentence_prediction_layerdrop", prune_to=2,
                   prune_strategy="symmetric")
    tokens = sentences(expected, corpus)[0]
    assert plain_hub_predictions(tmp_path / "small.pt", corpus, [tokens]) == [expected.predict(HEAD, tokens).tolist()]


def plain_hub_predictions(checkpoint, corpus, token_lists):
    """``predict`` of the classification head for each token list, by fairseq's own hub in a fresh process that
    never imports the plugin."""
    script = (f"import sys, torch; from fairseq.models.roberta import RobertaModel; "
              f"h = RobertaModel.from_pretrained({str(checkpoint.parent)!r}, checkpoint_file={checkpoint.name!r}, "
              f"data_name_or_path={str(corpus / 'classes')!r}, bpe=None).eval(); "
              f"assert 'fairseq_layerdrop' not in sys.modules; "
              f"print([h.predict({HEAD!r}, torch.tensor(t)).tolist() for t in {[t.tolist() for t in token_lists]}])")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return eval(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("keywords, message", [
    (dict(prune_to=5), "prune_to=5: cannot prune the encoder to 5 layers: it has 4, so choose 1 to 4"),
    (dict(prune_to=0), "prune_to=0: cannot prune the encoder to 0 layers: it has 4, so choose 1 to 4"),
    (dict(prune_to=2, prune_strategy="middle"), "prune_strategy: unknown pruning strategy 'middle'; choose from"),
    (dict(encoder_layers_to_keep="0,4"), "encoder_layers_to_keep='0,4': kept layer(s) [4] out of range for the "
                                         "encoder (it has 4 layers"),
    (dict(prune_to=2, encoder_prune_to=3), "the encoder is pruned twice: by encoder_prune_to=3 and by prune_to=2"),
])
def test_the_hub_refuses_a_bad_pruning_keyword_naming_the_keyword_not_a_flag(corpus, roberta_layerdrop, keywords,
                                                                            message):
    from fairseq_layerdrop.pruning import PruningError

    with pytest.raises(PruningError) as refused:
        hub(roberta_layerdrop[0], corpus, data="mlm", **keywords)
    assert message in str(refused.value) and "--" not in str(refused.value), str(refused.value)


def test_the_hub_refuses_prune_to_for_a_model_without_the_plugins_options_naming_the_keyword(corpus,
                                                                                             fairseq_roberta):
    from fairseq_layerdrop.pruning import PruningError

    with pytest.raises(PruningError, match=r"^prune_to=2 was passed to the loader but no model read it: this "
                                           r"checkpoint's task \(masked_lm\) and architecture \(roberta\)"):
        hub(fairseq_roberta[0], corpus, data="mlm", prune_to=2)


# -- the depth sweep --------------------------------------------------------------------------------------------------


def validate_ppl(log):
    return float(re.search(r"valid on 'valid' subset \| loss [0-9.]+ \| ppl ([0-9.]+)", log).group(1))


def test_sweep_scores_a_masked_lm_by_the_perplexity_fairseq_validate_reports_at_each_depth(corpus, roberta_layerdrop,
                                                                                            tmp_path):
    from fairseq_layerdrop.pruning.validation import load_checkpoint, perplexity, validation_batches

    checkpoint = roberta_layerdrop[0]
    fairseq("fairseq-layerdrop", "sweep", checkpoint, corpus / "mlm", "--out", "sweep", "--depths", "2,4",
            "--strategies", "top", "--fairseq-args", "--required-batch-size-multiple 1", cwd=tmp_path)
    rows = {int(r["depth"]): r for r in csv.DictReader(open(tmp_path / "sweep" / "sweep.csv"))}
    assert [(r["kept"], r["metric"]) for r in rows.values()] == [("encoder:0,1", "perplexity"),
                                                                 ("encoder:0,1,2,3", "perplexity")]
    full = validate_ppl(validate(corpus, checkpoint, "--user-dir", PLUGIN)[1])
    export(checkpoint, tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "top")
    pruned = validate_ppl(validate(corpus, tmp_path / "small.pt", "--user-dir", PLUGIN)[1])
    assert (float(rows[4]["quality"]), float(rows[2]["quality"])) == (full, pruned) and full != pruned
    model, task = load_checkpoint(str(checkpoint), str(corpus / "mlm"))  # the search command's scorer agrees
    assert perplexity(model.eval(), validation_batches(model, task)) == pytest.approx(full, abs=0.006)


def test_sweep_refuses_what_it_cannot_score_for_an_encoder_only_model(corpus, roberta_layerdrop, classifier, tmp_path):
    from fairseq_layerdrop.cli import sweep

    for checkpoint, args, message in (
        (roberta_layerdrop[0], ["--stack", "decoder"], "--stack decoder: this masked LM has no decoder (its encoder "
                                                       "is swept)"),
        (roberta_layerdrop[0], ["--metric", "BLEU"], "--metric BLEU scores translations; a masked LM is scored by "
                                                     "perplexity"),
        (classifier, [], "this encoder-only model was trained with --task sentence_prediction, which the sweep "
                         "cannot score"),
    ):
        proc = run_main(sweep.main, checkpoint, corpus / "mlm", "--out", tmp_path / "sweep", *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert not (tmp_path / "sweep").exists()


# -- a strategy without a depth, the draws log at inference -------------------------------------------------------


def test_a_strategy_without_a_depth_is_refused_at_start_naming_both_flags(corpus, roberta_layerdrop, tmp_path):
    checkpoint = roberta_layerdrop[0]
    refusal = "--prune-strategy top is given without --prune-to, --encoder-prune-to or --decoder-prune-to, so it would "
    for options, remedy in ((["--prune-strategy", "top"], "add --prune-to R to keep R layers chosen by top, or drop "
                                                          "--prune-strategy"),
                            (["--prune-strategy", "top", "--encoder-layers-to-keep", "0,1"],
                             "--encoder-layers-to-keep lists the kept layers; drop --prune-strategy")):
        proc = fairseq("fairseq-layerdrop", "prune", checkpoint, tmp_path / "out.pt", *options, check=False)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"error: {refusal}be ignored: {remedy}"
        assert os.listdir(tmp_path) == []
    proc = fairseq("fairseq-train", corpus / "classes", *FINETUNE, "--save-dir", tmp_path / "ft", "--user-dir", PLUGIN,
                   "--task", "sentence_prediction_layerdrop", "--arch", "roberta_layerdrop_tiny", *SHAPE,
                   "--restore-file", checkpoint, "--prune-strategy", "top", check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].endswith(
        f"{refusal}be ignored: add --prune-to R to keep R layers chosen by top, or drop --prune-strategy")
    assert not DATA_READ.search(proc.stdout + proc.stderr)
    # fairseq-validate merges the command line into the checkpoint's saved config: refused before that
    proc = fairseq("fairseq-validate", corpus / "mlm", "--task", "masked_lm_layerdrop", "--path", checkpoint, "--cpu",
                   "--user-dir", PLUGIN, "--max-tokens", "4096", "--prune-strategy", "top", check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].endswith(
        f"{refusal}be ignored: add --prune-to R to keep R layers chosen by top, or drop --prune-strategy")
    assert not DATA_READ.search(proc.stdout + proc.stderr)


def test_a_checkpoint_that_saved_a_strategy_without_its_depth_still_loads(corpus, roberta_layerdrop, tmp_path):
    """A plugin task's checkpoint saved before the refusal keeps ``prune_strategy`` (every-other by default, or the one
    given with the ``--prune-to`` that was cleared once used): loading it is no command line, and is not refused."""
    from fairseq_layerdrop.pruning.options import PRUNING_FIELDS

    state = load(roberta_layerdrop[0])
    state["cfg"]["task"] = {**state["cfg"]["task"], "_name": "masked_lm_layerdrop", **dict.fromkeys(PRUNING_FIELDS),
                            "prune_strategy": "top"}
    torch.save(state, tmp_path / "saved.pt")
    for keywords, depth in (({}, 4), ({"prune_to": 2}, 2)):
        assert len(hub(tmp_path / "saved.pt", corpus, data="mlm", **keywords).model.encoder.sentence_encoder.layers) \
            == depth


def test_a_loaded_model_never_writes_the_draws_log_saved_in_its_checkpoint(corpus, roberta_layerdrop, tmp_path):
    checkpoint, _, draws = roberta_layerdrop
    assert load(checkpoint)["cfg"]["model"].layerdrop_draws_log + ".rank0" == str(draws)
    before = draws.read_text()
    tokens = torch.tensor([[0, 5, 6, 7, 8, 2]])
    export(checkpoint, tmp_path / "small.pt", "--prune-to", "2")
    log = validate(corpus, checkpoint, "--user-dir", PLUGIN)[1]
    assert "not reusing the draws log saved in the checkpoint" in log
    for path in (checkpoint, tmp_path / "small.pt"):
        model = hub(path, corpus, data="mlm").model.train()  # training mode: LayerDrop draws
        assert model.encoder.sentence_encoder.layers.draws_log is None
        model(tokens)
    assert draws.read_text() == before
    again = hub(checkpoint, corpus, data="mlm", layerdrop_draws_log=str(tmp_path / "mine.jsonl")).model.train()
    again(tokens)  # given again as a keyword, it is the user's own log
    assert [json.loads(line)["stack"] for line in open(tmp_path / "mine.jsonl.rank0")] == ["encoder"]


# -- --as-fairseq: the export as fairseq's own roberta -------------------------------------------------------------
# ``fairseq-layerdrop prune --as-fairseq`` on the plugin's RoBERTa: the export is fairseq's own ``roberta``
# (classification heads kept, tensor for tensor), plain fairseq loads it without ``--user-dir`` and computes what
# the plugin's pruned model computes; ``--for-ctranslate2`` refuses it (CTranslate2 converts no encoder-only model).

def test_the_masked_lm_export_is_fairseqs_roberta_and_scores_as_pruning_on_load(corpus, roberta_layerdrop, tmp_path):
    proc = export(roberta_layerdrop[0], tmp_path / "small.pt", "--prune-to", "2", "--as-fairseq")
    assert "model roberta_layerdrop_tiny -> roberta" in proc.stdout + proc.stderr
    saved = load(tmp_path / "small.pt")
    assert saved["args"] is None and saved["cfg"]["model"]["arch"] == "roberta"
    assert saved["cfg"]["model"]["encoder_layerdrop"] == 0.0 and saved["cfg"]["common"]["user_dir"] is None
    assert saved["cfg"]["task"]["_name"] == "masked_lm"
    original = load(roberta_layerdrop[0])["model"]
    expected = expected_pruned(original, [0, 2])  # every-other of 4: layers 0 and 2
    assert sorted(saved["model"]) == sorted(expected)
    assert all(torch.equal(saved["model"][k], v) for k, v in expected.items())
    on_load, _ = validate(corpus, roberta_layerdrop[0], "--user-dir", PLUGIN, "--task", "masked_lm_layerdrop",
                          "--prune-to", "2")
    plain, log = validate(corpus, tmp_path / "small.pt")  # no --user-dir
    assert plain == on_load and "fairseq_layerdrop" not in log


def test_the_classifier_export_keeps_its_head_and_classifies_in_plain_fairseqs_hub(corpus, classifier, tmp_path):
    export(classifier, tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "top", "--as-fairseq")
    saved, original = load(tmp_path / "small.pt"), load(classifier)["model"]
    assert saved["cfg"]["task"]["_name"] == "sentence_prediction"
    heads = [k for k in original if k.startswith("classification_heads.")]
    assert heads and all(torch.equal(saved["model"][k], original[k]) for k in heads)
    assert sorted(k for k in saved["model"] if k.startswith(LAYERS)) == \
        sorted(k for k in expected_pruned(original, [0, 1]) if k.startswith(LAYERS))
    expected = hub(classifier, corpus, prune_to=2, prune_strategy="top")
    tokens = sentences(expected, corpus)[:3]
    assert plain_hub_predictions(tmp_path / "small.pt", corpus, tokens) == \
        [expected.predict(HEAD, t).tolist() for t in tokens]


def test_for_ctranslate2_refuses_an_encoder_only_model_and_writes_nothing(classifier, tmp_path):
    proc = export(classifier, tmp_path / "ct2.pt", "--prune-to", "2", "--for-ctranslate2", check=False)
    assert proc.returncode != 0
    assert ("--for-ctranslate2: ct2-fairseq-converter converts fairseq's transformer and transformer_lm, not roberta"
            in proc.stderr), proc.stderr
    assert os.listdir(tmp_path) == []


def test_fairseqs_roberta_pruned_fine_tunes_in_plain_fairseq_as_when_pruned_on_load(corpus, fairseq_roberta, tmp_path):
    """The README's two fine-tuning commands: the export in plain fairseq (no --user-dir, ``--encoder-layers``), and
    the full checkpoint pruned as the plugin's task loads it: the same losses, update for update."""
    export(fairseq_roberta[0], tmp_path / "small.pt", "--prune-to", "2", "--prune-strategy", "top")
    plain = fairseq("fairseq-train", corpus / "classes", *FINETUNE, "--save-dir", tmp_path / "plain",
                    "--task", "sentence_prediction", "--arch", "roberta", *SHAPE, "--encoder-layers", "2",
                    "--restore-file", tmp_path / "small.pt")
    plain_log = plain.stdout + plain.stderr
    assert "fairseq_layerdrop" not in plain_log
    on_load = fairseq("fairseq-train", corpus / "classes", *FINETUNE, "--save-dir", tmp_path / "on_load",
                      "--user-dir", PLUGIN, "--task", "sentence_prediction_layerdrop", "--arch", "roberta", *SHAPE,
                      "--restore-file", fairseq_roberta[0], "--prune-to", "2", "--prune-strategy", "top")
    on_load_log = on_load.stdout + on_load.stderr
    assert "pruning the encoder: keeping layers [0, 1] of 4" in on_load_log
    assert losses(plain_log) == losses(on_load_log) and len(losses(plain_log)) == 3
