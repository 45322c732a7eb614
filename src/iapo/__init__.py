"""iapo: iterative amortized policy optimization (Marino et al., NeurIPS 2021) in JAX.

From Python (docs/python-api.md): `iapo.train(...)` trains and returns the run directory and its
metrics; `iapo.load(run_dir)` gives a trained `Policy` whose `act(obs)` returns actions in the
environment's bounds. Nothing heavy is imported until one of these names is first used.
"""

from __future__ import annotations

import importlib

__version__ = "0.3.0"

_NAMES = {
    "load": "iapo.api", "train": "iapo.api", "make_config": "iapo.api", "Policy": "iapo.api",
    "TrainResult": "iapo.api", "TrainConfig": "iapo.config", "AgentConfig": "iapo.config",
    "read_config_file": "iapo.configfile",
    "IapoError": "iapo.errors", "ConfigError": "iapo.errors",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'iapo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_NAMES[name]), name)
    globals()[name] = value  # (looked up once)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
