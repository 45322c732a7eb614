"""The amortization gap (Fig. 6): how far the agent's lambda is from the optimum of J at a state.

From the agent's lambda, plain gradient ascent on J(lambda; s) (reference: SGD, lr 1e-4, 10
samples) runs until the estimated objective stops improving; the gap at each state is
J(lambda*) - J(lambda_agent), both estimated with the same (many) samples, so that their noise
cancels in the difference.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from iapo import distributions as dist
from iapo.errors import IapoError
from iapo.objective import Objective, value_and_grad
from iapo.plotting import new_figure, save_figure


def ascend_until_no_improvement(
    objective: Objective, lam0: jax.Array, key: jax.Array, lr: float = 1e-4, optimizer: str = "sgd",
    max_steps: int = 5_000, patience: int = 100, tol: float = 1e-4,
    log_scale_bounds: tuple[float, float] = (-5.0, 2.0),
) -> tuple[jax.Array, jax.Array]:
    """Gradient ascent on J from lam0 (B, 2d) until the batch's mean estimated J has not risen by
    more than `tol` for `patience` steps (or `max_steps`). Each state keeps the iterate at which
    its own estimate was best. Returns (lambda* (B, 2d), number of steps)."""
    opt = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr)

    def cond(carry):
        *_, step, since_best = carry
        return (step < max_steps) & (since_best < patience)

    def body(carry):
        lam, opt_state, best_lam, best_j, best_mean, key, step, since_best = carry
        key, k = jax.random.split(key)
        j, _, grad = value_and_grad(objective, lam, k)  # J and its gradient at lam, (B,), (B, 2d)
        better = j > best_j
        best_lam = jnp.where(better[:, None], lam, best_lam)
        best_j = jnp.where(better, j, best_j)
        mean = jnp.mean(j)
        improved = mean > best_mean + tol
        best_mean = jnp.where(improved, mean, best_mean)
        since_best = jnp.where(improved, 0, since_best + 1)
        updates, opt_state = opt.update(-grad, opt_state)  # ascend J
        lam = optax.apply_updates(lam, updates)
        mean_, log_scale = dist.split(lam)
        lam = dist.join(mean_, jnp.clip(log_scale, *log_scale_bounds))
        return lam, opt_state, best_lam, best_j, best_mean, key, step + 1, since_best

    b = lam0.shape[0]
    init = (lam0, opt.init(lam0), lam0, jnp.full((b,), -jnp.inf), jnp.asarray(-jnp.inf), key,
            jnp.asarray(0), jnp.asarray(0))
    _, _, best_lam, _, _, _, steps, _ = jax.lax.while_loop(cond, body, init)
    return best_lam, steps


def amortization_gap(
    objective: Objective, lam_agent: jax.Array, key: jax.Array, eval_objective: Objective | None = None, **ascent
) -> dict:
    """Per-state gap J(lambda*) - J(lambda_agent), (B,), with lambda* from
    `ascend_until_no_improvement` (keyword arguments `ascent`). Both are estimated by
    `eval_objective` (default: `objective`; pass one with more samples) with the same key."""
    k_ascent, k_eval = jax.random.split(key)
    lam_star, steps = ascend_until_no_improvement(objective, lam_agent, k_ascent, **ascent)
    evaluate = eval_objective or objective
    j_agent, _ = evaluate(lam_agent, k_eval)
    j_star, _ = evaluate(lam_star, k_eval)  # common random numbers
    return {"gap": j_star - j_agent, "j_agent": j_agent, "j_star": j_star, "lam_star": lam_star, "steps": steps}


# -- over a run's snapshots -----------------------------------------------------------------------


def collect_states(env_id: str, agent, state, n: int, seed: int) -> np.ndarray:
    """n states (n, obs_dim) visited by the agent acting as in training (sampled actions)."""
    from iapo.agent import act
    from iapo.envs import make_env

    env = make_env(env_id)
    states, key = [], jax.random.PRNGKey(seed)
    obs, _ = env.reset(seed=seed)
    while len(states) < n:
        states.append(np.asarray(obs, np.float32))
        action, key = act(agent, state, jnp.asarray(obs[None], jnp.float32), key)
        obs, _, terminated, truncated, _ = env.step(np.asarray(action[0]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(states)


@functools.partial(jax.jit, static_argnames=("agent", "iterations"))
def objective_per_iterate(agent, state, obs, key, iterations: int):
    """J (iterations + 1, B) at lambda_0 .. lambda_iterations of the agent's iterative optimizer."""
    k_iter, k_last = jax.random.split(key)
    objective = agent.objective(state, obs)
    lam, out = agent.optimizer.iterate(state.policy_params, obs, objective, k_iter, iterations)
    j_last, _ = objective(lam, k_last)
    return jnp.concatenate([out["objective"], j_last[None]])


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
    from iapo import checkpoint
    from iapo.evaluate import load_agent

    config, agent, template, _ = load_agent(run_dir)
    if agent.config.agent == "direct-flow":
        raise IapoError(f"{run_dir} is a direct-flow run: its policy is not a tanh-Gaussian of one lambda, "
                        "so it has no amortization gap in lambda")
    snapshots = checkpoint.list_snapshots(run_dir)
    if not snapshots:
        raise IapoError(f"{run_dir} has no snapshots (train with --snapshot-every)")
    iterations = None
    if agent.config.agent == "iterative":
        iterations = agent.config.acting_iterations + extra_iterations
    rows = []
    for step, path in snapshots:
        state, _ = checkpoint.load(path, template)
        obs = jnp.asarray(collect_states(config.env, agent, state, states, seed + step))
        out = _gap_at(agent, state, obs, jax.random.PRNGKey(seed), iterations, samples, tuple(sorted(ascent.items())))
        gap = np.asarray(out["gap"])
        per_iterate = []
        if iterations:  # Fig. 4b: J at each iterate, mean over the states
            js = objective_per_iterate(agent, state, obs, jax.random.PRNGKey(seed + 1), iterations)
            per_iterate = [float(j) for j in np.mean(np.asarray(js), axis=1)]
        rows.append({"run": str(run_dir), "agent": agent.config.agent, "step": step,
                     "iterations": iterations or 0, "gap_mean": float(gap.mean()), "gap_std": float(gap.std()),
                     "objective_mean": float(np.mean(out["j_agent"])), "states": states,
                     "ascent_steps": int(out["steps"]), "objective_per_iterate": per_iterate})
    return rows


