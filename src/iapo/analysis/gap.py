"""The amortization gap (Fig. 6): how far the agent's lambda is from the optimum of J at a state.

From the agent's lambda, gradient ascent on J(lambda; s) with the agent's 10 samples runs until
the estimated objective stops improving; the gap at each state is J(lambda*) - J(lambda_agent),
both estimated with the same (many) samples, so that their noise cancels in the difference.

The reference ascent is plain SGD at lr 1e-4, stopped at the first step whose estimate does not
improve. It stops far from the optimum where J's gradient is small or noisy: on Humanoid-v5 (the
direct agent at 50 000 steps) it stops after 945 steps with a gap of 0.06, where ascents that
converge find 2.97; on Ant-v5 it reaches 5 000 steps with J still rising (1.75 against 2.80).
So the default here is Adam at lr 1e-2 with a patience of 500 steps, which converges to the
values that Adam at 1e-3 reaches three times more slowly (docs/analyses.md); `--optimizer sgd
--lr 1e-4` gives the reference's ascent. A gap whose ascent reached --max-steps is a lower
bound: gap.csv says so per snapshot (`ascent_converged`), and the command warns.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import warnings
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from iapo.analysis.common import AnalysisConfig, agent_states, objective_per_iterate
from iapo.config import positive_finite
from iapo.errors import ConfigError, IapoError
from iapo.kinds import kind
from iapo.objective import Objective
from iapo.optimizers.nonamortized import (OPTIMUM_LR, OPTIMUM_MAX_STEPS, OPTIMUM_OPTIMIZER, OPTIMUM_PATIENCE,
                                          ascend_to_optimum)
from iapo.figures import colors, new_figure, save_figure, seed_std, steps_axis
from iapo.rundir import seed_of
from iapo.saved import load_agent, load_run_config, load_state, settings_of, snapshots


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(AnalysisConfig):
    """Amortization gap over training (Fig. 6): at every snapshot of each run, for states the
    agent visits, gradient ascent on J from the agent's lambda until J stops improving; the
    gap J(lambda*) - J(lambda_agent), mean +- std over states. Writes gap.csv, gap.json, gap.png
    (and with --mean-over-seeds gap_over_seeds.csv)."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run directories written by `iapo train` (direct and iterative runs plot together)."""

    out: str = "analysis/gap"

    states: int = 100
    """States per snapshot, visited by that snapshot's agent."""

    extra_iterations: int = 0
    """For iterative runs, also the gap after this many more iterations than trained with."""

    lr: float = OPTIMUM_LR
    """Step size of the ascent (the reference: SGD at 1e-4, which stops short of the optimum; see
    the module's docstring)."""

    optimizer: Literal["sgd", "adam"] = OPTIMUM_OPTIMIZER
    """The ascent's optimizer (the reference: sgd)."""

    max_steps: int = OPTIMUM_MAX_STEPS
    """Most ascent steps; a gap whose ascent reached them is a lower bound (and the command warns)."""

    patience: int = OPTIMUM_PATIENCE
    """Stop the ascent once the mean estimated J has not improved for this many steps."""

    samples: int = 100
    """Action samples of the estimates of J(lambda*) and J(lambda_agent)."""

    mean_over_seeds: bool = False
    """Draw one curve per setting instead of one per run: runs that differ only in the seed (grouped
    as `iapo plot` groups them), the mean over seeds of each seed's mean gap at the snapshots all
    of them have, shaded +- its sample std over seeds (Fig. 6, 8). Also writes those numbers to
    gap_over_seeds.csv."""

    counts = ("states", "max_steps", "patience", "samples")

    def run_dirs_to_check(self) -> tuple[str, ...]:
        return self.run_dirs

    def check(self) -> None:
        if self.extra_iterations < 0:
            raise ConfigError(f"--extra-iterations must be >= 0, got {self.extra_iterations}")
        positive_finite("lr", self.lr)


def amortization_gap(
    objective: Objective, lam_agent: jax.Array, key: jax.Array, eval_objective: Objective | None = None, **ascent
) -> dict:
    """Per-state gap J(lambda*) - J(lambda_agent), (B,), with lambda* from
    `ascend_to_optimum` (keyword arguments `ascent`). Both are estimated by
    `eval_objective` (default: `objective`; pass one with more samples) with the same key."""
    k_ascent, k_eval = jax.random.split(key)
    lam_star, steps = ascend_to_optimum(objective, lam_agent, k_ascent, **ascent)
    evaluate = eval_objective or objective
    j_agent, _ = evaluate(lam_agent, k_eval)
    j_star, _ = evaluate(lam_star, k_eval)  # common random numbers
    return {"gap": j_star - j_agent, "j_agent": j_agent, "j_star": j_star, "lam_star": lam_star, "steps": steps}


