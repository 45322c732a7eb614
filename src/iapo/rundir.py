"""The run directory: its layout, its one writer, and its configuration file.

Every name iapo gives a file or folder of a run is here, and every other module asks here:

    RUN_DIR/config.json                      the TrainConfig as asked for, and under "resolved"
                                             what its "auto" settings meant where it started
    RUN_DIR/metrics.csv                      one row per evaluation (`logger`)
    RUN_DIR/learning_curve.png
    RUN_DIR/tensorboard/events.out.tfevents.*
    RUN_DIR/checkpoints/ckpt_<step:09d>.ckpt  everything a resume needs (`checkpoint`)
    RUN_DIR/checkpoints/parts/replay_<start:012d>_<stop:012d>.part
    RUN_DIR/snapshots/agent_<step:09d>.ckpt   agent states kept for the analyses over training
    RUN_DIR/wandb/                           the W&B run's id, with --wandb-project
    RUN_DIR/.iapo.lock                       held by the one process that writes the run

A group of seeds trained together holds a config.json, a learning_curve.png and the lock at its
root and one run directory per seed, `seed_<s>/`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

from iapo.config import TrainConfig

from iapo.configfile import run_identity, train_config_from_dict
from iapo.errors import ConfigError, IapoError, RunDirError
from iapo.atomic import write_json_atomic

CONFIG = "config.json"
RESOLVED = "resolved"  # config.json's record of what the "auto" settings resolved to
# Beside the resolved settings, for an environment with Dict or Tuple observations: the order of
# the flat observation, [[key path, size], ...] (`envs.observation_layout`).
OBSERVATION_LAYOUT = "observation_layout"
METRICS = "metrics.csv"
MACHINE = "machine.json"  # where the run trained: one record per start or resume (`iapo.machine`)
CURVE = "learning_curve.png"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
PARTS = "parts"  # under checkpoints/: the files that several checkpoints share (the replay buffer)
SNAPSHOTS = "snapshots"
WANDB = "wandb"
LOCK = ".iapo.lock"
WRITE_PROBE = ".iapo-write-test"
SEED_PREFIX = "seed_"
RUN_FILES = (CONFIG, METRICS, MACHINE, CURVE, TENSORBOARD, CHECKPOINTS, SNAPSHOTS, WANDB)  # what --overwrite removes

CHECKPOINT_FILE = re.compile(r"ckpt_(\d{9})\.ckpt")
SNAPSHOT_FILE = re.compile(r"agent_(\d{9})\.ckpt")
PART_FILE = re.compile(r"replay_\d{12}_\d{12}\.part")


def checkpoint_file(step: int) -> str:
    return f"ckpt_{step:09d}.ckpt"


def snapshot_file(step: int) -> str:
    return f"agent_{step:09d}.ckpt"


def part_name(start: int, stop: int) -> str:
    """The name of the part that holds the replay buffer's transitions [start, stop)."""
    return f"replay_{start:012d}_{stop:012d}"


def seed_dir(run_dir: Path, seed: int) -> Path:
    """The run directory of seed `seed` of the group in `run_dir`."""
    return Path(run_dir) / f"{SEED_PREFIX}{seed}"


def seed_of(path: Path) -> str | None:
    """The seed a group's seed folder is named for (as written), or None for another path."""
    name = Path(path).name
    return name[len(SEED_PREFIX):] if name.startswith(SEED_PREFIX) else None


def run_dirs(config: TrainConfig) -> list[Path]:
    """The run directories of `config`: its seeds' folders for a group, else its own."""
    if config.seeds is None:
        return [Path(config.run_dir)]
    return [seed_dir(config.run_dir, seed) for seed in config.seeds]


# What iapo writes in a run directory, by path relative to it (a seed's folder of a group holds the
# same); `--overwrite` deletes these and nothing else.
_TMP = r"(\.tmp)?"
OWN_FILES = [re.compile(p) for p in (
    re.escape(CONFIG) + _TMP, re.escape(METRICS) + _TMP, re.escape(MACHINE) + _TMP, re.escape(CURVE) + _TMP, re.escape(LOCK),
    re.escape(WRITE_PROBE), f"{CHECKPOINTS}/{CHECKPOINT_FILE.pattern}{_TMP}",
    f"{CHECKPOINTS}/{PARTS}/{PART_FILE.pattern}{_TMP}", f"{SNAPSHOTS}/{SNAPSHOT_FILE.pattern}{_TMP}",
    rf"{TENSORBOARD}/events\.out\.tfevents\.[^/]+", rf"{WANDB}/.+",
)]


