"""One writer per run directory: a second writer is refused while the first lives, a killed
writer leaves no stale lock, and sweep workers do not outlive their driver."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from iapo.files import LOCK_NAME

from test_cli import run_cli

LONG = ["train", "--env", "Pendulum-v1", "--agent", "direct", "--hidden-sizes", "16", "16",
        "--critic-hidden-sizes", "16", "16", "--batch-size", "16", "--total-steps", "100000", "--random-steps", "100",
        "--eval-every", "500", "--eval-episodes", "1", "--checkpoint-every", "500", "--no-progress"]


def _holder(run_dir, expect=None, timeout=120):
    """The pid written into the run directory's lock file once a process (`expect`, if given)
    holds it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            pid = json.loads((run_dir / LOCK_NAME).read_text())["pid"]
            if expect is None or pid == expect:
                return pid
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"no process took the lock of {run_dir}")


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_stale_lock(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "iapo.cli", *LONG, "--run-dir", str(run_dir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _holder(run_dir) == first.pid
        code, _, err = run_cli([*LONG, "--run-dir", str(run_dir), "--overwrite"], capsys)
        assert code == 2 and f"is in use by another iapo process (pid {first.pid} on " in err, err
        assert err.count("\n") == 1  # one line, no traceback
        deadline = time.time() + 120
        while not list((run_dir / "checkpoints").glob("ckpt_*")) and time.time() < deadline:
            time.sleep(0.2)
        code, _, err = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
        assert code == 2 and "in use by another iapo process" in err, err
    finally:
        first.kill()
        first.wait()
    assert (run_dir / "config.json").exists()  # the refused writers deleted nothing
    # SIGKILL released the lock with the process: a resume takes it.
    resumed = subprocess.Popen([sys.executable, "-m", "iapo.cli", "train", "--resume", str(run_dir), "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _holder(run_dir, expect=resumed.pid) == resumed.pid
    finally:
        resumed.kill()
        resumed.wait()


def test_a_sweep_worker_stops_when_its_driver_is_killed(tmp_path):
    """The middle process stands for a sweep driver, the grandchild for its worker."""
    flag = tmp_path / "terminated"
    worker = textwrap.dedent(f"""
        import os, signal, sys, time
        from iapo.sweep import stop_when_orphaned
        signal.signal(signal.SIGTERM, lambda *a: (open({str(flag)!r}, "w").close(), sys.exit(0)))
        stop_when_orphaned(os.getppid(), period=0.1)
        time.sleep(60)
    """)
    driver = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {worker!r}], start_new_session=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver])
    time.sleep(3)  # the worker is up
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the orphaned worker kept running"
