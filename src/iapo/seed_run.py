"""One seed's side of training: its environments, replay buffer, NumPy generator, loop counters,
logger and run directory (`SeedRun`), and what of it a checkpoint holds beside the agent state
(`SeedRun.extra`, `SeedRun.restore`). The `Trainer` holds every seed's agent state and one
`SeedRun` per seed."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np

from iapo import checkpoint, rundir
from iapo.config import TrainConfig
from iapo.configfile import run_identity
from iapo.env_state import get_state, set_state, uncaptured
from iapo.envs import dims, make_run_env
from iapo.errors import EnvError, IapoError, NumericError
from iapo.logger import RunLogger
from iapo.replay import ReplayBuffer


@dataclasses.dataclass
class Loop:
    """The training loop's own state: with the agent state, everything a checkpoint holds."""

    step: int = 0
    episodes: int = 0
    episode_return: float = 0.0
    finished_returns: list = dataclasses.field(default_factory=list)  # since the last evaluation
    infos: list = dataclasses.field(default_factory=list)  # update infos since the last evaluation
    window_steps: int = 0  # steps this process took since the last evaluation (for env_steps_per_s)
    eval_seeded: bool = False
    obs: np.ndarray | None = None
    action: np.ndarray | None = None  # (1, d): the next training action, computed with the last update
    wall_seconds: float = 0.0  # training wall time up to this checkpoint, over every process that ran it
    stopped: bool = False  # every seed's evaluation return reached --stop-return: the run is over
    pending_evaluation: bool = False  # saved before the evaluation of this step: a resumed run does it first


class SeedRun:
    """One seed's side of training: its environments, replay buffer, NumPy generator, loop
    counters, logger and run directory. The agent state of all seeds is held by the Trainer."""

    def __init__(self, config: TrainConfig, run_dir: Path, in_group: bool = False):
        self.config = config
        self.resolved: dict[str, str] = {}  # what the run's "auto" settings resolved to (the Trainer's)
        self.run_dir = run_dir
        self.in_group = in_group
        self.env = make_run_env(config)
        self.eval_envs = [make_run_env(config) for _ in range(config.eval_episodes)]
        obs_dim, act_dim = dims(self.env)
        self.rng = np.random.default_rng(config.seed)
        self.buffer = ReplayBuffer(min(config.buffer_capacity, config.total_steps), obs_dim, act_dim)
        self.loop = Loop()
        self.replay_parts: list[dict] = []  # the checkpoint parts that hold the buffer's contents
        self.replay_saved = 0  # transitions added before the last checkpoint
        self.logger: RunLogger | None = None

    def start(self) -> None:
        rundir.write_config(self.run_dir, self.config, self.resolved)
        self.loop.obs, _ = self.env.reset(seed=self.config.seed)
        missing = uncaptured(self.env)
        if missing:  # (the same words for every seed of a group: said once)
            warnings.warn(f"{self.config.env}'s state cannot be captured ({', '.join(missing)} cannot be pickled): a "
                          "resumed run ends the episode in progress and starts a new one (deterministically), so "
                          "it does not equal an uninterrupted run", stacklevel=2)

    def env_step(self, action: np.ndarray) -> None:
        """Step the environment with `action` and store the transition."""
        loop = self.loop
        try:  # (the environment's values are checked where they enter iapo: `envs.CheckedEnv`)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                after_reset, _ = self.env.reset()
        except EnvError as exc:
            raise EnvError(f"{exc}, at training step {loop.step}{self.which}") from None
        self.buffer.add(loop.obs, action, reward, next_obs, terminated, episode_end=terminated or truncated)
        loop.episode_return += float(reward)
        if not math.isfinite(loop.episode_return):  # (each reward was finite; their sum overflowed)
            raise NumericError(f"the training episode's return overflowed at training step {loop.step}{self.which}")
        loop.obs = next_obs
        if terminated or truncated:
            loop.finished_returns.append(loop.episode_return)
            loop.episodes += 1
            loop.episode_return = 0.0
            loop.obs = after_reset

    @property
    def which(self) -> str:
        """' (seed s)' when the seed trains in a group, for messages."""
        return f" (seed {self.config.seed})" if self.in_group else ""

    def extra(self, act_key, infos: list, action: np.ndarray | None) -> dict:
        """Everything of this seed a checkpoint holds beside its agent state; writes the new
        replay part (the transitions added since the last checkpoint)."""
        loop = dataclasses.replace(self.loop, infos=infos, action=action)
        buffer, start = self.buffer, max(self.replay_saved, self.buffer.first)
        self.replay_parts = [r for r in self.replay_parts if r["stop"] > buffer.first]
        if buffer.added > start:
            ref = checkpoint.write_part(self.run_dir, rundir.part_name(start, buffer.added),
                                        buffer.export(start, buffer.added))
            self.replay_parts.append({**ref, "stop": buffer.added})
        self.replay_saved = buffer.added
        return {
            "config": json.loads(json.dumps(dataclasses.asdict(self.config))),
            "loop": dataclasses.asdict(loop),
            "act_key": np.asarray(act_key),
            "rng": self.rng.bit_generator.state,
            "env": get_state(self.env),
            "eval_envs": [get_state(e) for e in self.eval_envs],
            "replay": self.buffer.meta(),
        }

    def restore(self, step: int, extra: dict) -> None:
        if run_identity(extra.get("config", {})) != run_identity(dataclasses.asdict(self.config)):
            raise checkpoint.MismatchError(
                f"the checkpoint of step {step} in {self.run_dir} belongs to another configuration than its config.json"
            )
        self.loop = Loop(**extra["loop"])
        self.rng.bit_generator.state = extra["rng"]
        for env, env_state in zip(self.eval_envs, extra["eval_envs"]):
            env.reset(seed=0)
            set_state(env, env_state)
        try:
            self.buffer.restore(extra["replay"], extra["parts"])
        except ValueError as exc:
            raise checkpoint.CheckpointError(f"the checkpoint of step {step} in {self.run_dir}: {exc}") from None
        self.replay_parts = list(extra["part_refs"])
        self.replay_saved = self.buffer.added
        self.env.reset(seed=self.config.seed)
        if not extra["env"].get("uncaptured"):
            set_state(self.env, extra["env"])
            return
        # The episode in progress cannot be continued: it ends here in the buffer (a truncation,
        # saved again with the next checkpoint) and a new one starts, from a reset seeded by the
        # step, so that every resume from this checkpoint goes on the same way.
        ended = self.buffer.end_episode()
        if ended is not None:
            self.replay_saved = ended
        self.loop.obs, _ = self.env.reset(seed=(self.config.seed * 1_000_003 + step) % 2**32)
        self.loop.episode_return, self.loop.action = 0.0, None
        warnings.warn(f"{self.config.env}'s state cannot be captured ({', '.join(extra['env']['uncaptured'])}): "
                      f"the episode in progress at step {step}{self.which} was ended and a new one started", stacklevel=2)

    def close(self, quiet: bool = False) -> None:
        try:
            if self.logger is not None:
                self.logger.close()
        except IapoError:
            if not quiet:
                raise
        finally:
            self.env.close()
            for e in self.eval_envs:
                e.close()
