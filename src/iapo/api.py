"""iapo from Python: load a trained policy and act with it, or train one.

    import iapo

    result = iapo.train(env="Pendulum-v1", agent="iterative", total_steps=5_000, run_dir="runs/pendulum")
    print(result.metrics[-1]["eval_return_mean"])

    policy = iapo.load("runs/pendulum")
    action = policy.act(observation)          # in the environment's own action bounds

`import iapo` loads none of this until one of its names is used (`iapo.__getattr__`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import act
from iapo.config import AgentConfig, TrainConfig
from iapo.configfile import read_config_file, train_config_from_dict
from iapo.envs import flatten_observation, make_run_env, structured_observation_space
from iapo.errors import ConfigError
from iapo.logger import read_metrics
from iapo.saved import load_agent
from iapo.rundir import METRICS, run_dirs
from iapo.trainer import make_trainer


class Policy:
    """A trained agent acting: `act(obs)` for one observation (obs_dim,) or a batch (B, obs_dim)
    gives actions in the environment's own Box bounds. The policy keeps its own random key (the
    stochastic policy's samples and the iterative optimizer's estimates of J draw on it)."""

    def __init__(self, run_dir: str | Path, step: int | None = None, seed: int = 0):
        if not isinstance(run_dir, (str, Path)) or not str(run_dir).strip():
            raise ConfigError(f"run_dir must name a run's folder, got {run_dir!r}")
        _check_int("step", step, none=True)
        _check_int("seed", seed)
        self.run_dir = Path(run_dir)
        self.config, self.agent, self.state, self.step = load_agent(self.run_dir, step)
        env = make_run_env(self.config)
        space = env.env.action_space  # the environment's own bounds (make_env rescales them to (-1, 1))
        self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.observation_space = structured_observation_space(env)  # a Dict or Tuple one, else None
        env.close()
        self._key = jax.random.PRNGKey(seed)

    @property
    def env_id(self) -> str:
        return self.config.env

    @property
    def obs_dim(self) -> int:
        return self.agent.obs_dim

    @property
    def act_dim(self) -> int:
        return self.agent.act_dim

    def act(self, obs, deterministic: bool = True, iterations: int | None = None) -> np.ndarray:
        """Actions for `obs`: the mode tanh(mu) (`deterministic`, as in evaluation) or a sample of
        the policy, rescaled to the environment's bounds; the iterative optimizer runs
        `iterations` (unset: the run's own number when acting). An environment with Dict (or
        Tuple) observations takes its own observation, or a list of them, as well as the flat
        vector in `iapo.envs.observation_layout`'s order."""
        structured = (Mapping, tuple) if isinstance(self.observation_space, gym.spaces.Tuple) else Mapping
        if isinstance(obs, structured) or (isinstance(obs, list) and obs and isinstance(obs[0], structured)):
            if self.observation_space is None:
                raise ConfigError(f"{self.env_id} observations are flat vectors of {self.obs_dim}, not a "
                                  f"{type(obs).__name__}")
            many = isinstance(obs, list)
            flat = [flatten_observation(self.observation_space, o) for o in (obs if many else [obs])]
            obs = np.stack(flat) if many else flat[0]
        try:
            kind = np.asarray(obs).dtype.kind
            if kind not in "biuf":  # (text, complex numbers, objects: no silent conversion)
                raise ValueError(f"got values of dtype {np.asarray(obs).dtype}")
            with np.errstate(over="ignore"):
                obs = np.asarray(obs, np.float32)  # (what the agent computes with: 1e300 is inf here)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.env_id} observations are real numbers: {exc}") from None
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ConfigError(f"{self.env_id} observations have shape ({self.obs_dim},) (or a batch (B, "
                              f"{self.obs_dim})), got {obs.shape}")
        if not np.all(np.isfinite(obs)):
            raise ConfigError(f"the observation holds non-finite values in float32 (NaN, inf, or beyond "
                              f"3.4e38): {obs[~np.isfinite(obs)][:3].tolist()}; the policy would act on NaN")
        _check_int("iterations", iterations, none=True)
        if iterations is not None and iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {iterations}")
        if not isinstance(deterministic, (bool, np.bool_)):
            raise ConfigError(f"deterministic must be True or False, got {deterministic!r}")
        batch = obs[None] if obs.ndim == 1 else obs
        actions, self._key = act(self.agent, self.state, jnp.asarray(batch), self._key, deterministic=deterministic,
                                 iterations=iterations or self.config.algo.acting_iterations)
        actions = self.low + (np.asarray(actions) + 1.0) * 0.5 * (self.high - self.low)
        return actions[0] if obs.ndim == 1 else actions

    __call__ = act

    def __repr__(self) -> str:
        return f"Policy({self.env_id}, {self.config.algo.agent}, step {self.step}, from {self.run_dir})"