# -- over a run's snapshots -----------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("agent", "iterations", "samples", "ascent"))
def _gap_at(agent, state, obs, key, iterations: int | None, samples: int, ascent: tuple):
    k_agent, k_gap = jax.random.split(key)
    objective = agent.objective(state, obs)
    lam, _ = agent.optimizer.optimize(state.policy_params, obs, objective, k_agent, iterations)
    precise = agent.objective(state, obs, n_samples=samples)
    return amortization_gap(objective, lam, k_gap, eval_objective=precise, **dict(ascent))


def gap_over_training(run_dir: Path, states: int = 100, extra_iterations: int = 0, samples: int = 100,
                      seed: int = 0, **ascent) -> list[dict]:
    """The amortization gap at every snapshot of a run: one row per snapshot."""
    config, agent, _, _ = load_agent(run_dir)
    if not kind(agent.config.agent).gaussian_policy:
        raise IapoError(f"{run_dir} is a direct-flow run: its policy is not a tanh-Gaussian of one lambda, "
                        "so it has no amortization gap in lambda")
    iterations = None
    if kind(agent.config.agent).learned_iterations:
        iterations = agent.config.acting_iterations + extra_iterations
    rows = []
    for step, path in snapshots(run_dir).items():
        state = load_state(path, agent)
        obs = jnp.asarray(agent_states(config, agent, state, states, seed + step))
        out = _gap_at(agent, state, obs, jax.random.PRNGKey(seed), iterations, samples, tuple(sorted(ascent.items())))
        gap = np.asarray(out["gap"])
        per_iterate = []
        if iterations:  # Fig. 4b: J at each iterate, mean over the states
            js = objective_per_iterate(agent, state, obs, jax.random.PRNGKey(seed + 1), iterations)
            per_iterate = [float(j) for j in np.mean(np.asarray(js), axis=1)]
        rows.append({"run": str(run_dir), "agent": agent.config.agent, "seed": config.seed, "step": step,
                     "iterations": iterations or 0, "gap_mean": float(gap.mean()), "gap_std": float(gap.std()),
                     "objective_mean": float(np.mean(out["j_agent"])), "states": states,
                     "ascent_steps": int(out["steps"]),
                     "ascent_converged": int(out["steps"]) < ascent.get("max_steps", OPTIMUM_MAX_STEPS),
                     "objective_per_iterate": per_iterate})
    return rows


def _run_label(row: dict) -> str:
    """'iterative, seed 0' (the seed of rows written before it was recorded: from a seed_<s> folder)."""
    seed = row.get("seed")
    if seed is None:
        name = Path(row["run"]).name
        seed = seed_of(Path(row["run"])) or name
    return f"{row['agent']}, seed {seed}"


def _k_label(label: str, row: dict) -> str:
    return label + (f", K = {row['iterations']} at evaluation" if kind(row["agent"]).learned_iterations else "")


def run_settings(run_dirs: list[Path]) -> dict[str, str]:
    """Each run's setting (`saved.settings_of`: the label `iapo plot` gives its group of seeds),
    keyed by the run as `gap_over_training` names it; settings whose labels coincide (they differ
    only in fields the labels leave out) are told apart by a number."""
    settings = settings_of(run_dirs)
    labels = [s.label for s in settings]
    named = {}
    for i, setting in enumerate(settings):
        label = setting.label if labels.count(setting.label) == 1 else f"{setting.label} [{i + 1}]"
        named.update({str(run): label for run in setting.runs})
    return named


def gap_over_seeds(rows: list[dict], settings: dict[str, str]) -> list[dict]:
    """One row per setting (`settings`: each run's setting label), iterations evaluated and
    snapshot that all of the setting's runs have: the mean over seeds of the per-run mean gap
    (and of J), and the sample std of the per-run mean gaps over seeds."""
    out = []
    for setting, agent, iterations in dict.fromkeys((settings[r["run"]], r["agent"], r["iterations"]) for r in rows):
        mine = [r for r in rows if settings[r["run"]] == setting and r["iterations"] == iterations]
        per_run = [{r["step"]: r for r in mine if r["run"] == run} for run in dict.fromkeys(r["run"] for r in mine)]
        for step in sorted(set.intersection(*(set(steps) for steps in per_run))):
            gaps = np.array([steps[step]["gap_mean"] for steps in per_run])
            objective = np.array([steps[step]["objective_mean"] for steps in per_run])
            out.append({"setting": setting, "agent": agent, "iterations": iterations, "step": step,
                        "seeds": len(per_run), "gap_mean": float(gaps.mean()),
                        "gap_std_over_seeds": float(seed_std(gaps)), "objective_mean": float(objective.mean()),
                        # (a seed's ascent that reached --max-steps makes the mean a lower bound)
                        "ascent_converged": all(steps[step].get("ascent_converged", True) for steps in per_run)})
    return out


