"""How hard an untrained direct policy acts under each `--weight-init`: what a run's first evaluation sees.

    python benchmarks/initial_actions.py --env HalfCheetah-v5 --seeds 0 1 2 3 4

Draws the agent's parameters as `iapo train` does (`Agent.init` with each seed's key, folded with 0),
runs one episode of the evaluation policy tanh(mu) from a seeded reset (seed 10 000 + the run's
seed, as a run's first evaluation episode), and prints per scheme, mean over the seeds: the mean
|a| over the episode's actions, the control cost it paid (`--ctrl-cost-weight`, HalfCheetah's 0.1:
weight * sum_i a_i^2 per step, summed over the episode) and its return. A run's first evaluation,
at the end of the random steps and before any update, evaluates these parameters.
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import jax
import numpy as np

from iapo.agent import Agent, act
from iapo.config import AgentConfig


def episode(agent: Agent, params, env: gym.Env, seed: int, ctrl_cost_weight: float) -> tuple[float, float, float]:
    """(mean |a|, control cost, return) of one deterministic episode."""
    obs, _ = env.reset(seed=10_000 + seed)
    key, sizes, cost, ret, done = jax.random.PRNGKey(0), [], 0.0, 0.0, False
    while not done:
        action, key = act(agent, params, np.asarray(obs, np.float32)[None], key, deterministic=True)
        action = np.asarray(action)[0]  # (act_dim,)
        obs, reward, terminated, truncated, _ = env.step(action)
        sizes.append(np.abs(action).mean())
        cost += ctrl_cost_weight * float((action ** 2).sum())
        ret += float(reward)
        done = terminated or truncated
    return float(np.mean(sizes)), cost, ret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ctrl-cost-weight", type=float, default=0.1)
    parser.add_argument("--schemes", nargs="+", default=["lecun", "torch", "reference"])
    args = parser.parse_args()

    env = gym.make(args.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    print(f"{args.env}: one deterministic episode per seed, seeds {args.seeds}")
    for scheme in args.schemes:
        agent = Agent(AgentConfig(agent="direct", action_samples=1, weight_init=scheme), obs_dim, act_dim)
        rows = [episode(agent, agent.init(jax.random.fold_in(jax.random.PRNGKey(seed), 0)), env, seed,
                        args.ctrl_cost_weight) for seed in args.seeds]  # parameters as the Trainer draws them
        size, cost, ret = np.mean(rows, axis=0)
        print(f"  {scheme:9s} mean |a| {size:.3f}   control cost {cost:.0f}   return {ret:.0f}")


if __name__ == "__main__":
    main()
