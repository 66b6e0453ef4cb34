"""``fairseq-layerdrop prune --as-fairseq`` on the plugin's RoBERTa: the export is fairseq's own ``roberta``
(classification heads kept, tensor for tensor), plain fairseq loads it without ``--user-dir`` and computes what
the plugin's pruned model computes; ``--for-ctranslate2`` refuses it (CTranslate2 converts no encoder-only model)."""

import os
import subprocess
import sys

import torch

from tests.helpers import PLUGIN, fairseq
from tests.integration.test_roberta import (  # noqa: F401  (the fixtures)
    FINETUNE, HEAD, LAYERS, SHAPE, classifier, corpus, expected_pruned, export, fairseq_roberta, hub, load, losses,
    roberta_layerdrop, sentences, validate)


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
    script = (f"import sys, torch; from fairseq.models.roberta import RobertaModel; "
              f"h = RobertaModel.from_pretrained({str(tmp_path)!r}, checkpoint_file='small.pt', "
              f"data_name_or_path={str(corpus / 'classes')!r}, bpe=None).eval(); "
              f"assert 'fairseq_layerdrop' not in sys.modules; "
              f"print([h.predict({HEAD!r}, torch.tensor(t)).tolist() for t in {[t.tolist() for t in tokens]}])")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = eval(proc.stdout.strip().splitlines()[-1])
    assert plain == [expected.predict(HEAD, t).tolist() for t in tokens]


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
