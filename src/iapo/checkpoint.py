"""Checkpoints: the agent state pytree and the step, written atomically as msgpack."""

from __future__ import annotations

import os
import re
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from iapo.errors import IapoError

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{9})\.msgpack$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_{step:09d}.msgpack"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save(run_dir: Path, step: int, state) -> Path:
    """Write the state at `step` (temporary file, fsync, rename) and return its path."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "state": flax.serialization.to_state_dict(jax.device_get(state)),
    }
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: Path, template):
    """(step, state) restored into the structure of `template` (an initialized AgentState)."""
    try:
        payload = flax.serialization.msgpack_restore(Path(path).read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise IapoError(f"cannot read checkpoint {path}: {exc}") from None
    version = int(payload.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise IapoError(f"checkpoint {path} has format {version}, newer than this iapo ({FORMAT_VERSION})")
    try:
        state = flax.serialization.from_state_dict(template, payload["state"])
        shapes_match = jax.tree.all(
            jax.tree.map(lambda a, b: np.shape(a) == np.shape(b), template, state)
        )
    except Exception as exc:  # noqa: BLE001
        raise IapoError(f"checkpoint {path} does not match this agent's configuration: {exc}") from None
    if not shapes_match:
        raise IapoError(f"checkpoint {path} does not match this agent's configuration (shapes differ)")
    return int(payload["step"]), state


def load_latest(run_dir: Path, template):
    found = list_checkpoints(run_dir)
    if not found:
        raise IapoError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}")
    return load(found[-1][1], template)
