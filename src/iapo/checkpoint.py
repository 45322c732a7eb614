"""Crash-safe checkpoints of a whole training run.

A checkpoint file is a header line `IAPO-CKPT <format> <sha256 of the payload>` followed by the
payload, a pickle of plain Python and NumPy objects: the agent state as a state dict, whatever
else the training loop hands over (RNG states, environments, counters), and references to
*parts*, files under `checkpoints/parts/` that several checkpoints share. The replay buffer is
saved as parts, one per checkpoint with what was added since the one before, so the cost of a
checkpoint does not grow with the buffer. Files are written to a temporary name, fsynced and
renamed, so a crash leaves either the old or the new file, never half of one. The newest two
checkpoints are kept, with the parts they reference; loading verifies every checksum and falls
back to the older checkpoint, with a warning, when the newest or one of its parts is damaged.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from iapo.atomic import open_own
from iapo.errors import IapoError
from iapo.rundir import CHECKPOINT_FILE, CHECKPOINTS, PARTS, SNAPSHOT_FILE, SNAPSHOTS, checkpoint_file, snapshot_file

FORMAT_VERSION = 3
KEEP = 2
_MAGIC = b"IAPO-CKPT"


class CheckpointError(IapoError):
    """A checkpoint cannot be used (damaged, newer format, another configuration)."""


class NewerFormatError(CheckpointError):
    """A checkpoint written by a newer iapo: an error, never a reason to fall back."""


class MismatchError(CheckpointError):
    """A checkpoint of another agent or configuration: an error, never a reason to fall back."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / checkpoint_file(step)


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_FILE.fullmatch(p.name))]
    return sorted(found)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, obj) -> str:
    """Write `obj` with its header to `path` through a fsynced temporary file; its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(payload).hexdigest()
    header = b"%s %d %s\n" % (_MAGIC, FORMAT_VERSION, digest.encode())
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open_own(tmp, "wb") as f:
            f.write(header)
            f.write(memoryview(payload))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        before = any(path.parent.glob("ckpt_*.ckpt")) if path.name.startswith("ckpt_") else True
        after = "the previous one is intact" if before else "there is no earlier checkpoint to resume from"
        raise IapoError(f"cannot write checkpoint {path}: {exc.strerror or exc}; {after}") from None
    return digest


def write_part(run_dir: Path, name: str, obj) -> dict:
    """Write a part of a checkpoint (a piece of the replay buffer) that later checkpoints share;
    returns the reference to pass to `save`."""
    return {"name": name, "sha256": _write_atomic(Path(run_dir) / CHECKPOINTS / PARTS / f"{name}.part", obj)}


def save(run_dir: Path, step: int, state, extra: dict | None = None, parts: list[dict] = ()) -> Path:
    """Write the agent `state`, `extra` and references to `parts` at `step` atomically.

    The newest two checkpoints are kept, and the parts that they reference."""
    path = checkpoint_path(run_dir, step)
    payload = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "state": flax.serialization.to_state_dict(jax.device_get(state)),
        "extra": extra or {},
        "parts": list(parts),
    }
    _write_atomic(path, payload)
    kept = list_checkpoints(run_dir)
    for _, old in kept[:-KEEP]:
        old.unlink(missing_ok=True)
    _remove_unreferenced_parts(Path(run_dir), [p for _, p in kept[-KEEP:] if p != path], payload["parts"])
    return path


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / snapshot_file(step)


def save_snapshot(run_dir: Path, step: int, state) -> Path:
    """Keep the agent `state` at `step` in snapshots/ (same file format; never deleted)."""
    path = snapshot_path(run_dir, step)
    payload = {"format_version": FORMAT_VERSION, "step": step,
               "state": flax.serialization.to_state_dict(jax.device_get(state)), "extra": {}, "parts": []}
    _write_atomic(path, payload)
    return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshots, oldest first."""
    folder = Path(run_dir) / SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := SNAPSHOT_FILE.fullmatch(p.name)))


