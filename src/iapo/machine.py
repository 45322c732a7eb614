"""Where a run trained: each start or resume of a run appends one record of the machine and the
software to the run directory's machine.json, with the step it started from. A run that was
killed and resumed elsewhere lists both machines, so that its wall time (`wall_time_s`) and
its numbers can be read beside the CPU that produced them (the same seeds on another CPU
differ, and so does the speed)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import jax

from iapo.atomic import write_json_atomic
from iapo.errors import RunDirError
from iapo.precision import cpu_flags
from iapo.rundir import MACHINE

# The CPU features that decide iapo's "auto" matmul precision and much of its speed.
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
_PACKAGES = ("iapo", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco")


def cpu_name() -> str:
    """The CPU's model name, with the family and model numbers that tell CPUs of one name apart
    (AMD's EPYC generations, Intel's Xeons): "AMD EPYC 9B45 (family 26, model 2)"."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        return f"{name} (family {info['cpu family']}, model {info['model']})"
    return name


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _source() -> dict | None:
    """The git commit of the checkout iapo runs from, and whether its tracked files differ from it
    (None for an installed copy outside a git checkout, or without git)."""
    here = Path(__file__).resolve().parent
    try:
        # (a copy installed inside someone's repository, a venv in a project folder, is not tracked there)
        tracked = subprocess.run(["git", "-C", str(here), "ls-files", "--", Path(__file__).name], capture_output=True,
                                 text=True, timeout=10)
        if tracked.returncode != 0 or not tracked.stdout.strip():
            return None
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "modified": bool(status.stdout.strip()) if status.returncode == 0 else None}


def describe() -> dict:
    """This process's machine: CPU, the cores it may use, memory, JAX's backend and devices, the
    versions of iapo and the libraries its numbers depend on, and iapo's git commit."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu_flags()
    return {
        "host": platform.node(),
        "cpu": cpu_name(),
        "cpu_flags": [f for f in _FLAGS if f in flags],
        "cores": cores,
        "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": sorted({d.device_kind for d in jax.devices()}),
        "versions": {p: _version(p) for p in _PACKAGES},
        "iapo_source": _source(),  # the git commit of iapo's own source, where it runs from a checkout
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
    }


def read(run_dir: Path) -> list[dict]:
    """The records of `run_dir`'s machine.json, oldest first ([] where there is none); a
    ValueError where the file is not one iapo wrote."""
    path = Path(run_dir) / MACHINE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{path} is not valid JSON") from None
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise ValueError(f"{path} holds no list of sessions")
    return sessions


def record(run_dirs: list[Path], step: int) -> None:
    """Append this process's machine, starting at `step`, to each run directory's machine.json.
    It only describes the run: a file that cannot be read or written is said once as a warning and
    left as it is, and training goes on."""
    entry = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "from_step": int(step), **describe()}
    for run_dir in run_dirs:
        try:
            sessions = read(run_dir)
            write_json_atomic(Path(run_dir) / MACHINE, {"sessions": [*sessions, entry]})
        except (ValueError, RunDirError, OSError) as exc:
            warnings.warn(f"{exc}; {MACHINE} was left as it is (it records where the run trained)", stacklevel=2)
