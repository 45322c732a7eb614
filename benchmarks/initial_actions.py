"""How large the deterministic actions of an untrained direct policy are under each `--weight-init`.

    python benchmarks/initial_actions.py --env HalfCheetah-v5 --seeds 0 1 2 3 4

Draws the agent's parameters as `iapo train` does (`Agent.init` with each seed's key, folded with 0), collects the
states of one uniformly random episode, and prints per scheme the mean |a| of the evaluation policy
tanh(mu) over those states and the control cost it would pay per episode at `--ctrl-cost-weight`
(HalfCheetah's 0.1: cost = weight * sum_i a_i^2 per step), mean over the seeds. This is what the
first evaluation of a run (after the random steps, before any update) measures.
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import jax
import numpy as np

from iapo.agent import Agent, act
from iapo.config import AgentConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ctrl-cost-weight", type=float, default=0.1)
    parser.add_argument("--schemes", nargs="+", default=["lecun", "torch", "reference"])
    args = parser.parse_args()

    env = gym.make(args.env)
    obs, _ = env.reset(seed=0)
    states, done = [obs], False
    while not done:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        states.append(obs)
        done = terminated or truncated
    states = np.asarray(states, dtype=np.float32)  # (T, obs_dim)
    act_dim = env.action_space.shape[0]
    print(f"{args.env}: {len(states)} states of a random episode, seeds {args.seeds}")
    for scheme in args.schemes:
        agent = Agent(AgentConfig(agent="direct", action_samples=1, weight_init=scheme), states.shape[1], act_dim)
        size, cost = [], []
        for seed in args.seeds:
            params = agent.init(jax.random.fold_in(jax.random.PRNGKey(seed), 0))  # as the Trainer draws them
            action, _ = act(agent, params, states, jax.random.PRNGKey(0), deterministic=True)
            action = np.asarray(action)  # (T, act_dim)
            size.append(np.abs(action).mean())
            cost.append(args.ctrl_cost_weight * (action ** 2).sum(axis=1).mean() * len(states))
        print(f"  {scheme:9s} mean |a| {np.mean(size):.3f}   control cost per episode {np.mean(cost):.0f}")


if __name__ == "__main__":
    main()
