"""Evaluation beyond the training horizon: an iterative agent trained with K iterations, evaluated
with 1 .. M iterations (M may exceed K): its return and the objective J at each iterate."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo.analysis.common import OneRunConfig, agent_states, objective_per_iterate
from iapo.envs import make_run_env
from iapo.figures import new_figure, save_figure
from iapo.rollout import evaluate


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(OneRunConfig):
    """Evaluation beyond the training horizon: an iterative agent's return and objective J when it
    acts with 1 .. --max-iterations iterations, more than it was trained with included. Writes
    iterations.csv, iterations.json, iterations.png."""

    out: str = "analysis/iterations"

    max_iterations: int = 10
    """Evaluate with 1 .. this many iterations."""

    episodes: int = 5
    """Evaluation episodes per iteration count."""

    states: int = 100
    """States, visited by the agent, at which J is estimated."""

    seed: int = 12345
    """Seed of the evaluation environments and of the states' rollouts."""

    counts = ("max_iterations", "episodes", "states")


def analyze(cfg: Config) -> Path:
    """`iapo analyze iterations`: out/iterations.csv and .json (one row per iteration count) and
    out/iterations.png; returns the figure's path."""
    cfg.validate()
    run_dir, out, max_iterations, episodes, states, seed = (Path(cfg.run_dir), Path(cfg.out), cfg.max_iterations,
                                                            cfg.episodes, cfg.states, cfg.seed)
    config, agent, state, step = cfg.load_iterative()
    obs = jnp.asarray(agent_states(config, agent, state, states, seed))
    js = np.mean(np.asarray(objective_per_iterate(agent, state, obs, jax.random.PRNGKey(seed), max_iterations)), 1)
    envs = [make_run_env(config) for _ in range(episodes)]
    rows = []
    try:
        for k in range(1, max_iterations + 1):
            returns, _ = evaluate(agent, state, envs, jax.random.PRNGKey(seed), [seed + i for i in range(episodes)],
                                  iterations=k)
            rows.append({"iterations": k, "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
                         "objective": float(js[k]), "improvement": float(js[k] - js[0])})
    finally:
        for env in envs:
            env.close()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "iterations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"run": str(run_dir), "step": step, "env": config.env, "trained_iterations": agent.config.iterations,
               "episodes": episodes, "states": states, "rows": rows}
    (out / "iterations.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(rows, summary, out / "iterations.png")
    return out / "iterations.png"


def _plot(rows: list[dict], summary: dict, path: Path) -> None:
    k = np.array([r["iterations"] for r in rows])
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4))
    mean = np.array([r["return_mean"] for r in rows])
    std = np.array([r["return_std"] for r in rows])
    left.errorbar(k, mean, yerr=std, marker="o", capsize=3)
    left.set_ylabel(f"evaluation return ({summary['episodes']} episodes)")
    right.plot(k, [r["objective"] for r in rows], marker="o")
    right.set_ylabel(rf"$J(\lambda_k)$, mean over {summary['states']} states")
    for ax in (left, right):
        ax.axvline(summary["trained_iterations"], color="grey", ls=":", lw=1, label="iterations trained with")
        ax.set_xlabel("iterations at evaluation")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"{summary['env']}, step {summary['step']}: beyond the training horizon")
    save_figure(fig, path)
