"""Do two versions of a Gymnasium MuJoCo task simulate the same thing? Published SAC curves are
often on `-v4`, iapo's on `-v5`; this tells which comparisons are like with like.

    python benchmarks/env_versions.py [--envs Hopper HalfCheetah Walker2d Ant Humanoid] \
        [--old v4 --new v5] [--episodes 5] [--out docs/results/env-versions.md]

For each task, both versions are reset with the same seeds and driven by the same uniformly random
actions until either episode ends (or 1 000 steps). It reports the observation sizes, the largest
difference between the observations they share (the first min(d_old, d_new) entries), the largest
difference between their rewards, and whether they terminate at the same step. Identical
observations with a reward difference only at the terminal step mean the same dynamics with a
different reward on termination.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import warnings
from pathlib import Path

import numpy as np


def compare(task: str, old: str, new: str, episodes: int, max_steps: int = 1000) -> dict:
    import gymnasium as gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env_old, env_new = gym.make(f"{task}-{old}"), gym.make(f"{task}-{new}")
    shared = min(env_old.observation_space.shape[0], env_new.observation_space.shape[0])
    obs_diff = reward_diff = 0.0
    reward_diff_before_end = 0.0
    same_end = True
    steps = []
    for episode in range(episodes):
        rng = np.random.default_rng(episode)
        o_old, _ = env_old.reset(seed=episode)
        o_new, _ = env_new.reset(seed=episode)
        obs_diff = max(obs_diff, float(np.abs(o_old[:shared] - o_new[:shared]).max()))
        for t in range(max_steps):
            action = rng.uniform(-1.0, 1.0, env_old.action_space.shape).astype(np.float32)
            o_old, r_old, term_old, trunc_old, _ = env_old.step(action)
            o_new, r_new, term_new, trunc_new, _ = env_new.step(action)
            obs_diff = max(obs_diff, float(np.abs(o_old[:shared] - o_new[:shared]).max()))
            ended = term_old or term_new or trunc_old or trunc_new
            reward_diff = max(reward_diff, abs(float(r_old) - float(r_new)))
            if not ended:
                reward_diff_before_end = max(reward_diff_before_end, abs(float(r_old) - float(r_new)))
            if ended:
                same_end &= (term_old == term_new) and (trunc_old == trunc_new)
                break
        steps.append(t + 1)
    env_old.close()
    env_new.close()
    return {
        "task": task, "old": old, "new": new,
        "obs_dim_old": env_old.observation_space.shape[0], "obs_dim_new": env_new.observation_space.shape[0],
        "obs_diff": obs_diff, "reward_diff": reward_diff, "reward_diff_before_end": reward_diff_before_end,
        "same_end": same_end, "steps": steps,
    }


def verdict(row: dict) -> str:
    if row["obs_diff"] != 0.0 or not row["same_end"]:
        return "different dynamics"
    parts = ["same dynamics"]
    if row["obs_dim_old"] != row["obs_dim_new"]:
        parts.append("the observation differs in size")
    if row["reward_diff_before_end"] != 0.0:
        parts.append("the reward differs at every step")
    elif row["reward_diff"] != 0.0:
        parts.append("the reward differs on the terminal step only")
    return "; ".join(parts) if len(parts) > 1 else "identical"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper", "HalfCheetah", "Walker2d", "Ant", "Humanoid"])
    parser.add_argument("--old", default="v4")
    parser.add_argument("--new", default="v5")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    import gymnasium

    lines = [
        f"Measured {datetime.date.today()} with Gymnasium {gymnasium.__version__} on {platform.machine()}: "
        f"`python benchmarks/env_versions.py --old {args.old} --new {args.new} --episodes {args.episodes}`",
        "",
        f"| task | observation size {args.old} / {args.new} | largest observation difference | "
        "largest reward difference (before the last step) | same termination | steps per episode | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in args.envs:
        row = compare(task, args.old, args.new, args.episodes)
        lines.append(
            f"| {task} | {row['obs_dim_old']} / {row['obs_dim_new']} | {row['obs_diff']:.3g} | "
            f"{row['reward_diff']:.3g} ({row['reward_diff_before_end']:.3g}) | {'yes' if row['same_end'] else 'no'} | "
            f"{', '.join(map(str, row['steps']))} | {verdict(row)} |"
        )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
