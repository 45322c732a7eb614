"""Small file helpers shared by the run, sweep and report writers."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import socket
import time
from pathlib import Path

from iapo.errors import RunDirError

LOCK_NAME = ".iapo.lock"
_held: dict[Path, int] = {}  # run directory -> the open file descriptor holding its lock


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`, so a reader (or
    a run killed mid-write) sees the old file or the new one, never part of one. A failure (a
    full disk) removes the temporary file and is a RunDirError."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: no half-written file left behind, one line said
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_csv_atomic(path: Path, header: list[str], rows) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def show_value(value) -> str:
    """A config value as flags and names spell it: tuples as 256x256."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def lock_run_dir(run_dir: Path, wait: bool = False, label: str = "--run-dir", note: bool = True) -> Path:
    """Take an exclusive lock on `run_dir` (created if missing) for the rest of this process: an
    OS file lock on `run_dir/.iapo.lock`, which the OS releases when the process ends, however it
    ends, so a killed run never leaves a stale lock. The file names the holder (pid, host).

    A directory another process holds is refused with a one-line error naming that process, or
    with `wait`, waited for. Taking a lock this process already holds only (re)writes the note.
    `label` names the directory in errors; `note=False` leaves the file's note (the last holder's)
    as it is, for a check that may still refuse."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{label} {run_dir} is a file, not a directory")
    key = run_dir.resolve()
    if key in _held:
        if note:
            _write_note(_held[key])
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunDirError(f"{label} {run_dir} is not writable: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace")
        os.close(fd)
        try:
            who = json.loads(holder)
            who = f"pid {who['pid']} on {who['host']}"
        except (ValueError, TypeError, KeyError):
            who = "another process"
        raise RunDirError(f"{label} {run_dir} is in use by another iapo process ({who}); "
                          "wait for it to end or stop it") from None
    if note:
        _write_note(fd)
    _held[key] = fd
    return run_dir


def _write_note(fd: int) -> None:
    note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode(), 0)


def unlock_run_dir(run_dir: Path) -> None:
    """Release a lock `lock_run_dir` took (the end of the process releases it too)."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
