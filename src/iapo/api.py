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
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import act
from iapo.config import AgentConfig, TrainConfig
from iapo.configfile import read_config_file
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
            with np.errstate(over="ignore"):
                obs = np.asarray(obs, np.float32)  # (what the agent computes with: 1e300 is inf here)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.env_id} observations are numbers: {exc}") from None
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ConfigError(f"{self.env_id} observations have shape ({self.obs_dim},) (or a batch (B, "
                              f"{self.obs_dim})), got {obs.shape}")
        if not np.all(np.isfinite(obs)):
            raise ConfigError(f"the observation holds non-finite values in float32 (NaN, inf, or beyond "
                              f"3.4e38): {obs[~np.isfinite(obs)][:3].tolist()}; the policy would act on NaN")
        if iterations is not None and iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {iterations}")
        batch = obs[None] if obs.ndim == 1 else obs
        actions, self._key = act(self.agent, self.state, jnp.asarray(batch), self._key, deterministic=deterministic,
                                 iterations=iterations or self.config.algo.acting_iterations)
        actions = self.low + (np.asarray(actions) + 1.0) * 0.5 * (self.high - self.low)
        return actions[0] if obs.ndim == 1 else actions

    __call__ = act

    def __repr__(self) -> str:
        return f"Policy({self.env_id}, {self.config.algo.agent}, step {self.step}, from {self.run_dir})"


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


def make_config(config: TrainConfig | None = None, **fields) -> TrainConfig:
    """`config` (default: every field at its default) with `fields` replaced: any field of
    `TrainConfig` or of its `AgentConfig` (`agent`, `iterations`, ...), as on the command line;
    `env_kwargs` may be a dict of the environment's options."""
    config = config or TrainConfig()
    if isinstance(fields.get("env_kwargs"), Mapping):
        odd = [k for k in fields["env_kwargs"] if not (isinstance(k, str) and k.isidentifier())]
        if odd:
            raise ConfigError(f"env_kwargs: {odd[0]!r} is not an option name")
        try:
            fields["env_kwargs"] = tuple(f"{k}={json.dumps(v)}" for k, v in fields["env_kwargs"].items())
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"env_kwargs: a value is not JSON: {exc}") from None
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"algo"}
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(fields) - train_fields - agent_fields)
    if unknown:
        raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
    algo = dataclasses.replace(config.algo, **{k: v for k, v in fields.items() if k in agent_fields})
    return dataclasses.replace(config, algo=algo, **{k: v for k, v in fields.items() if k in train_fields})


def train(config: TrainConfig | str | Path | None = None, *, callback: Callable[[list[dict]], object] | None = None,
          **fields) -> TrainResult:
    """Train as `config` (a TrainConfig, or a YAML or JSON file as `iapo train --config` reads)
    says, with `fields` replaced (see `make_config`; `resume="RUN_DIR"` continues that run);
    returns the run directory and its metrics. `callback(rows)` is called after every evaluation
    with that evaluation's rows (one per seed, as metrics.csv gets them). No progress bar unless
    `progress=True`."""
    if isinstance(config, (str, Path)):
        config = read_config_file(config)
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
