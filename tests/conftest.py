"""Shared fixtures: tiny generated corpora binarized by fairseq-preprocess's own code (in this process: the
unit tests run no fairseq command), and checkpoints trained by fairseq-train with the plugin as --user-dir."""

import logging

import pytest

from scripts.data import toy_data
from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq


def preprocess(*args):
    """``fairseq-preprocess ARGS...`` run in this process (its ``main``, as the console command calls it)."""
    from fairseq import options
    from fairseq_cli import preprocess as fairseq_preprocess

    logger = logging.getLogger("fairseq_cli.preprocess")
    handlers = list(logger.handlers)
    try:
        fairseq_preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in args]))
    finally:
        for handler in logger.handlers[len(handlers):]:  # the log file it opens in the destination directory
            logger.removeHandler(handler)
            handler.close()


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long runs, skipped unless --run-slow")
    # The tests' models are tiny: one thread computes them faster than two that contend for a shared 2-core
    # machine (test_each_layer_is_skipped_at_rate_p: 4 s instead of 90 s under load). fairseq's commands
    # run by tests.helpers.fairseq get the same through OMP_NUM_THREADS.
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def translation_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    toy_data.write_translation(str(root / "raw"), train=600, valid=100, test=50)
    preprocess(
        "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", root / "raw/train", "--validpref", root / "raw/valid", "--testpref", root / "raw/test",
        "--destdir", root / "bin", "--workers", "1",
    )
    return root / "bin"


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    toy_data.write_lm(str(root / "raw"), train=800, valid=100, test=100)
    preprocess(
        "--only-source", "--trainpref", root / "raw/train.txt",
        "--validpref", root / "raw/valid.txt", "--testpref", root / "raw/test.txt",
        "--destdir", root / "bin", "--workers", "1",
    )
    return root / "bin"


@pytest.fixture(scope="session")
def mt_checkpoint(translation_data, tmp_path_factory):
    """A transformer_layerdrop_tiny checkpoint trained for 2 epochs on the toy translation data."""
    save_dir = tmp_path_factory.mktemp("mt_checkpoint")
    fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
            "--arch", "transformer_layerdrop_tiny", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def lm_checkpoint(lm_data, tmp_path_factory):
    """A transformer_lm_layerdrop_tiny checkpoint trained for 2 epochs on the toy LM data."""
    save_dir = tmp_path_factory.mktemp("lm_checkpoint")
    fairseq("fairseq-train", lm_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
            "--task", "language_modeling", "--tokens-per-sample", "64",
            "--arch", "transformer_lm_layerdrop_tiny", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def fairseq_mt_checkpoint(translation_data, tmp_path_factory):
    """A checkpoint of fairseq's own `transformer` (6 + 6 layers of width 64), trained without the plugin."""
    save_dir = tmp_path_factory.mktemp("fairseq_mt_checkpoint")
    fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", save_dir, "--arch", "transformer",
            "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
            "--decoder-attention-heads", "4", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"
