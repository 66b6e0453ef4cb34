"""recipes/lib/mini.sh's claim/release: two instances of a recipe on one work dir share its runs. A run claimed
by a live process is refused to another; one whose process has ended is taken over; a released one is free."""

import os
import subprocess

from tests.helpers import ROOT

LIB = os.path.join(ROOT, "recipes", "lib")


def bash(script, *args):
    """Run SCRIPT in a fresh bash (its own PID) with the recipe libraries sourced; the exit status."""
    prelude = f'RECIPE=test; source "{LIB}/stages.sh"; source "{LIB}/mini.sh"; set +e\n'
    return subprocess.run(["bash", "-c", prelude + script, "bash", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_a_live_claim_is_refused_to_another_process_and_a_dead_or_released_one_is_free(tmp_path):
    run = tmp_path / "ft" / "seed1"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "ft").mkdir()
        (tmp_path / "ft" / "seed1.claim").mkdir()
        (tmp_path / "ft" / "seed1.claim" / "pid").write_text(f"{holder.pid}\n")
        proc = bash('claim "$1"; echo "status $?"', run)
        assert proc.stdout.split() == ["status", "1"], proc.stderr
        assert (tmp_path / "ft" / "seed1.claim" / "pid").read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # the holder has ended: the next process takes the run over and records its own PID
    proc = bash('claim "$1"; echo "status $? pid $$"', run)
    words = proc.stdout.split()
    assert words[:2] == ["status", "0"], proc.stderr
    assert (tmp_path / "ft" / "seed1.claim" / "pid").read_text().strip() == words[3] != str(holder.pid)
    # within one process a second claim of its own run succeeds; released, the run is anyone's
    proc = bash('claim "$1"; a=$?; claim "$1"; b=$?; release "$1"; echo "$a $b"; test -e "$1.claim"; echo "exists $?"', run)
    assert proc.stdout.split() == ["0", "0", "exists", "1"], proc.stderr


def test_two_processes_racing_for_one_run_get_it_once(tmp_path):
    """Both instances start together on the same run: exactly one of them claims it."""
    run = tmp_path / "seed1"
    script = 'for i in $(seq 50); do :; done; claim "$1"; echo $?; sleep 2'
    procs = [subprocess.Popen(["bash", "-c", f'RECIPE=test; source "{LIB}/stages.sh"; source "{LIB}/mini.sh"; set +e\n'
                               + script, "bash", str(run)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    statuses = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert statuses == ["0", "1"]
