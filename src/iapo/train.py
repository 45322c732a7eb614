"""The training loop: collect with the current policy, update once per step, evaluate, log."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo import checkpoint
from iapo.agent import Agent, AgentState, act, update
from iapo.config import TrainConfig, to_dict
from iapo.env_state import get_state, set_state
from iapo.envs import check_env_id, dims, make_env
from iapo.errors import IapoError, RunDirError
from iapo.logger import RunLogger
from iapo.replay import ReplayBuffer


class NumericError(IapoError):
    """A loss, parameter, action or observation stopped being finite."""

# Files and folders of a run; `--overwrite` removes these and nothing else.
RUN_FILES = ("config.json", "metrics.csv", "learning_curve.png", "tensorboard", "checkpoints")
TIMING_COLUMNS = ("env_steps_per_s", "wall_time_s")  # the only columns that differ on a rerun
EVAL_SEED_OFFSET = 10_000


def prepare_run_dir(config: TrainConfig) -> Path:
    """Check that the run directory can take this run; with --overwrite, clear the old run."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory")
    old_config = run_dir / "config.json"
    if any((run_dir / name).exists() for name in RUN_FILES) and not config.overwrite:
        try:
            same = _identity(json.loads(old_config.read_text())) == _identity(json.loads(json.dumps(to_dict(config))))
        except (OSError, ValueError):
            same = False
        what = "a run with this configuration" if same else "a different run"
        raise RunDirError(
            f"--run-dir {run_dir} already holds {what}; pass --overwrite to replace it, "
            "or choose another --run-dir"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".iapo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"--run-dir {run_dir} is not writable: {exc.strerror or exc}") from None
    if config.overwrite:
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return run_dir


def write_config(run_dir: Path, config: TrainConfig) -> None:
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(to_dict(config), indent=2) + "\n")
    os.replace(tmp, run_dir / "config.json")


