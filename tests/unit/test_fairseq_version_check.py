"""compat.py warns, once and clearly, when the installed fairseq is not the one the plugin was tested with."""

import logging
import subprocess
import sys

import fairseq

from fairseq_layerdrop import compat


def test_the_tested_fairseq_is_the_installed_one_and_passes_silently(caplog):
    assert fairseq.__version__ in compat.TESTED_FAIRSEQ_VERSIONS  # what setup.py installs: fairseq-fixed 0.12.3.1
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert compat.check_fairseq_version() is True
    assert caplog.records == []


def test_another_version_logs_one_warning_naming_it_and_what_may_break(monkeypatch, caplog):
    monkeypatch.setattr(fairseq, "__version__", "0.13.0")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert compat.check_fairseq_version() is False
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    message = caplog.records[0].getMessage()
    assert "the installed fairseq is 0.13.0" in message and "tested with fairseq 0.12.3.1" in message
    for risk in ("DDP wrapper", "upgrade_state_dict", "private argparse API", "block-wise layer forward",
                 "fairseq_layerdrop/compat.py"):
        assert risk in message


def test_the_warning_comes_once_when_the_plugin_is_imported():
    code = "import fairseq; fairseq.__version__ = '0.12.2'; import fairseq_layerdrop; import fairseq_layerdrop.compat"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.count("the installed fairseq is 0.12.2") == 1, proc.stderr[-2000:]
