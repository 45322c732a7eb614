"""The run directory's configuration file, config.json: one writer, one reader.

config.json holds the `TrainConfig` as it was asked for (`config.to_dict`) and, under
`"resolved"`, what its "auto" settings resolved to when the run started (`resolve.resolve`). A
group of seeds trained together has one at its root and one in each `seed_<s>/` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from iapo.config import TrainConfig, to_dict, train_config_from_dict
from iapo.errors import ConfigError, IapoError
from iapo.files import write_json_atomic

CONFIG = "config.json"
RESOLVED = "resolved"


def write_config(run_dir: Path, config: TrainConfig, resolved: dict[str, str]) -> None:
    """config.json of the run in `run_dir`: `config` and what its "auto" settings resolved to."""
    write_json_atomic(Path(run_dir) / CONFIG, {**to_dict(config), RESOLVED: dict(resolved)})


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
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{path} is not a valid run configuration: {exc}") from None
    if not isinstance(resolved, dict) or not all(isinstance(v, str) for v in resolved.values()):
        raise ConfigError(f"{path} is not a valid run configuration: {RESOLVED!r} is not a mapping of settings")
    return config, resolved
