"""A run directory as a whole, read back: its configuration, its agent, its checkpoints and
snapshots. What `iapo evaluate`, the analyses, `iapo train --resume` and sweeps read a finished
(or stopped) run with.

A run directory holds `config.json` (the `TrainConfig`), `metrics.csv`, `tensorboard/`,
`checkpoints/` (everything a resume needs) and `snapshots/` (agent states kept for the analyses
over training); a group of seeds trained together holds one such directory per seed,
`seed_<s>/`, beside its own `config.json` (see the README, "What a run directory holds").
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import jax

from iapo import checkpoint
from iapo.agent import Agent, AgentState
from iapo.config import TrainConfig, show_value
from iapo.configfile import PRESENTATION_FIELDS, train_config_from_dict, upgrade
from iapo.envs import check_observation_layout, dims, make_run_env
from iapo.errors import ConfigError, IapoError
from iapo.resolve import apply
from iapo.rundir import CONFIG, OBSERVATION_LAYOUT, read_config, seed_dir


def load_run_config(run_dir: Path) -> TrainConfig:
    """The `TrainConfig` of the run in `run_dir` as it was asked for (an older version's at the
    values that reproduce its runs); a one-line IapoError when `run_dir` is not a run directory."""
    return read_config(run_dir)[0]


def make_agent(config: TrainConfig, layout: list | None = None) -> Agent:
    """The agent `config` describes, with its environment's dimensions; the environment's
    observation layout checked against `layout`, the one the run recorded (if any)."""
    env = make_run_env(config)
    try:
        check_observation_layout(env, layout, config.env)
        obs_dim, act_dim = dims(env)
    finally:
        env.close()
    return Agent(config.algo, obs_dim, act_dim)


def load_agent(run_dir: Path, step: int | None = None) -> tuple[TrainConfig, Agent, AgentState, int]:
    """(config, agent, state, step) of the newest checkpoint in `run_dir`, or of the snapshot (or
    checkpoint) at `step`. A group of seeds is refused: one of its seeds' folders is a run."""
    run_dir = Path(run_dir)
    config, resolved = read_config(run_dir)
    config = apply(config, resolved)
    if config.seeds is not None:
        raise IapoError(
            f"{run_dir} holds seeds {' '.join(map(str, config.seeds))} trained together; "
            f"name one of them: {seed_dir(run_dir, config.seeds[0])}"
        )
    agent = make_agent(config, resolved.get(OBSERVATION_LAYOUT))
    if step is None:
        step, state, _ = checkpoint.load_latest(run_dir, _template(agent))
        return config, agent, state, step
    found = dict(checkpoint.list_checkpoints(run_dir)) | dict(checkpoint.list_snapshots(run_dir))
    if step not in found:
        have = " ".join(map(str, sorted(found))) or "none"
        raise IapoError(f"{run_dir} has no snapshot or checkpoint of step {step} (steps: {have})")
    return config, agent, load_state(found[step], agent), step


def snapshots(run_dir: Path) -> dict[int, Path]:
    """The run's snapshots by step, oldest first; an IapoError when it has none."""
    found = dict(checkpoint.list_snapshots(Path(run_dir)))
    if not found:
        raise IapoError(f"{run_dir} has no snapshots (train with --snapshot-every)")
    return found


@functools.lru_cache(maxsize=8)
def _template(agent: Agent) -> AgentState:
    """A state of the agent's shapes, to restore saved states into."""
    return agent.init(jax.random.PRNGKey(0))


def load_state(path: Path, agent: Agent) -> AgentState:
    """The agent state saved at `path` (a snapshot or checkpoint of `agent`'s run)."""
    state, _ = checkpoint.load(path, _template(agent))
    return state