def evaluate_episodes(
    agent: Agent,
    state: AgentState,
    envs: list[gym.Env],
    key: jax.Array,
    seeds: list[int | None] | None = None,
    iterations: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each env side by side with the deterministic action tanh(mu).

    One act call serves all envs at each step; finished envs keep stepping in the batch with
    their last observation and are ignored. Returns (returns, lengths), one per env.
    """
    n = len(envs)
    seeds = seeds or [None] * n
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    returns = np.zeros(n)
    lengths = np.zeros(n, np.int64)
    active = np.ones(n, bool)
    while active.any():
        actions, key = act(agent, state, jnp.asarray(obs), key, deterministic=True, iterations=iterations)
        actions = np.asarray(actions)
        for i in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[i])
            returns[i] += reward
            lengths[i] += 1
            obs[i] = next_obs
            if terminated or truncated:
                active[i] = False
    return returns, lengths


def _mean_infos(infos: list[dict]) -> dict:
    if not infos:
        return {}
    host = jax.device_get(infos)
    return {k: np.mean(np.stack([i[k] for i in host]), axis=0) for k in host[0]}


def _progress(config: TrainConfig):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[sps]:>6.0f} steps/s"),
        TextColumn("eval {task.fields[ret]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not config.progress,
    )


@dataclasses.dataclass
class Loop:
    """The training loop's own state: with the agent state, everything a checkpoint holds."""

    step: int = 0
    episodes: int = 0
    episode_return: float = 0.0
    finished_returns: list = dataclasses.field(default_factory=list)  # since the last evaluation
    infos: list = dataclasses.field(default_factory=list)  # update infos since the last evaluation
    window_steps: int = 0
    eval_seeded: bool = False
    obs: np.ndarray | None = None


class Trainer:
    """Owns the environments, the replay buffer and the RNGs; `run()` trains to the end."""

    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
        check_env_id(config.env)
        self.config = config
        self.env = make_env(config.env)
        self.eval_envs = [make_env(config.env) for _ in range(config.eval_episodes)]
        if resume:
            self.run_dir = Path(config.run_dir)
        else:
            self.run_dir = prepare_run_dir(config)
        obs_dim, self.act_dim = dims(self.env)
        self.agent = Agent(config.algo, obs_dim, self.act_dim)
        root = jax.random.PRNGKey(config.seed)
        self.state = self.agent.init(jax.random.fold_in(root, 0))
        self.act_key = jax.random.fold_in(root, 1)
        self.eval_key = jax.random.fold_in(root, 2)
        self.rng = np.random.default_rng(config.seed)
        self.buffer = ReplayBuffer(min(config.buffer_capacity, config.total_steps), obs_dim, self.act_dim)
        self.loop = Loop()
        self.replay_parts: list[dict] = []  # the checkpoint parts that hold the buffer's contents
        self.replay_saved = 0  # transitions added before the last checkpoint
        if resume:
            self._restore()
        else:
            write_config(self.run_dir, config)
            self.loop.obs, _ = self.env.reset(seed=config.seed)
        self.title = f"{config.env} · {config.algo.agent} · seed {config.seed}"
        self.logger = RunLogger(self.run_dir, self.title, resume_after=self.loop.step if resume else None)
        self.stop_signal: int | None = None

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> Path:
        loop = dataclasses.replace(self.loop, infos=jax.device_get(self.loop.infos))
        extra = {
            "config": json.loads(json.dumps(to_dict(self.config))),
            "loop": dataclasses.asdict(loop),
            "act_key": np.asarray(self.act_key),
            "rng": self.rng.bit_generator.state,
            "env": get_state(self.env),
            "eval_envs": [get_state(e) for e in self.eval_envs],
            "replay": self.buffer.meta(),
        }
        # The replay buffer goes into parts: one new part with the transitions added since the
        # last checkpoint, and references to the earlier parts whose transitions are still in it.
        buffer, start = self.buffer, max(self.replay_saved, self.buffer.first)
        self.replay_parts = [r for r in self.replay_parts if r["stop"] > buffer.first]
        if buffer.added > start:
            ref = checkpoint.write_part(self.run_dir, f"replay_{start:012d}_{buffer.added:012d}",
                                        buffer.export(start, buffer.added))
            self.replay_parts.append({**ref, "stop": buffer.added})
        self.replay_saved = buffer.added
        return checkpoint.save(self.run_dir, self.loop.step, self.state, extra, self.replay_parts)

    def _restore(self) -> None:
        step, state, extra = checkpoint.load_latest(self.run_dir, self.state, with_parts=True)
        if _identity(extra.get("config", {})) != _identity(json.loads(json.dumps(to_dict(self.config)))):
            raise checkpoint.CheckpointError(
                f"the checkpoint of step {step} in {self.run_dir} belongs to another configuration than its config.json"
            )
        self.state = state
        self.loop = Loop(**extra["loop"])
        self.act_key = jnp.asarray(extra["act_key"])
        self.rng.bit_generator.state = extra["rng"]
        self.env.reset(seed=self.config.seed)
        set_state(self.env, extra["env"])
        for env, env_state in zip(self.eval_envs, extra["eval_envs"]):
            env.reset(seed=0)
            set_state(env, env_state)
        try:
            self.buffer.restore(extra["replay"], extra["parts"])
        except ValueError as exc:
            raise checkpoint.CheckpointError(f"the checkpoint of step {step} in {self.run_dir}: {exc}") from None
        self.replay_parts = list(extra["part_refs"])
        self.replay_saved = self.buffer.added

    # -- one step ----------------------------------------------------------------------------
    def step(self) -> None:
        cfg, loop = self.config, self.loop
        loop.step += 1
        if loop.step <= cfg.random_steps:
            action = self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        else:
            action, self.act_key = act(self.agent, self.state, jnp.asarray(loop.obs[None], jnp.float32), self.act_key)
            action = np.asarray(action[0])
            if not np.all(np.isfinite(action)):
                raise NumericError(f"non-finite action at step {loop.step}")
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        if not np.all(np.isfinite(next_obs)) or not np.isfinite(reward):
            what = "observation" if not np.all(np.isfinite(next_obs)) else "reward"
            raise NumericError(f"the environment returned a non-finite {what} at step {loop.step}")
        self.buffer.add(loop.obs, action, reward, next_obs, terminated, episode_end=terminated or truncated)
        loop.episode_return += float(reward)
        loop.obs = next_obs
        if terminated or truncated:
            loop.finished_returns.append(loop.episode_return)
            loop.episodes += 1
            loop.episode_return = 0.0
            loop.obs, _ = self.env.reset()
        if loop.step > cfg.random_steps:
            for _ in range(cfg.updates_per_step):
                self.state, info = update(self.agent, self.state, self.buffer.sample(self.rng, cfg.algo.batch_size))
                if not bool(info["finite"]):
                    raise NumericError(f"non-finite {_first_nonfinite(info)} at step {loop.step}")
                loop.infos.append(info)
        loop.window_steps += 1

    def evaluate_and_log(self, train_seconds: float, wall_seconds: float) -> dict:
        cfg, loop = self.config, self.loop
        seeds = None if loop.eval_seeded else [cfg.seed + EVAL_SEED_OFFSET + i for i in range(cfg.eval_episodes)]
        loop.eval_seeded = True  # seeded once; later evaluations continue each env's RNG
        returns, lengths = evaluate_episodes(
            self.agent, self.state, self.eval_envs, self.eval_key, seeds, cfg.algo.acting_iterations
        )
        stats = _mean_infos(loop.infos)
        row = {
            "step": loop.step,
            "episodes": loop.episodes,
            "eval_return_mean": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_length_mean": float(np.mean(lengths)),
            "train_episode_return": float(np.mean(loop.finished_returns)) if loop.finished_returns else math.nan,
            "updates": int(self.state.updates),
            "env_steps_per_s": loop.window_steps / max(train_seconds, 1e-9),
            "wall_time_s": wall_seconds,
        }
        row.update({k: float(v) for k, v in stats.items() if np.ndim(v) == 0 and k != "finite"})
        if loop.infos:
            row["alpha"] = float(np.exp(self.state.log_alpha))
        self.logger.log(row, stats.get("objective_per_iteration"))
        loop.infos, loop.finished_returns, loop.window_steps = [], [], 0
        return row

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.config
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        start = window_start = time.perf_counter()
        try:
            with _progress(cfg) as progress:
                task = progress.add_task(self.title, total=cfg.total_steps, completed=self.loop.step, sps=0.0, ret="—")
                while self.loop.step < cfg.total_steps:
                    self.step()
                    step = self.loop.step
                    if step % cfg.eval_every == 0 or step == cfg.total_steps:
                        jax.block_until_ready(self.state)
                        now = time.perf_counter()
                        row = self.evaluate_and_log(now - window_start, now - start)
                        progress.update(task, sps=row["env_steps_per_s"], ret=f"{row['eval_return_mean']:.1f}")
                        window_start = time.perf_counter()
                    saved = step % cfg.checkpoint_every == 0 or step == cfg.total_steps
                    if saved:
                        self.save()
                    if step % 100 == 0 or step == cfg.total_steps:
                        progress.update(task, completed=step)
                    if self.stop_signal is not None:
                        if not saved:
                            self.save()
                        name = signal.Signals(self.stop_signal).name
                        print(f"{name} at step {step}: checkpoint written; resume with: iapo train --resume {self.run_dir}")
                        break
        except BaseException:
            self.close(quiet=True)  # a failure while closing must not hide the one that stopped the run
            raise
        else:
            self.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.run_dir

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum

    def close(self, quiet: bool = False) -> None:
        try:
            self.logger.close()
        except IapoError:
            if not quiet:
                raise
        finally:
            self.env.close()
            for e in self.eval_envs:
                e.close()


def _identity(config: dict) -> dict:
    """The fields that define a run (not where it lives or how it is shown)."""
    return {k: v for k, v in config.items() if k not in ("run_dir", "progress", "overwrite", "resume")}


def _first_nonfinite(info: dict) -> str:
    for name in ("critic_loss", "policy_loss", "alpha", "q_mean", "kl"):
        if not np.isfinite(float(info[name])):
            return name.replace("_", " ")
    return "network parameter"


def train(config: TrainConfig) -> Path:
    """Train an agent as `config` says; returns the run directory."""
    return Trainer(config).run()


def resume(run_dir: Path, progress: bool = True) -> Path:
    """Continue the run in `run_dir` from its newest usable checkpoint."""
    from iapo.cli import load_run_config

    config = dataclasses.replace(load_run_config(Path(run_dir)), run_dir=str(run_dir), progress=progress)
    return Trainer(config, resume=True).run()
