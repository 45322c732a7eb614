"""Multiple policy modes (Fig. 2, 7): several independent optimization runs per state; the
pairwise distances between their resulting means (7a), and for the state where they disagree
most, J over pairs of action dimensions (7b) and the runs' policy densities (7c)."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo import distributions as dist
from iapo.analysis.gap import collect_states
from iapo.analysis.landscape import landscape
from iapo.errors import IapoError
from iapo.plotting import new_figure, save_figure


def independent_runs(optimize, lam0: jax.Array, key: jax.Array, runs: int, init_spread: float = 0.0) -> jax.Array:
    """lambda (R, B, 2d) of `runs` independent runs of optimize(lam0, key) -> lam, each with its
    own random samples and, with `init_spread`, its own Gaussian perturbation of the initial mean."""

    def one(k):
        k_init, k_run = jax.random.split(k)
        mean, log_scale = dist.split(lam0)
        mean = mean + init_spread * jax.random.normal(k_init, mean.shape)
        return optimize(dist.join(mean, log_scale), k_run)

    return jax.vmap(one)(jax.random.split(key, runs))


def pairwise_distances(lams: jax.Array) -> np.ndarray:
    """Distances (B, R(R-1)/2) between the runs' mean actions tanh(mu), per state."""
    actions = np.tanh(np.asarray(dist.split(lams)[0]))  # (R, B, d)
    pairs = list(itertools.combinations(range(actions.shape[0]), 2))
    return np.stack([np.linalg.norm(actions[i] - actions[j], axis=-1) for i, j in pairs], axis=-1)


@functools.partial(jax.jit, static_argnames=("agent", "runs", "init_spread"))
def _agent_runs(agent, state, obs, key, runs: int, init_spread: float):
    """The agent's iterative optimizer run `runs` times from lambda_0 at states obs."""
    objective = agent.objective(state, obs)

    def optimize(lam0, k):
        def body(lam, kk):
            return agent.optimizer.step(state.policy_params, obs, objective, lam, kk)[0], None

        return jax.lax.scan(body, lam0, jax.random.split(k, agent.config.acting_iterations))[0]

    return independent_runs(optimize, agent.optimizer.initial_lam(obs.shape[0]), key, runs, init_spread)


def run(run_dir: Path, out: Path, states: int = 100, runs: int = 10, init_spread: float = 0.0, grid_size: int = 41,
        extent: float = 3.0, samples: int = 100, step: int | None = None, seed: int = 0) -> Path:
    """`iapo analyze modes`: out/modes.json and out/modes.png."""
    from iapo.evaluate import load_agent

    config, agent, state, step = load_agent(run_dir, step)
    if agent.config.agent != "iterative":
        raise IapoError(f"{run_dir} trained a {agent.config.agent} agent; this analysis needs an iterative one")
    obs = jnp.asarray(collect_states(config.env, agent, state, states, seed))
    key = jax.random.PRNGKey(seed)
    lams = _agent_runs(agent, state, obs, key, runs, init_spread)  # (R, B, 2d)
    distances = pairwise_distances(lams)  # (B, pairs)
    widest = int(np.argmax(distances.max(axis=1)))
    d = agent.act_dim
    dim_pairs = list(itertools.combinations(range(d), 2))[:3]
    surfaces = []
    grid = np.linspace(-extent, extent, grid_size)
    for dims in dim_pairs:
        surfaces.append(landscape(agent, state, obs[widest : widest + 1], lams[0, widest : widest + 1], dims, grid,
                                  samples, key).tolist())
    result = {"run": str(run_dir), "step": step, "env": config.env, "states": states, "runs": runs,
              "init_spread": init_spread, "distances": distances.tolist(), "widest_state": widest,
              "widest_distance": float(distances[widest].max()), "dim_pairs": dim_pairs, "grid": grid.tolist(),
              "objective": surfaces, "lambdas_at_widest": np.asarray(lams[:, widest]).tolist()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "modes.json").write_text(json.dumps(result) + "\n")
    _plot(result, out / "modes.png")
    return out / "modes.png"


def _plot(result: dict, path: Path) -> None:
    pairs = result["dim_pairs"]
    fig, axes = new_figure(1, 2 + len(pairs), figsize=(4.5 * (2 + len(pairs)), 4), squeeze=False)
    axes = axes[0]
    axes[0].hist(np.ravel(result["distances"]), bins=30, color="C0")
    axes[0].set_xlabel("distance between runs' mean actions")
    axes[0].set_ylabel("pairs (all states)")
    axes[0].set_title(f"(a) {result['runs']} runs at each of {result['states']} states")
    lams = np.array(result["lambdas_at_widest"])  # (R, 2d)
    d = lams.shape[1] // 2
    mean, scale = lams[:, :d], np.exp(lams[:, d:])
    grid = np.array(result["grid"])
    for ax, dims, surface in zip(axes[1:], pairs, result["objective"]):
        ax.contourf(grid, grid, np.array(surface).T, levels=30, cmap="viridis")
        ax.plot(mean[:, dims[0]], mean[:, dims[1]], "ws", ms=6, mfc="none", label="runs' means")
        ax.set_xlabel(f"mean, dimension {dims[0]}")
        ax.set_ylabel(f"mean, dimension {dims[1]}")
        ax.set_title(f"(b) J at state {result['widest_state']}")
        ax.legend(loc="best", fontsize="small")
    ax = axes[-1]
    a = np.linspace(-0.999, 0.999, 400)
    u = np.arctanh(a)
    for r in range(len(mean)):  # each run's density of action dimension 0: N(u; mu, sigma) / (1 - a^2)
        density = np.exp(-0.5 * ((u - mean[r, 0]) / scale[r, 0]) ** 2) / (scale[r, 0] * np.sqrt(2 * np.pi) * (1 - a**2))
        ax.plot(a, density, lw=1)
    ax.set_xlabel("action, dimension 0")
    ax.set_ylabel("policy density")
    ax.set_title("(c) the runs' policies")
    fig.suptitle(f"{result['env']}, step {result['step']}: multiple modes")
    save_figure(fig, path)
