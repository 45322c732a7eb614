"""Multiple policy modes (Fig. 2, 7): several independent optimization runs per state; the
pairwise distances between their resulting means (7a), and for the state where they disagree
most, J over pairs of action dimensions (7b) and the runs' policy densities (7c)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo import distributions as dist
from iapo.analysis.common import OneRunConfig, agent_states, objective_surface
from iapo.config import positive_finite
from iapo.errors import ConfigError
from iapo.figures import new_figure, save_figure


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(OneRunConfig):
    """Multiple policy modes (Fig. 2, 7): several independent runs of an iterative agent's
    optimizer at each of many visited states; a histogram of the distances between the runs'
    mean actions, and for the state where they differ most, J over pairs of action dimensions and
    the runs' policy densities. Writes modes.json and modes.png."""

    out: str = "analysis/modes"

    states: int = 100
    """States, visited by the agent."""

    runs: int = 10
    """Independent optimization runs per state (different random samples)."""

    init_spread: float = 0.0
    """Also perturb each run's initial mean by Gaussian noise of this scale (0: the fixed lambda_0)."""

    grid_size: int = 41
    """Grid points per dimension of the J projections."""

    extent: float = 3.0
    """The projections cover means in [-extent, extent] (before the tanh)."""

    samples: int = 100
    """Action samples per grid point."""

    seed: int = 0
    """Seed of the states' rollouts and of the runs."""

    counts = ("states", "grid_size", "samples")

    def check(self) -> None:
        if self.runs < 2:
            raise ConfigError(f"--runs must be >= 2, got {self.runs}")
        if not (self.init_spread >= 0 and math.isfinite(self.init_spread)):
            raise ConfigError(f"--init-spread must be a finite number >= 0, got {self.init_spread}")
        positive_finite("extent", self.extent)


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
        return agent.optimizer.iterate(state.policy_params, obs, objective, k, agent.config.acting_iterations, lam0)[0]

    return independent_runs(optimize, agent.optimizer.initial_lam(obs.shape[0]), key, runs, init_spread)


def analyze(cfg: Config) -> Path:
    """`iapo analyze modes`: out/modes.json and out/modes.png; returns the figure's path."""
    cfg.validate()
    run_dir, out, states, runs, init_spread, seed = (Path(cfg.run_dir), Path(cfg.out), cfg.states, cfg.runs,
                                                     cfg.init_spread, cfg.seed)
    config, agent, state, step = cfg.load_iterative()
    obs = jnp.asarray(agent_states(config, agent, state, states, seed))
    key = jax.random.PRNGKey(seed)
    lams = _agent_runs(agent, state, obs, key, runs, init_spread)  # (R, B, 2d)
    distances = pairwise_distances(lams)  # (B, pairs)
    widest = int(np.argmax(distances.max(axis=1)))
    d = agent.act_dim
    dim_pairs = list(itertools.combinations(range(d), 2))[:3]
    surfaces = []
    grid = np.linspace(-cfg.extent, cfg.extent, cfg.grid_size)
    for dims in dim_pairs:
        surfaces.append(objective_surface(agent, state, obs[widest : widest + 1], lams[0, widest : widest + 1], dims,
                                          grid, cfg.samples, key).tolist())
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
    for panel, (ax, dims, surface) in enumerate(zip(axes[1:], pairs, result["objective"])):
        filled = ax.contourf(grid, grid, np.array(surface).T, levels=30, cmap="viridis")
        fig.colorbar(filled, ax=ax, label=r"$J(\lambda; s)$")
        ax.plot(mean[:, dims[0]], mean[:, dims[1]], "ws", ms=6, mfc="none", label="runs' means")
        ax.set_xlabel(rf"$\mu_{dims[0]}$ (mean, dimension {dims[0]})")
        ax.set_ylabel(rf"$\mu_{dims[1]}$ (mean, dimension {dims[1]})")
        ax.set_title(f"(b.{panel + 1}) J over dimensions {dims[0]}, {dims[1]} at state {result['widest_state']}")
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
