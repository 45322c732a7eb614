"""Rollouts: environments stepped side by side by one policy, one batched act call per step.

`rollout` is the one loop through environments outside training's own step: evaluation (during
training, of several seeds at once, and `iapo evaluate`), video, and the states that the
analyses collect (with their simulator states where a study restores them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent, AgentState, act, act_seeds
from iapo.seeds import SeedAxis

# policy(obs (E, obs_dim) float32, key) -> (actions (E, d), next key, per-env info (E,) or None)
Policy = Callable[[np.ndarray, Any], tuple[np.ndarray, Any, np.ndarray | None]]


class RolloutStopped(Exception):
    """`rollout`'s `stop()` said to stop before the episodes ended (a signal, in training's
    evaluation)."""


@dataclasses.dataclass
class Rollout:
    returns: np.ndarray  # (E,) the sum of each env's rewards
    lengths: np.ndarray  # (E,) steps each env took
    observations: np.ndarray | None = None  # (E, T, obs_dim) the observations acted on, `record` only
    rewards: np.ndarray | None = None  # (E, T), `record` only; 0 after an env's last step
    infos: np.ndarray | None = None  # (E, T) the policy's per-env info, `record` only; 0 after the last step
    captured: list[list] = dataclasses.field(default_factory=list)  # per env: capture(env) at each observation acted on
    final: list = dataclasses.field(default_factory=list)  # per env: capture(env) after its last step


def rollout(
    envs: list[gym.Env],
    policy: Policy,
    key,
    *,
    seeds: list[int | None] | None = None,
    start_obs: np.ndarray | None = None,
    steps: int | None = None,
    continuing: bool = False,
    record: bool = False,
    capture: Callable[[gym.Env], Any] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Rollout:
    """Step every env of `envs` with `policy`, all together.

    Start: each env is reset with its entry of `seeds` (None: unseeded), or, given `start_obs`
    (E, obs_dim), is taken as already in its start state with that observation.
    End: one episode per env (ended by termination or truncation, or after `steps` steps); with
    `continuing`, exactly `steps` steps per env, each episode's end followed by an unseeded reset.
    Envs that have ended stay in the batch with their last observation and are not stepped.
    `record` keeps the observations, rewards and the policy's infos per step; `capture(env)` is
    called at each observation acted on and once more after the env's last step. `stop()`, asked
    before every step, raises RolloutStopped when it says so.
    """
    if continuing and steps is None:
        raise ValueError("a continuing rollout needs `steps`")
    n = len(envs)
    if start_obs is None:
        seeds = [None] * n if seeds is None else seeds
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)])
    else:
        obs = np.array(start_obs)
    obs = obs.astype(np.float32)
    returns = np.zeros(n)
    lengths = np.zeros(n, np.int64)
    active = np.ones(n, bool)
    seen, rewards, infos = [], [], []
    captured: list[list] = [[] for _ in range(n)]
    t = 0
    while active.any() and (steps is None or t < steps):
        if stop is not None and stop():
            raise RolloutStopped
        actions, key, info = policy(obs, key)
        if capture is not None:
            for i in np.flatnonzero(active):
                captured[i].append(capture(envs[i]))
        if record:
            seen.append(obs.copy())
            rewards.append(np.zeros(n))
            infos.append(np.zeros(n) if info is None else np.where(active, np.asarray(info), 0.0))
        for i in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[i])
            returns[i] += reward
            lengths[i] += 1
            if record:
                rewards[-1][i] = reward
            if terminated or truncated:
                if continuing:
                    next_obs, _ = envs[i].reset()
                else:
                    active[i] = False
            obs[i] = next_obs
        t += 1
    out = Rollout(returns=returns, lengths=lengths, captured=captured)
    if record:
        out.observations = np.stack(seen, axis=1) if seen else np.zeros((n, 0, obs.shape[1]), np.float32)
        out.rewards = np.stack(rewards, axis=1) if rewards else np.zeros((n, 0))
        out.infos = np.stack(infos, axis=1) if infos else np.zeros((n, 0))
    if capture is not None:
        out.final = [capture(env) for env in envs]
    return out


def agent_policy(agent: Agent, state: AgentState, *, deterministic: bool = False,
                 iterations: int | None = None) -> Policy:
    """The agent acting at a batch of observations (E, obs_dim): sampled a ~ pi_lambda, or the
    mode tanh(mu) when `deterministic`; `iterations` of its iterative optimizer (unset: its own)."""

    def policy(obs, key):
        actions, key = act(agent, state, jnp.asarray(obs), key, deterministic=deterministic, iterations=iterations)
        return np.asarray(actions), key, None

    return policy


def seeds_policy(agent: Agent, states: AgentState, axis: SeedAxis, *, deterministic: bool = False,
                 iterations: int | None = None) -> Policy:
    """S seeds' agents (`states` and the keys in `axis`'s form) acting at once at the
    observations (S * E, obs_dim) of E envs per seed, seed by seed."""

    def policy(obs, keys):
        obs = axis.native(obs.reshape(axis.seeds, -1, obs.shape[-1]))
        actions, keys = act_seeds(agent, states, jnp.asarray(obs), keys, deterministic=deterministic,
                                  iterations=iterations)
        actions = axis.with_axis(np.asarray(actions))
        return actions.reshape(-1, actions.shape[-1]), keys, None

    return policy


def evaluate(agent: Agent, state: AgentState, envs: list[gym.Env], key: jax.Array,
             seeds: list[int | None] | None = None, iterations: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One episode in each env with the deterministic action tanh(mu), all side by side; envs
    reset with `seeds`. Returns (returns, lengths), one per env."""
    out = rollout(envs, agent_policy(agent, state, deterministic=True, iterations=iterations), key, seeds=seeds)
    return out.returns, out.lengths


def visited_states(env: gym.Env, policy: Policy, key, n: int, seed: int,
                   capture: Callable[[gym.Env], Any] | None = None) -> tuple[np.ndarray, list]:
    """n observations (n, obs_dim) that `policy` visits in `env` from a reset seeded by `seed`,
    across episodes, and `capture(env)` at each (or [] without `capture`)."""
    out = rollout([env], policy, key, seeds=[seed], steps=n, continuing=True, record=True, capture=capture)
    return out.observations[0], out.captured[0]