def plot_gap(rows: list[dict], out_path: Path) -> None:
    """Gap mean +- std over training, one curve per run (Fig. 6)."""
    fig, ax = new_figure(figsize=(6, 4))
    for run, iterations in dict.fromkeys((r["run"], r["iterations"]) for r in rows):
        mine = [r for r in rows if r["run"] == run and r["iterations"] == iterations]
        step = np.array([r["step"] for r in mine])
        mean = np.array([r["gap_mean"] for r in mine])
        std = np.array([r["gap_std"] for r in mine])
        label = f"{mine[0]['agent']} ({Path(run).name})"
        if mine[0]["agent"] == "iterative":
            label += f", {mine[0]['iterations']} iterations"
        line, = ax.plot(step, mean, marker="o", ms=3, label=label)
        ax.fill_between(step, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("amortization gap  J(λ*) − J(λ)")
    ax.set_title("Amortization gap over training")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, out_path)


def run(run_dirs: list[Path], out: Path, extra_iterations: int = 0, **kwargs) -> Path:
    """`iapo analyze gap`: rows for every run and snapshot (and, for iterative runs with
    `extra_iterations`, again with that many more iterations) into out/gap.csv, gap.json and
    the figure out/gap.png."""
    import csv
    import json

    rows = []
    for run_dir in run_dirs:
        rows += gap_over_training(run_dir, **kwargs)
        if extra_iterations:
            from iapo.cli import load_run_config

            if load_run_config(run_dir).algo.agent == "iterative":
                rows += gap_over_training(run_dir, extra_iterations=extra_iterations, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gap.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "objective_per_iterate"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "gap.json").write_text(json.dumps(rows, indent=1) + "\n")
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
    import matplotlib

    runs = list(dict.fromkeys((r["run"], r["iterations"]) for r in rows))
    fig, axes = new_figure(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (run, iterations) in zip(axes[0], runs):
        mine = [r for r in rows if r["run"] == run and r["iterations"] == iterations]
        step = np.array([r["step"] for r in mine])
        js = np.array([r["objective_per_iterate"] for r in mine])  # (snapshots, iterations + 1)
        colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, iterations))
        for k in range(1, iterations + 1):
            ax.plot(step, js[:, k] - js[:, 0], color=colors[k - 1], marker="o", ms=3, label=f"iteration {k}")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("J(λ_k) − J(λ_0)")
        ax.set_title(f"{Path(run).name}: improvement per iterate")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    save_figure(fig, out_path)
