"""The objective landscape at one state (Fig. 1, 19): J over a grid of two dimensions of the
policy mean, the other parameters held at the iterative optimizer's final estimate, with its path
lambda_0 .. lambda_K, the optimum found by gradient ascent and, given a direct run, the direct
estimate at the same state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from iapo.analysis.common import OneRunConfig, agent_states, objective_surface
from iapo.config import positive_finite
from iapo.errors import ConfigError, IapoError
from iapo.kinds import kind
from iapo.optimizers.nonamortized import ascend_to_optimum
from iapo.figures import new_figure, save_figure
from iapo.saved import load_agent


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(OneRunConfig):
    """Objective landscape (Fig. 1, 19): J over a grid of two dimensions of the policy mean at one
    state visited by an iterative agent, with the iterative path, the gradient-ascent optimum and,
    with --direct, a direct agent's estimate. Writes landscape.json and landscape.png."""

    out: str = "analysis/landscape"

    state: int = 0
    """Which of the visited states (0 .. --states - 1)."""

    dims: tuple[int, int] = (0, 1)
    """The two action dimensions whose means span the grid."""

    direct: Annotated[str | None, tyro.conf.arg(metavar="RUN_DIR")] = None
    """A direct run on the same environment whose estimate to mark."""

    grid_size: int = 41
    """Grid points per dimension."""

    extent: float = 3.0
    """The grid covers means in [-extent, extent] (before the tanh)."""

    samples: int = 100
    """Action samples per grid point (the same at every point)."""

    states: int = 100
    """States collected by the agent, to choose --state from."""

    counts = ("grid_size", "samples", "states")

    def check(self) -> None:
        positive_finite("extent", self.extent)


def iterative_path(agent, state, obs: jax.Array, key: jax.Array) -> np.ndarray:
    """lambda_0 .. lambda_K (K + 1, B, 2d) of the agent's iterative optimizer at states obs."""
    objective = agent.objective(state, obs)
    iterate = jax.jit(lambda k: agent.optimizer.iterate(state.policy_params, obs, objective, k,
                                                        agent.config.acting_iterations)[1]["iterates"])
    lam0 = agent.optimizer.initial_lam(obs.shape[0])
    return np.asarray(jnp.concatenate([lam0[None], iterate(key)]))


def analyze(cfg: Config) -> Path:
    """`iapo analyze landscape`: out/landscape.json (grid, J, path, optimum, direct estimate) and
    out/landscape.png; returns the figure's path."""
    cfg.validate()
    run_dir, out, state_index, dims, seed = Path(cfg.run_dir), Path(cfg.out), cfg.state, tuple(cfg.dims), cfg.seed
    config, agent, state, step = cfg.load_iterative()
    d = agent.act_dim
    if d < 2:
        raise ConfigError(f"{config.env} has {d} action dimension; the landscape needs two")
    if not (0 <= dims[0] < d and 0 <= dims[1] < d and dims[0] != dims[1]):
        raise ConfigError(f"--dims must be two different action dimensions in 0..{d - 1}, got {dims[0]} {dims[1]}")
    if not 0 <= state_index < cfg.states:
        raise ConfigError(f"--state must be in 0..{cfg.states - 1}, got {state_index}")
    all_obs = agent_states(config, agent, state, cfg.states, seed)
    obs = jnp.asarray(all_obs[state_index : state_index + 1])  # (1, obs_dim)
    key = jax.random.PRNGKey(seed)
    path = iterative_path(agent, state, obs, key)[:, 0]  # (K + 1, 2d)
    lam_k = jnp.asarray(path[-1:])
    optimum, _ = jax.jit(lambda l, k: ascend_to_optimum(agent.objective(state, obs), l, k, lr=1e-2,
                                                        optimizer="adam", max_steps=2000))(lam_k, key)
    grid = np.linspace(-cfg.extent, cfg.extent, cfg.grid_size)
    surface = objective_surface(agent, state, obs, lam_k, dims, grid, cfg.samples, key)
    result = {"run": str(run_dir), "step": step, "env": config.env, "state_index": state_index,
              "dims": list(dims), "grid": grid.tolist(), "objective": surface.tolist(),
              "iterative_path": path[:, list(dims)].tolist(), "optimum": np.asarray(optimum)[0, list(dims)].tolist()}
    if cfg.direct is not None:
        direct_run = Path(cfg.direct)
        _, direct_agent, direct_state, _ = load_agent(direct_run)
        if not _is_direct(direct_agent.config.agent) or direct_agent.act_dim != d:
            raise IapoError(f"{direct_run} is not a direct run on {config.env}")
        lam_direct, _ = direct_agent.optimizer.optimize(direct_state.policy_params, obs, None, key)
        result["direct"] = np.asarray(lam_direct)[0, list(dims)].tolist()
    out.mkdir(parents=True, exist_ok=True)
    (out / "landscape.json").write_text(json.dumps(result) + "\n")
    _plot(result, out / "landscape.png")
    return out / "landscape.png"


def _plot(result: dict, path: Path) -> None:
    grid, surface = np.array(result["grid"]), np.array(result["objective"])
    fig, ax = new_figure(figsize=(5.5, 4.5))
    filled = ax.contourf(grid, grid, surface.T, levels=30, cmap="viridis")
    fig.colorbar(filled, ax=ax, label=r"$J(\lambda; s)$")
    p = np.array(result["iterative_path"])
    ax.plot(p[:, 0], p[:, 1], "w-o", ms=4, lw=1.5, label=r"iterative path $\lambda_0 \ldots \lambda_K$")
    ax.plot(*result["optimum"], "r*", ms=14, label="gradient-ascent optimum")
    if "direct" in result:
        ax.plot(*result["direct"], "s", color="orange", ms=9, label="direct estimate")
    i, j = result["dims"]
    ax.set_xlabel(f"mean of action dimension {i}")
    ax.set_ylabel(f"mean of action dimension {j}")
    ax.set_title(f"{result['env']}, step {result['step']}, state {result['state_index']}")
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path)


def _is_direct(name: str) -> bool:
    """A direct policy network of one tanh-Gaussian λ per state, whose estimate the figure marks."""
    k = kind(name)
    return k.amortized and not k.iterates and k.gaussian_policy
