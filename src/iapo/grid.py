"""A sweep's grid: its settings (`SweepConfig`, `iapo sweep`'s flags), and the trials it makes,
environments x agents x `--set` values, each a validated `TrainConfig` whose seeds train together
(`build_trials`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import tyro

from iapo.config import AgentConfig, TrainConfig, parse_count, parse_env_kwargs, parse_seeds, show_value

from iapo.configfile import read_config_file
from iapo.errors import ConfigError
from iapo.kinds import KINDS, AgentKind

# TrainConfig fields that a sweep sets itself, so `--set` may not.
RESERVED = {"env", "seed", "seeds", "total_steps", "run_dir", "overwrite", "resume", "progress", "algo", "agent"}


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A grid of trials (environments x agents x --set values); the seeds of each trial train
    together in one process. Re-running the same command completes only the missing or
    unfinished trials; Ctrl-C stops every trial at a checkpoint."""

    envs: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="ENV [ENV ...]")] = None
    """Gymnasium environment ids. Unset: the --config file's env, or Hopper-v5."""

    agents: Annotated[tuple[AgentKind, ...] | None, tyro.conf.arg(metavar="AGENT [AGENT ...]")] = None
    """Agents: any of `direct`, `iterative`, `direct-flow`, `gradient`, `cem`. Unset: the --config
    file's agent, or direct and iterative."""

    seeds: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="SEEDS [SEEDS ...]")] = None
    """Seeds of every trial: numbers and inclusive ranges, e.g. `0-4` or `0 1 7`. Unset: the
    --config file's seeds (or seed), or 0-4."""

    total_steps: Annotated[int | None, tyro.conf.arg(metavar="INT")] = None
    """Steps of every trial (environment steps; actions under --action-repeat). Unset: the --config
    file's total_steps, or 1000000."""

    out: str = "sweeps/study"
    """The sweep's directory."""

    config: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """A YAML or JSON file of `iapo train` settings (as `iapo train --config` reads, e.g.
    configs/iterative.yaml): every trial starts from it; --set and the flags above override it.
    Its run_dir is not used (each trial's is OUT/<trial>)."""

    set: tuple[str, ...] = ()
    """Settings as KEY=V1,V2,...: any field of `iapo train` (dashes or underscores). A key with
    several values is an axis of the grid; one with one value applies to every trial.
    Widths are written 256x256."""

    backend: Literal["local", "ray"] = "local"
    """`local`: child processes on this machine; `ray`: Ray tasks on a cluster."""

    address: Annotated[str | None, tyro.conf.arg(metavar="ADDRESS")] = None
    """Ray: the cluster to join (e.g. `auto` or `ray://host:10001`); unset starts a local one.
    Every node must see --out at the same path (a shared filesystem)."""

    cpus_per_trial: int = 1
    """CPU cores one trial uses: local runs cores // this many trials at once; Ray reserves them."""

    gpus_per_trial: float = 0.0
    """Ray: GPUs reserved per trial (fractions share a GPU)."""

    workers: Annotated[int | None, tyro.conf.arg(metavar="N")] = None
    """Local: trials at once; unset means the cores available // --cpus-per-trial."""

    max_retries: int = 3
    """Ray: retries of a trial whose worker process or node dies (each resumes from its checkpoint)."""

    progress: bool = True
    """Show the live table of trials; otherwise print a line when a trial's status changes."""


@dataclasses.dataclass
class Trial:
    name: str
    config: TrainConfig
    settings: dict  # the grid axes' values of this trial
    status: str = "pending"  # pending | running | done | failed | stopped
    steps: int = 0
    last_return: float | None = None
    error: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.config.run_dir)


# -- the grid ------------------------------------------------------------------------------------
def _field_types() -> dict[str, tuple[str, object]]:
    """Field name -> ("train" or "algo", its type) for every field `--set` may name."""
    train = typing.get_type_hints(TrainConfig)
    algo = typing.get_type_hints(AgentConfig)
    fields = {name: ("algo", tp) for name, tp in algo.items() if name not in RESERVED}
    fields.update({name: ("train", tp) for name, tp in train.items() if name not in RESERVED})
    return fields


