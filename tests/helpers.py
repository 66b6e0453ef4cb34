"""What tests share besides fixtures: paths, a runner for fairseq's console commands with the plugin
as --user-dir, a reader of fairseq's JSON log lines, and in-process runs (a command's ``main``, a model
built or loaded as fairseq's commands would). Import as `from tests.helpers import ...`."""

import contextlib
import io
import json
import os
import subprocess
import sys

from fairseq_layerdrop.cli.in_process import build_model, load_models  # noqa: F401  (for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "fairseq_layerdrop")
BIN = os.path.dirname(sys.executable)


def fairseq(command, *args, check=True, cwd=None):
    """Run one of fairseq's console commands (fairseq-train, ...) and return the completed process."""
    proc = subprocess.run(
        [os.path.join(BIN, command), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONWARNINGS": "ignore"},  # tiny models: see conftest
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def json_logs(output, tag):
    """The JSON payloads of fairseq log lines with the given tag ("train_inner", "train", "valid")."""
    records = []
    for line in output.splitlines():
        marker = f"| {tag} | "
        if marker in line:
            payload = line.split(marker, 1)[1]
            if payload.startswith("{"):
                records.append({k: _number(v) for k, v in json.loads(payload).items()})
    return records


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


TRAIN_COMMON = [
    "--cpu", "--optimizer", "adam", "--lr", "0.005", "--max-tokens", "2000", "--seed", "3",
    "--log-format", "json", "--log-interval", "1", "--no-progress-bar", "--no-epoch-checkpoints",
]


def run_main(main, *args, check=True):
    """Call a command's ``main(argv)`` in this process and return what ``subprocess.run`` would: its exit code
    (a ``sys.exit("message")`` gives 1 with the message on stderr, as Python prints it), stdout and stderr."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv) or 0  # a main that returns its exit status
        except SystemExit as exit:
            if isinstance(exit.code, str):
                print(exit.code, file=sys.stderr)
                code = 1
            else:
                code = exit.code or 0
    proc = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{main.__module__} failed ({code}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_workers(command, world_size=2, timeout=240):
    """Start ``command`` (a fairseq-train argument list with ``--distributed-no-spawn`` and a tcp init method)
    once per rank with ``--distributed-rank R``; return each worker's combined output once all have ended
    (an AssertionError with rank 0's output if one failed)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*map(str, command), "--distributed-rank", str(r)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for r in range(world_size)]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    if not all(p.returncode == 0 for p in procs):
        raise AssertionError(outputs[0][-3000:])
    return outputs
