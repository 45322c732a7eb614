"""Crash-safe checkpoints of a whole training run.

A checkpoint file is a header line `IAPO-CKPT <format> <sha256 of the payload>` followed by the
payload, a pickle of plain Python and NumPy objects: the agent state as a state dict, and
whatever else the training loop hands over (RNG states, environments, replay buffer, counters).
Files are written to a temporary name, fsynced and renamed, so a crash leaves either the old or
the new file, never half of one. The newest two are kept; loading verifies the checksum and
falls back to the older one, with a warning, when the newest is damaged.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from iapo.errors import IapoError

FORMAT_VERSION = 2
KEEP = 2
_MAGIC = b"IAPO-CKPT"
_NAME = re.compile(r"^ckpt_(\d{9})\.ckpt$")


class CheckpointError(IapoError):
    """A checkpoint cannot be used (damaged, newer format, another configuration)."""


class NewerFormatError(CheckpointError):
    """A checkpoint written by a newer iapo: an error, never a reason to fall back."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_{step:09d}.ckpt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: Path, step: int, state, extra: dict | None = None) -> Path:
    """Write the agent `state` and `extra` at `step` atomically; keep the newest two."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(
        {
            "format_version": FORMAT_VERSION,
            "step": step,
            "state": flax.serialization.to_state_dict(jax.device_get(state)),
            "extra": extra or {},
        },
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    header = b"%s %d %s\n" % (_MAGIC, FORMAT_VERSION, hashlib.sha256(payload).hexdigest().encode())
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IapoError(f"cannot write checkpoint {path}: {exc.strerror or exc}; the previous one is intact") from None
    for _, old in list_checkpoints(run_dir)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path) -> dict:
    """The verified payload of one checkpoint file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    header, _, payload = data.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 3 or parts[0] != _MAGIC or not parts[1].isdigit():
        raise CheckpointError(f"checkpoint {path} is not an iapo checkpoint (bad header)")
    version = int(parts[1])
    if version > FORMAT_VERSION:
        raise NewerFormatError(
            f"checkpoint {path} has format {version}, newer than this iapo understands ({FORMAT_VERSION}); upgrade iapo"
        )
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise CheckpointError(f"checkpoint {path} is damaged (checksum mismatch)")
    return pickle.loads(payload)


def restore_state(payload: dict, template, path: Path):
    """The agent state of `payload` in the structure of `template` (an initialized AgentState)."""
    try:
        state = flax.serialization.from_state_dict(template, payload["state"])
        shapes_match = jax.tree.all(jax.tree.map(lambda a, b: np.shape(a) == np.shape(b), template, state))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} does not match this agent's configuration ({exc})") from None
    if not shapes_match:
        raise CheckpointError(f"checkpoint {path} does not match this agent's configuration (shapes differ)")
    return state


def load_latest(run_dir: Path, template) -> tuple[int, object, dict]:
    """(step, agent state, extra) of the newest usable checkpoint.

    A damaged newest checkpoint gives a warning naming it and the one before is used; a
    checkpoint of a newer format or another configuration is an error, not a fallback.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}")
    problems = []
    for step, path in reversed(found):
        try:
            payload = read(path)
        except NewerFormatError:
            raise
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"{exc}; trying the one before", stacklevel=2)
            continue
        return step, restore_state(payload, template, path), payload.get("extra", {})
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