def plot_gap(rows: list[dict], out_path: Path, over_seeds: bool = False) -> None:
    """Gap over training (Fig. 6), one curve per run (`rows` from `gap_over_training`: mean +- std
    over states), or with `over_seeds` one per setting (`rows` from `gap_over_seeds`: mean +- sample
    std over seeds)."""
    fig, ax = new_figure(figsize=(6, 4))
    key, spread = ("setting", "gap_std_over_seeds") if over_seeds else ("run", "gap_std")
    for name, iterations in dict.fromkeys((r[key], r["iterations"]) for r in rows):
        mine = [r for r in rows if r[key] == name and r["iterations"] == iterations]
        step = np.array([r["step"] for r in mine])
        mean = np.array([r["gap_mean"] for r in mine])
        std = np.array([r[spread] for r in mine])
        label = _k_label(name if over_seeds else _run_label(mine[0]), mine[0])
        if over_seeds:
            label += f" ({mine[0]['seeds']} seeds)"
        line, = ax.plot(step, mean, marker="o", ms=3, label=label)
        ax.fill_between(step, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    steps_axis(ax)
    ax.set_ylabel(r"amortization gap  $J(\lambda^*) - J(\lambda)$")
    ax.set_title("Amortization gap over training")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, out_path)


def analyze(cfg: Config) -> Path:
    """`iapo analyze gap`: rows for every run and snapshot (and, for iterative runs with
    `extra_iterations`, again with that many more iterations) into out/gap.csv, gap.json and
    the figure out/gap.png; returns the figure's path."""
    cfg.validate()
    out = Path(cfg.out)
    kwargs = dict(states=cfg.states, samples=cfg.samples, seed=cfg.seed, lr=cfg.lr, optimizer=cfg.optimizer,
                  max_steps=cfg.max_steps, patience=cfg.patience)
    settings = run_settings([Path(d) for d in cfg.run_dirs]) if cfg.mean_over_seeds else {}
    rows = []
    for run_dir in map(Path, cfg.run_dirs):
        rows += gap_over_training(run_dir, **kwargs)
        if cfg.extra_iterations and kind(load_run_config(run_dir).algo.agent).learned_iterations:
            rows += gap_over_training(run_dir, extra_iterations=cfg.extra_iterations, **kwargs)
    capped = [r for r in rows if not r["ascent_converged"]]
    if capped:
        warnings.warn(f"the ascent reached --max-steps {cfg.max_steps} with J still improving at {len(capped)} of "
                      f"{len(rows)} snapshots (gap.csv's ascent_converged): those gaps are lower bounds; "
                      "raise --max-steps", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gap.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "objective_per_iterate"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "gap.json").write_text(json.dumps(rows, indent=1) + "\n")
    if cfg.mean_over_seeds:
        over_seeds = gap_over_seeds(rows, settings)
        if not over_seeds:
            raise IapoError("--mean-over-seeds: the seeds of each setting share no snapshot step "
                            "(gap.csv has each run's numbers)")
        with open(out / "gap_over_seeds.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(over_seeds[0]))
            writer.writeheader()
            writer.writerows(over_seeds)
        plot_gap(over_seeds, out / "gap.png", over_seeds=True)
    else:
        plot_gap(rows, out / "gap.png")
    iterative = [r for r in rows if r["objective_per_iterate"]]
    if iterative:
        with open(out / "improvement.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "iterations", "step", "iteration", "improvement"])
            for r in iterative:
                js = r["objective_per_iterate"]
                writer.writerows([r["run"], r["iterations"], r["step"], k, f"{j - js[0]:.6g}"]
                                 for k, j in enumerate(js))
        plot_improvement(iterative, out / "improvement.png")
    return out / "gap.png"


def plot_improvement(rows: list[dict], out_path: Path) -> None:
    """Fig. 4b: the estimated improvement J(lambda_k) - J(lambda_0) of each iterate k over training."""
    runs = list(dict.fromkeys((r["run"], r["iterations"]) for r in rows))
    fig, axes = new_figure(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (run, iterations) in zip(axes[0], runs):
        mine = [r for r in rows if r["run"] == run and r["iterations"] == iterations]
        step = np.array([r["step"] for r in mine])
        js = np.array([r["objective_per_iterate"] for r in mine])  # (snapshots, iterations + 1)
        shades = colors(iterations)
        for k in range(1, iterations + 1):
            ax.plot(step, js[:, k] - js[:, 0], color=shades[k - 1], marker="o", ms=3, label=f"iteration {k}")
        steps_axis(ax)
        ax.set_ylabel(r"$J(\lambda_k) - J(\lambda_0)$")
        ax.set_title(f"{_run_label(mine[0])}: improvement per iterate")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    save_figure(fig, out_path)