def _check_int(name: str, value, none: bool = False) -> None:
    """A ConfigError unless `value` is an integer (not a bool; or None where `none`)."""
    if (value is None and none) or (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))):
        return
    raise ConfigError(f"{name} must be an integer{' or None' if none else ''}, got {value!r}")


def load(run_dir: str | Path, step: int | None = None, seed: int = 0) -> Policy:
    """The agent of the newest checkpoint in `run_dir` (or of the snapshot or checkpoint at
    `step`), ready to act; `seed` seeds its random key."""
    return Policy(run_dir, step, seed)


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    metrics: list[dict]  # the rows of metrics.csv, each with its "seed" (all seeds of a group)

    @property
    def final_return(self) -> float:
        """The last evaluation's return, mean over the seeds."""
        if not self.metrics:
            return float("nan")
        last = max(row["step"] for row in self.metrics)
        return float(np.mean([row["eval_return_mean"] for row in self.metrics if row["step"] == last]))


def _python_words(message: str) -> str:
    """A ConfigError's message in the API's words: a flag `--total-steps` named as its field
    `total_steps`, a switch `--overwrite` as `overwrite=True` (`--no-progress`: `progress=False`)."""
    kinds = {f.name: f.type for cls in (TrainConfig, AgentConfig) for f in dataclasses.fields(cls)}

    def field(match: re.Match) -> str:
        name = match.group(1).replace("-", "_")
        if name.startswith("no_") and kinds.get(name[3:]) in (bool, "bool"):
            return f"{name[3:]}=False"
        if name not in kinds:
            return match.group(0)
        return f"{name}=True" if kinds[name] in (bool, "bool") else name

    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", field, message)


def _in_python_words(fn):
    """`fn`, its ConfigErrors reworded by `_python_words`."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise ConfigError(_python_words(str(exc))) from None

    return wrapped


@_in_python_words
def make_config(config: TrainConfig | str | Path | None = None, **fields) -> TrainConfig:
    """`config` (a TrainConfig, a YAML or JSON file as `iapo train --config` reads, or unset: every
    field at its default) with `fields` replaced: any field of `TrainConfig` or of its
    `AgentConfig` (`agent`, `iterations`, ...), as on the command line; `env_kwargs` may be a dict
    of the environment's options. Each value is checked as a config file's is (its type, its
    choices), so a wrong one is a ConfigError naming the field, not a run that fails later."""
    if isinstance(config, (str, Path)):
        config = read_config_file(config)
    elif config is None:
        config = TrainConfig()
    elif not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig or the path of a YAML or JSON file, not "
                          f"{type(config).__name__}")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"algo"}
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(fields) - train_fields - agent_fields)
    if unknown:
        raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
    data = dataclasses.asdict(config)
    for name, value in fields.items():
        (data["algo"] if name in agent_fields else data)[name] = str(value) if isinstance(value, Path) else value
    return train_config_from_dict(data, legacy=False)


@_in_python_words
def train(config: TrainConfig | str | Path | None = None, *, callback: Callable[[list[dict]], object] | None = None,
          **fields) -> TrainResult:
    """Train as `config` (a TrainConfig, or a YAML or JSON file as `iapo train --config` reads)
    says, with `fields` replaced (see `make_config`; `resume="RUN_DIR"` continues that run);
    returns the run directory and its metrics. `callback(rows)` is called after every evaluation
    with that evaluation's rows (one per seed, as metrics.csv gets them). No progress bar unless
    `progress=True`."""
    if callback is not None and not callable(callback):
        raise ConfigError(f"callback must be a function of the evaluation's rows, got {callback!r}")
    config = make_config(config, **{"progress": False, **fields})
    trainer = make_trainer(config, on_evaluation=callback)
    run_dir = trainer.run()
    config = trainer.config
    dirs = run_dirs(dataclasses.replace(config, run_dir=str(run_dir)))
    seeds = list(config.seeds) if config.seeds is not None else [config.seed]
    metrics = []
    for seed, path in zip(seeds, dirs):
        columns = read_metrics(path / METRICS)
        n = len(next(iter(columns.values()), []))
        metrics += [{"seed": seed, **{k: (int(v[i]) if k in ("step", "episodes", "updates") else float(v[i]))
                                      for k, v in columns.items()}} for i in range(n)]
    return TrainResult(run_dir=run_dir, metrics=metrics)