def foreign_file(run_dir: Path, path: Path) -> Path | None:
    """A file at or under `path` (a file or folder of `run_dir` by one of iapo's names, or a
    seed's folder of a group) that iapo did not write, if there is one."""
    base = path if path.is_dir() and seed_of(path) is not None else run_dir
    files = sorted(p for p in path.rglob("*") if not p.is_dir()) if path.is_dir() else [path]
    for file in files:
        if not any(pattern.fullmatch(file.relative_to(base).as_posix()) for pattern in OWN_FILES):
            return file
    return None


# -- the lock --------------------------------------------------------------------------------------
_held: dict[Path, int] = {}  # run directory -> the open file descriptor holding its lock


def lock(run_dir: Path, wait: bool = False, label: str = "--run-dir", note: bool = True) -> Path:
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
    if (run_dir / LOCK).is_symlink():  # (never truncate the file a link points to)
        raise RunDirError(f"{run_dir / LOCK} is a symbolic link; iapo does not follow links when it writes its own "
                          "files: remove it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
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


def unlock(run_dir: Path) -> None:
    """Release a lock `lock` took (the end of the process releases it too)."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- a new run's directory -------------------------------------------------------------------------
def prepare(config: TrainConfig) -> Path:
    """Check that the run directory can take this run and lock it for this process (see `lock`);
    with --overwrite, clear the old run (only what iapo wrote there)."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory")
    if (run_dir / LOCK).exists():  # a live writer is named before anything else is said
        lock(run_dir, note=False)
    try:
        existing = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
        if run_dir.is_dir():
            existing += [p for p in run_dir.glob(f"{SEED_PREFIX}*") if (p / CONFIG).exists()]
        for path in existing:  # refuse to call a folder of other files a run, or to delete them
            stranger = foreign_file(run_dir, path)
            if stranger is not None:
                raise RunDirError(f"--run-dir {run_dir} holds {stranger}, which iapo did not write; move it away "
                                  "or choose another --run-dir")
        if existing and not config.overwrite:
            try:
                same = run_identity(json.loads((run_dir / CONFIG).read_text())) == run_identity(dataclasses.asdict(config))
            except (OSError, ValueError):
                same = False
            what = "a run with this configuration" if same else "a different run"
            raise RunDirError(
                f"--run-dir {run_dir} already holds {what}; pass --overwrite to replace it, "
                "or choose another --run-dir"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / WRITE_PROBE
            if probe.is_symlink():  # (removed, not written through)
                probe.unlink()
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"--run-dir {run_dir} is not writable: {exc.strerror or exc}") from None
        lock(run_dir)
    except RunDirError:
        unlock(run_dir)
        raise
    if config.overwrite:
        for path in existing:  # (a link is removed itself, never what it points to)
            if path.is_symlink() or not path.is_dir():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path)
    return run_dir


# -- config.json -----------------------------------------------------------------------------------
def write_config(run_dir: Path, config: TrainConfig, resolved: dict[str, str]) -> None:
    """config.json of the run in `run_dir`: `config` and what its "auto" settings resolved to."""
    write_json_atomic(Path(run_dir) / CONFIG, {**dataclasses.asdict(config), RESOLVED: dict(resolved)})


def read_config(run_dir: Path) -> tuple[TrainConfig, dict[str, str]]:
    """The run's `TrainConfig` (an older version's at the values that reproduce its runs) and
    what its "auto" settings resolved to ({} for a run of a version that did not record them); a
    one-line IapoError when `run_dir` is not a run directory, a ConfigError when its config.json
    is not a run configuration."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise IapoError(f"{run_dir} is not a run directory")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IapoError(f"{run_dir} holds no {CONFIG}: not a run directory") from None
    except IsADirectoryError:
        raise IapoError(f"{path} is a folder, not a run configuration") from None
    except OSError as exc:
        raise IapoError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a valid run configuration: {exc}") from None
    resolved = data.pop(RESOLVED, {}) if isinstance(data, dict) else {}
    try:
        config = train_config_from_dict(data)
        config.validate()  # (every command on the run takes these values: a hand-edited 0 is refused here)
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{path} is not a valid run configuration: {exc}") from None
    if not isinstance(resolved, dict) or not all(isinstance(v, str) for k, v in resolved.items()
                                                 if k != OBSERVATION_LAYOUT):
        raise ConfigError(f"{path} is not a valid run configuration: {RESOLVED!r} is not a mapping of settings")
    return config, resolved