def _convert(text: str, tp) -> object:
    """One `--set` value as the field's type (raises ValueError)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(text, inner)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"one of {', '.join(map(str, args))}")
        return text
    if origin is tuple:
        return tuple(_convert(part, args[0]) for part in text.split("x"))
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("true or false")
    if tp is int:
        return parse_count(text)
    if tp is float:
        return float(text)
    return text


def split_values(text: str) -> list[str]:
    """`--set` values split at the commas that are not inside brackets, braces or quotes, so that a
    JSON list or object is one value: "1,[2,3],{\"a\": 4}" -> ["1", "[2,3]", "{\"a\": 4}"]."""
    values, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote and text[i - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise ConfigError(f"--set: unbalanced brackets or quotes in {text!r}")
    return values + [text[start:]]


def parse_settings(items: tuple[str, ...]) -> dict[str, list]:
    """`("iterations=1,2,5", "batch-size=128")` -> {"iterations": [1, 2, 5], "batch_size": [128]}."""
    fields = _field_types()
    settings: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if name in RESERVED:
            raise ConfigError(f"--set {key}: set by the sweep itself (use its own flag)")
        if name == "env_kwargs":
            raise ConfigError("--set env-kwargs: give one option per key, as env-kwargs.KEY=VALUE[,VALUE...]")
        if name.startswith("env_kwargs."):  # one environment option, each value as --env-kwargs reads it
            option = name.split(".", 1)[1]
            if name in settings:
                raise ConfigError(f"--set {key} is given twice")
            settings[name] = list(dict.fromkeys(value.strip() for value in split_values(values)))
            for value in settings[name]:
                parse_env_kwargs([f"{option}={value}"])
            continue
        if name not in fields:
            raise ConfigError(f"--set {key}: no such field of `iapo train`")
        if name in settings:
            raise ConfigError(f"--set {key} is given twice")
        converted = []
        for value in split_values(values):
            try:
                converted.append(_convert(value.strip(), fields[name][1]))
            except ValueError as exc:
                expected = f" (expected {exc})" if str(exc) and "invalid literal" not in str(exc) else ""
                raise ConfigError(f"--set {key}: {value!r} is not a valid value{expected}") from None
        settings[name] = list(dict.fromkeys(converted))  # a value given twice is one trial, not two on one folder
    return settings


def resolve(cfg: SweepConfig) -> tuple[SweepConfig, TrainConfig]:
    """`cfg` with its unset grid flags filled in, and the TrainConfig every trial starts from:
    both from the --config file where one is given, otherwise iapo sweep's defaults (Hopper-v5;
    direct and iterative; seeds 0-4; 1M steps) and `iapo train`'s."""
    if cfg.config is None:
        base = TrainConfig()
        unset = dict(envs=("Hopper-v5",), agents=("direct", "iterative"), seeds=("0-4",), total_steps=1_000_000)
    else:
        base = read_config_file(cfg.config)
        seeds = base.seeds if base.seeds is not None else (base.seed,)
        unset = dict(envs=(base.env,), agents=(base.algo.agent,), seeds=tuple(map(str, seeds)),
                     total_steps=base.total_steps)
    given = {name: getattr(cfg, name) for name in unset if getattr(cfg, name) is not None}
    return dataclasses.replace(cfg, **{**unset, **given}), base


def build_trials(cfg: SweepConfig) -> list[Trial]:
    """The grid's cells, each a validated TrainConfig whose run directory is OUT/<name>."""
    cfg, base = resolve(cfg)
    if not cfg.envs:
        raise ConfigError("--envs must name at least one environment")
    if not cfg.agents:
        raise ConfigError("--agents must name at least one agent")
    agents = tuple(KINDS)
    for agent in cfg.agents:
        if agent not in agents:
            raise ConfigError(f"--agents: unknown agent {agent!r} (choose from {', '.join(agents)})")
    seeds = parse_seeds(cfg.seeds)
    settings = parse_settings(cfg.set)
    fields = _field_types()
    axes = [name for name, values in settings.items() if len(values) > 1]
    trials = []
    envs, agents = dict.fromkeys(cfg.envs), dict.fromkeys(cfg.agents)  # (each once, in the order given)
    for env, agent, *values in itertools.product(envs, agents, *settings.values()):
        chosen = dict(zip(settings, values))
        options = {k.split(".", 1)[1]: v for k, v in chosen.items() if k.startswith("env_kwargs.")}
        algo = {k: v for k, v in chosen.items() if k in fields and fields[k][0] == "algo"}
        train = {k: v for k, v in chosen.items() if k in fields and fields[k][0] == "train"}
        if options:  # the sweep's options replace the base's of the same name
            merged = {**parse_env_kwargs(base.env_kwargs), **parse_env_kwargs([f"{k}={v}" for k, v in options.items()])}
            train["env_kwargs"] = tuple(f"{k}={json.dumps(v)}" for k, v in merged.items())
        name = "_".join([env, agent] + [f"{k.removeprefix('env_kwargs.')}={show_value(chosen[k])}" for k in axes])
        name = name.replace("/", "-").replace("\\", "-")  # (one folder: a dm_control id or a path value has no /)
        config = dataclasses.replace(base, env=env, seeds=seeds, total_steps=cfg.total_steps,
                                     run_dir=str(Path(cfg.out) / name), overwrite=False, resume=None, progress=False,
                                     algo=dataclasses.replace(base.algo, agent=agent, **algo), **train)
        try:
            config.validate()
        except ConfigError as exc:
            raise ConfigError(f"trial {name}: {exc}") from None
        trials.append(Trial(name, config, {k: chosen[k] for k in axes}))
    folders: dict[str, Trial] = {}
    for trial in trials:  # values that differ only where a folder name cannot (a/b and a-b)
        if trial.name in folders:
            first = folders[trial.name]
            raise ConfigError(f"trials {_cell(first)} and {_cell(trial)} would share the folder {trial.name}; "
                              "give values that differ in more than / and \\")
        folders[trial.name] = trial
    return trials


def _cell(trial: Trial) -> str:
    """A trial's grid cell as the user wrote it: its environment, agent and settings."""
    parts = [trial.config.env, trial.config.algo.agent] + [f"{k.removeprefix('env_kwargs.')}={show_value(v)}"
                                                           for k, v in trial.settings.items()]
    return "(" + ", ".join(parts) + ")"


