"""Kill trials: a SIGKILLed ``aims prepare`` must not leave worker processes behind, and
what a killed run leaves on disk is cleaned up (or harmless) on the next run.

The pool workers block on a pipe whose write end every forked sibling also holds, so
before the fix they never saw end-of-file when the parent died and lived on forever. The
trials below start the installed ``aims`` executable in its own session, wait until its
workers exist, SIGKILL only the parent, and then check that every worker is gone. The
polling loops are hang guards (a generous bound), not timing assertions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

#: seconds between "the workers exist" and the SIGKILL of the parent, one per trial
DELAYS = (0.0, 0.02, 0.05, 0.1, 0.15)
#: hang guard for each wait; never reached when things work
GUARD_S = 30.0


def _aims() -> Path:
    exe = Path(sys.executable).with_name("aims")
    if not exe.exists():
        pytest.skip(f"the aims console script is not installed beside {sys.executable}")
    return exe


def _gone(proc: psutil.Process) -> bool:
    """Dead, or a zombie nobody reaps yet (a container's pid 1 may never reap it)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _workers_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_trial(source: Path, out: Path, delay: float, command: list[str] | None = None) -> tuple[int, int] | None:
    """Run one trial. Returns (workers seen, workers still alive after the guard), or
    None when prepare finished before it could be killed (the trial does not count).
    ``command`` replaces the installed ``aims`` executable."""
    log = out.with_suffix(".log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*(command or [str(_aims())]), "prepare", "-m", "depth", "--source", str(source),
             "--workers", "2", "--out", str(out), "--no-progress"],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _workers_of(proc.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.005)
        if delay:
            time.sleep(delay)
        if proc.poll() is not None or not workers:
            assert proc.wait() == 0, f"prepare failed by itself:\n{log.read_text()}"
            return None
        # only the parent is killed: its workers must notice on their own
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline and not all(_gone(w) for w in workers):
            time.sleep(0.05)
        return len(workers), sum(not _gone(w) for w in workers)
    finally:
        # never leak a process from this test: end what is left of the session we started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill trials read /proc (Linux)")
def test_sigkill_of_prepare_leaves_no_workers(nyuv2_miniature, tmp_path):
    results = []
    for i, delay in enumerate(DELAYS):
        for attempt in range(3):  # a trial where prepare finished first is run again
            outcome = kill_trial(nyuv2_miniature, tmp_path / f"ds-{i}-{attempt}", delay)
            if outcome is not None:
                results.append((delay, *outcome))
                break
    assert len(results) >= 3, f"too few trials could kill prepare while it ran: {results}"
    left = [r for r in results if r[2]]
    assert not left, f"(delay, workers, alive after {GUARD_S:.0f} s) per trial: {results}"


#: `aims` with the kernel's parent-death signal unavailable, as on macOS: only the
#: watchdog thread of each worker can notice that the parent is gone
_NO_PDEATHSIG = ("import sys, aims.prepare as p; p._set_parent_death_signal = lambda: False; "
                 "sys.argv[0] = 'aims'; from aims.cli import main; sys.exit(main())")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill trials read /proc (Linux)")
def test_watchdog_fallback_ends_workers_without_the_kernel_signal(nyuv2_miniature, tmp_path):
    results = []
    for i, delay in enumerate(DELAYS[:3]):
        for attempt in range(3):
            outcome = kill_trial(nyuv2_miniature, tmp_path / f"ds-{i}-{attempt}", delay,
                                 command=[sys.executable, "-c", _NO_PDEATHSIG])
            if outcome is not None:
                results.append((delay, *outcome))
                break
    assert results and not [r for r in results if r[2]], results


def test_killed_run_temporaries_are_removed_by_the_next_run(nyuv2_miniature, tmp_path):
    """A README temporary of a killed run (its pid is gone) is removed by the next prepare;
    one of a live process is left alone."""
    from aims.converters.nyuv2 import CONVERTER
    from aims.prepare import prepare_source

    out = tmp_path / "ds"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = out / f".README.md.tmp-{int(dead.stdout)}-0badf00d"
    stale.write_text("half a card")
    live = out / f".README.md.tmp-{os.getppid()}-0123abcd"
    live.write_text("another run is writing this")
    prepare_source(CONVERTER, ["depth"], dataset_dir=out, source=nyuv2_miniature, workers=1,
                   progress=False)
    assert not stale.exists()
    assert live.read_text() == "another run is writing this"
