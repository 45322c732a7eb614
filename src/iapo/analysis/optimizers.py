"""Optimizer efficiency (Fig. 4c): the improvement of J over iterations for iterative amortization,
Adam on lambda and CEM, from the same initial lambda at the same states, and their wall-clock
cost per iteration."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo.analysis.common import OneRunConfig, agent_states, objective_per_iterate
from iapo.config import ADAM_LR, CEM_ELITES, CEM_SAMPLES, CEM_SMOOTHING, COMPARISON_STEPS, positive_finite
from iapo.errors import ConfigError
from iapo.optimizers.nonamortized import cem, gradient_ascent
from iapo.figures import new_figure, save_figure


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(OneRunConfig):
    """Optimizer efficiency (Fig. 4c): improvement of J against iterations for the run's iterative
    optimizer, Adam on lambda and CEM, from the same lambda_0 at the same states, with their
    wall-clock cost per iteration. Writes optimizers.csv, optimizers.json, optimizers.png."""

    out: str = "analysis/optimizers"

    states: int = 100
    """States, visited by the agent."""

    iterations: int = COMPARISON_STEPS
    """Iterations of each optimizer."""

    adam_lr: float = ADAM_LR
    """Adam's step size (reference 1e-2)."""

    cem_samples: int = CEM_SAMPLES
    """CEM's samples per iteration (reference 100)."""

    cem_elites: int = CEM_ELITES
    """CEM's elites refitted to (reference 10)."""

    cem_smoothing: float = CEM_SMOOTHING
    """CEM's step toward the refit (reference 0.01)."""

    seed: int = 0
    """Seed of the states' rollouts and of the samples."""

    counts = ("states", "iterations", "cem_samples", "cem_elites")

    def check(self) -> None:
        if self.cem_elites > self.cem_samples:
            raise ConfigError(f"--cem-elites ({self.cem_elites}) must not exceed --cem-samples ({self.cem_samples})")
        positive_finite("adam-lr", self.adam_lr)
        if not 0 < self.cem_smoothing <= 1:
            raise ConfigError(f"--cem-smoothing must be in (0, 1], got {self.cem_smoothing}")


@functools.partial(jax.jit, static_argnames=("agent", "iterations", "lr"))
def _adam(agent, state, obs, key, iterations: int, lr: float):
    objective = agent.objective(state, obs)
    lam0 = agent.optimizer.initial_lam(obs.shape[0])
    return gradient_ascent(objective, lam0, key, iterations, lr, agent.optimizer.log_scale_bounds)[1]


@functools.partial(jax.jit, static_argnames=("agent", "iterations", "samples", "elites", "smoothing"))
def _cem(agent, state, obs, key, iterations: int, samples: int, elites: int, smoothing: float):
    objective = agent.objective(state, obs)
    lam0 = agent.optimizer.initial_lam(obs.shape[0])
    return cem(objective.integrand, objective, lam0, key, iterations, samples, elites, smoothing,
               log_scale_bounds=agent.optimizer.log_scale_bounds)[1]


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    """(result, seconds of a second call: the first compiles)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return np.asarray(out), time.perf_counter() - start


def _to_match(improvement: np.ndarray, target: float) -> int | None:
    """The first iteration whose mean improvement reaches `target`, or None."""
    hits = np.flatnonzero(improvement >= target)
    return int(hits[0]) if len(hits) else None


def analyze(cfg: Config) -> Path:
    """`iapo analyze optimizers`: out/optimizers.csv (mean improvement of J per iteration),
    out/optimizers.json (summary) and out/optimizers.png; returns the figure's path."""
    cfg.validate()
    run_dir, out, states, iterations, seed = Path(cfg.run_dir), Path(cfg.out), cfg.states, cfg.iterations, cfg.seed
    adam_lr, cem_samples, cem_elites, cem_smoothing = cfg.adam_lr, cfg.cem_samples, cfg.cem_elites, cfg.cem_smoothing
    config, agent, state, step = cfg.load_iterative()
    obs = jnp.asarray(agent_states(config, agent, state, states, seed))
    key = jax.random.PRNGKey(seed)
    curves, seconds = {}, {}
    curves["iterative"], seconds["iterative"] = _timed(objective_per_iterate, agent, state, obs, key, iterations)
    curves["adam"], seconds["adam"] = _timed(_adam, agent, state, obs, key, iterations, adam_lr)
    curves["cem"], seconds["cem"] = _timed(_cem, agent, state, obs, key, iterations, cem_samples, cem_elites,
                                           cem_smoothing)
    improvement = {name: np.mean(js - js[0], axis=1) for name, js in curves.items()}  # (iterations + 1,)
    trained = agent.config.iterations
    target = float(improvement["iterative"][min(trained, iterations)])
    summary = {
        "run": str(run_dir), "step": step, "env": config.env, "states": states, "iterations": iterations,
        "trained_iterations": trained, "iterative_improvement_at_trained": target,
        "adam_iterations_to_match": _to_match(improvement["adam"], target),
        "cem_iterations_to_match": _to_match(improvement["cem"], target),
        "final_improvement": {name: float(v[-1]) for name, v in improvement.items()},
        "ms_per_iteration": {name: 1e3 * s / iterations for name, s in seconds.items()},
        "settings": {"adam_lr": adam_lr, "cem_samples": cem_samples, "cem_elites": cem_elites,
                     "cem_smoothing": cem_smoothing, "action_samples": agent.config.action_samples},
    }
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "optimizers.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["iteration", *improvement])
        for k in range(iterations + 1):
            writer.writerow([k, *(f"{v[k]:.6g}" for v in improvement.values())])
    (out / "optimizers.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(improvement, summary, out / "optimizers.png")
    return out / "optimizers.png"


def _plot(improvement: dict, summary: dict, path: Path) -> None:
    fig, ax = new_figure(figsize=(6, 4))
    labels = {"iterative": "iterative amortization", "adam": f"Adam (lr {summary['settings']['adam_lr']:g})",
              "cem": f"CEM ({summary['settings']['cem_samples']} samples)"}
    for name, curve in improvement.items():
        ms = summary["ms_per_iteration"][name]
        ax.plot(np.arange(1, len(curve)), curve[1:], label=f"{labels[name]}, {ms:.2f} ms/iteration")
    ax.axvline(summary["trained_iterations"], color="grey", ls=":", lw=1, label="iterations trained with")
    ax.set_xscale("log")
    ax.set_xlabel("iterations")
    ax.set_ylabel(r"improvement of $J$ over $\lambda_0$")
    ax.set_title(f"{summary['env']}, step {summary['step']}: optimizer efficiency")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path)