def _remove_unreferenced_parts(run_dir: Path, others: list[Path], refs: list[dict]) -> None:
    names = {r["name"] for r in refs}
    for other in others:
        try:
            names |= {r["name"] for r in read(other).get("parts", [])}
        except CheckpointError:
            return  # cannot tell what a damaged checkpoint needs: remove nothing
    folder = run_dir / CHECKPOINTS / PARTS
    if folder.is_dir():
        for f in folder.iterdir():
            if f.suffix == ".part" and f.stem not in names:
                f.unlink(missing_ok=True)


def _verified(path: Path, what: str) -> tuple[bytes, memoryview]:
    """(header sha256, payload) of a checkpoint or part file whose checksum matches; the
    payload is a view of the file's bytes, not a copy (parts can be gigabytes)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    newline = data.find(b"\n", 0, 200)
    header, payload = data[: max(newline, 0)], memoryview(data)[newline + 1 :]
    parts = header.split(b" ")
    if len(parts) != 3 or parts[0] != _MAGIC or not parts[1].isdigit():
        raise CheckpointError(f"{what} {path} is not an iapo checkpoint (bad header)")
    version = int(parts[1])
    if version > FORMAT_VERSION:
        raise NewerFormatError(
            f"{what} {path} has format {version}, newer than this iapo understands ({FORMAT_VERSION}); upgrade iapo"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(f"{what} {path} has format {version}, from an older iapo that this one cannot read")
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise CheckpointError(f"{what} {path} is damaged (checksum mismatch)")
    return parts[2], payload


def read(path: Path) -> dict:
    """The verified payload of one checkpoint file."""
    return pickle.loads(_verified(path, "checkpoint")[1])


def read_parts(run_dir: Path, payload: dict) -> list:
    """The verified parts a checkpoint's payload references, in its order."""
    out = []
    for ref in payload.get("parts", []):
        path = Path(run_dir) / CHECKPOINTS / PARTS / f"{ref['name']}.part"
        digest, data = _verified(path, "checkpoint part")
        if digest.decode() != ref["sha256"]:
            raise CheckpointError(f"checkpoint part {path} is not the one its checkpoint was written with")
        out.append(pickle.loads(data))
    return out


def restore_state(payload: dict, template, path: Path):
    """The agent state of `payload` in the structure of `template` (an initialized AgentState)."""
    saved = dict(payload["state"])
    for name, value in flax.serialization.to_state_dict(template).items():
        if name not in saved and isinstance(value, dict) and not value:  # a field added since, empty for this agent (the model)
            saved[name] = {}
    try:
        state = flax.serialization.from_state_dict(template, saved)
        shapes_match = jax.tree.all(jax.tree.map(lambda a, b: np.shape(a) == np.shape(b), template, state))
    except Exception as exc:  # noqa: BLE001
        raise MismatchError(f"checkpoint {path} does not match this agent's configuration ({exc})") from None
    if not shapes_match:
        raise MismatchError(f"checkpoint {path} does not match this agent's configuration (shapes differ)")
    return state


def load(path: Path, template, with_parts: bool = False) -> tuple[object, dict]:
    """(agent state, extra) of one checkpoint. extra["part_refs"] are the references to its
    parts; with `with_parts` these are read and verified too and are in extra["parts"]."""
    payload = read(path)
    extra = payload.get("extra", {})
    extra["part_refs"] = payload.get("parts", [])
    if with_parts:
        extra["parts"] = read_parts(Path(path).parent.parent, payload)
    return restore_state(payload, template, path), extra


def load_latest(run_dir: Path, template, with_parts: bool = False) -> tuple[int, object, dict]:
    """(step, agent state, extra) of the newest usable checkpoint (see `load`).

    A damaged newest checkpoint gives a warning naming it and the one before is used; a
    checkpoint of a newer format or another configuration is an error, not a fallback.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}")
    problems = []
    for step, path in reversed(found):
        try:
            return step, *load(path, template, with_parts)
        except (NewerFormatError, MismatchError):
            raise
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"{exc}; trying the one before", stacklevel=2)
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
