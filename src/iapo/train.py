"""The training loop: collect with the current policy, update once per step, evaluate, log."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo import checkpoint
from iapo.agent import Agent, AgentState, act, update
from iapo.config import TrainConfig, to_dict
from iapo.envs import check_env_id, dims, make_env
from iapo.errors import RunDirError
from iapo.logger import RunLogger
from iapo.replay import ReplayBuffer

# Files and folders of a run; `--overwrite` removes these and nothing else.
RUN_FILES = ("config.json", "metrics.csv", "learning_curve.png", "tensorboard", "checkpoints")
EVAL_SEED_OFFSET = 10_000


def prepare_run_dir(config: TrainConfig) -> Path:
    """Check that the run directory can take this run; with --overwrite, clear the old run."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory")
    old_config = run_dir / "config.json"
    if any((run_dir / name).exists() for name in RUN_FILES) and not config.overwrite:
        try:
            same = json.loads(old_config.read_text()) == json.loads(json.dumps(to_dict(config)))
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


def train(config: TrainConfig, console=None) -> Path:
    """Train an agent as `config` says; returns the run directory."""
    config.validate()
    check_env_id(config.env)
    env = make_env(config.env)
    eval_envs = [make_env(config.env) for _ in range(config.eval_episodes)]
    run_dir = prepare_run_dir(config)
    write_config(run_dir, config)

    obs_dim, act_dim = dims(env)
    agent = Agent(config.algo, obs_dim, act_dim)
    root = jax.random.PRNGKey(config.seed)
    state = agent.init(jax.random.fold_in(root, 0))
    act_key = jax.random.fold_in(root, 1)
    eval_key = jax.random.fold_in(root, 2)
    rng = np.random.default_rng(config.seed)
    buffer = ReplayBuffer(min(config.buffer_capacity, config.total_steps), obs_dim, act_dim)
    title = f"{config.env} · {config.algo.agent} · seed {config.seed}"
    logger = RunLogger(run_dir, title)

    obs, _ = env.reset(seed=config.seed)
    episode_return, episodes, finished_returns = 0.0, 0, []
    infos: list[dict] = []
    start = time.perf_counter()
    train_time, window_steps, last_eval = 0.0, 0, "—"
    window_start = time.perf_counter()
    eval_seeds = [config.seed + EVAL_SEED_OFFSET + i for i in range(config.eval_episodes)]

    with _progress(config) as progress:
        task = progress.add_task(title, total=config.total_steps, sps=0.0, ret=last_eval)
        for step in range(1, config.total_steps + 1):
            if step <= config.random_steps:
                action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            else:
                action, act_key = act(agent, state, jnp.asarray(obs[None], jnp.float32), act_key)
                action = np.asarray(action[0])
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, next_obs, terminated)
            episode_return += float(reward)
            obs = next_obs
            if terminated or truncated:
                finished_returns.append(episode_return)
                episodes += 1
                episode_return = 0.0
                obs, _ = env.reset()

            if step > config.random_steps:
                for _ in range(config.updates_per_step):
                    state, info = update(agent, state, buffer.sample(rng, config.algo.batch_size))
                    infos.append(info)
            window_steps += 1

            if step % config.eval_every == 0 or step == config.total_steps:
                jax.block_until_ready(state)
                train_time = time.perf_counter() - window_start
                returns, lengths = evaluate_episodes(
                    agent, state, eval_envs, eval_key, eval_seeds, config.algo.acting_iterations
                )
                eval_seeds = None  # seeded once; later evaluations continue each env's RNG
                stats = _mean_infos(infos)
                row = {
                    "step": step,
                    "episodes": episodes,
                    "eval_return_mean": float(np.mean(returns)),
                    "eval_return_std": float(np.std(returns)),
                    "eval_length_mean": float(np.mean(lengths)),
                    "train_episode_return": float(np.mean(finished_returns)) if finished_returns else math.nan,
                    "updates": int(state.updates),
                    "env_steps_per_s": window_steps / max(train_time, 1e-9),
                    "wall_time_s": time.perf_counter() - start,
                }
                row.update({k: float(v) for k, v in stats.items() if np.ndim(v) == 0})
                if infos:
                    row["alpha"] = float(np.exp(state.log_alpha))
                logger.log(row, stats.get("objective_per_iteration"))
                last_eval = f"{row['eval_return_mean']:.1f}"
                progress.update(task, sps=row["env_steps_per_s"], ret=last_eval)
                infos, finished_returns, window_steps = [], [], 0
                window_start = time.perf_counter()

            if step % config.checkpoint_every == 0 or step == config.total_steps:
                checkpoint.save(run_dir, step, state)
            if step % 100 == 0 or step == config.total_steps:
                progress.update(task, completed=step)

    logger.close()
    env.close()
    for e in eval_envs:
        e.close()
    return run_dir