def check_analysis_inputs(seed: int = 0, out: str | None = None, run_dirs: tuple[str, ...] | None = None) -> None:
    """One-line errors for what the analyses and `iapo evaluate` take: a seed that seeds an
    environment, an --out that is not a file and, for those that read several runs, at least one
    run directory, all of one environment (one figure compares runs of one environment)."""
    if run_dirs is not None:
        if not run_dirs:
            raise ConfigError("name at least one run directory")
        envs = {d: load_run_config(Path(d)).env for d in run_dirs}
        if len(set(envs.values())) > 1:
            shown = ", ".join(f"{d} ({env})" for d, env in envs.items())
            raise ConfigError(f"the runs are of different environments: {shown}; analyze one environment at a time")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be in [0, 2**32), got {seed}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")


# -- settings: the runs that differ only in the seed ----------------------------------------------
IGNORED = {"seed", "seeds", *PRESENTATION_FIELDS}  # not part of a setting's identity
# Part of the identity, but budget and bookkeeping: not named in labels.
UNLABELLED = {"total_steps", "stop_return", "checkpoint_every", "snapshot_every", "eval_every", "eval_episodes"}


@dataclasses.dataclass
class Setting:
    """Runs whose configurations agree apart from the seed."""
    env: str
    identity: dict  # the configuration shared by the runs, flattened
    runs: list[Path]
    seeds: list = dataclasses.field(default_factory=list)  # each run's seed, as its config.json says
    label: str = ""  # the agent and the fields in which this setting differs from the others of its env


def _flatten(config: dict) -> dict:
    """The configuration as one flat dict, the fields an older run lacks at their defaults, and
    `matmul_precision` "auto" as it resolved where the run started, where its config.json records
    that: bfloat16 and float32 runs compute different things, so they are different settings."""
    resolved = config.get("resolved") if isinstance(config, dict) else None  # (upgrade drops this record)
    try:
        config = upgrade(config)
    except (ValueError, IapoError) as exc:
        raise IapoError(f"not a run configuration: {exc}") from None
    flat = {k: v for k, v in config.items() if k != "algo" and k not in IGNORED}
    flat.update(config.get("algo", {}))
    flat["pessimism"] = train_config_from_dict(config).algo.beta  # the beta in force (unset: the agent's default)
    if isinstance(resolved, dict) and resolved.get("matmul_precision") in ("float32", "bfloat16"):
        flat["matmul_precision"] = resolved["matmul_precision"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def settings_of(runs: list[Path]) -> list[Setting]:
    """The runs (directories with a config.json) grouped into settings, in order of first
    appearance, each labelled with its agent and the settings in which it differs from the other
    settings of its environment (what `iapo plot` and `iapo analyze gap --mean-over-seeds` draw)."""
    settings: dict[tuple, Setting] = {}
    for run in dict.fromkeys(runs):
        try:
            config = json.loads((run / CONFIG).read_text())
            identity = _flatten(config)
        except (OSError, ValueError, IapoError) as exc:
            raise IapoError(f"{run / CONFIG} is unreadable: {exc}") from None
        key = tuple(sorted(identity.items(), key=lambda kv: kv[0]))
        setting = settings.setdefault(key, Setting(identity.get("env", "?"), identity, []))
        setting.runs.append(run)
        setting.seeds.append(config.get("seed"))
    result = list(settings.values())
    for env in {s.env for s in result}:
        same_env = [s for s in result if s.env == env]
        keys = sorted({k for s in same_env for k in s.identity})
        differ = [k for k in keys if k != "agent" and len({repr(s.identity.get(k)) for s in same_env}) > 1]
        varying = [k for k in differ if k not in UNLABELLED]

        def labels(names):
            return [" ".join([str(s.identity.get("agent", "?"))] + [f"{k}={show_value(s.identity.get(k))}"
                                                                     for k in names]) for s in same_env]

        named = labels(varying)
        if len(set(named)) < len(named):  # settings that differ only in budget or bookkeeping: named by it too
            named = labels(differ)
        for s, label in zip(same_env, named):
            s.label = label
    return result
