"""The dispatcher of `fairseq-layerdrop SUBCOMMAND` (in process; the installed console script from outside the
checkout: tests/integration/test_command.py)."""

import importlib

from fairseq_layerdrop.cli import main as dispatcher
from tests.helpers import run_main

SUBCOMMANDS = ["prune", "sweep", "search", "contributions", "gates", "average", "report", "dir"]


def test_help_lists_every_subcommand_in_order_and_no_arguments_is_a_usage_error():
    proc = run_main(dispatcher.main, "--help")
    listed = [line.split()[0] for line in proc.stdout.split("subcommands:")[1].strip().splitlines()]
    assert listed == SUBCOMMANDS
    assert run_main(dispatcher.main, check=False).returncode == 2


def test_an_unknown_subcommand_is_refused_naming_the_choices():
    proc = run_main(dispatcher.main, "nope", check=False)
    assert proc.returncode == 1 and "unknown subcommand 'nope'" in proc.stderr
    assert ", ".join(SUBCOMMANDS) in proc.stderr


def test_each_subcommand_parses_under_its_own_name_and_passes_its_arguments_on():
    for name in SUBCOMMANDS:
        assert callable(importlib.import_module(f"fairseq_layerdrop.cli.{name}").main)
        proc = run_main(dispatcher.main, name, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: fairseq-layerdrop {name}"), (name, proc.stdout)
    proc = run_main(dispatcher.main, "average", "--inputs", "missing.pt", "--output", "avg.pt", check=False)
    assert proc.returncode == 1 and "fairseq-layerdrop average: --inputs: no such checkpoint missing.pt" in proc.stderr
