"""The objective landscape at one state (Fig. 1, 19): J over a grid of two dimensions of the
policy mean, the other parameters held at the iterative optimizer's final estimate, with its path
lambda_0 .. lambda_K, the optimum found by gradient ascent and, given a direct run, the direct
estimate at the same state."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo.analysis.gap import ascend_until_no_improvement, collect_states
from iapo.errors import ConfigError, IapoError
from iapo.plotting import new_figure, save_figure


def iterative_path(agent, state, obs: jax.Array, key: jax.Array) -> np.ndarray:
    """lambda_0 .. lambda_K (K + 1, B, 2d) of the agent's iterative optimizer at states obs."""
    objective = agent.objective(state, obs)
    step = jax.jit(lambda lam, k: agent.optimizer.step(state.policy_params, obs, objective, lam, k)[0])
    lam = agent.optimizer.initial_lam(obs.shape[0])
    path = [lam]
    for k in jax.random.split(key, agent.config.acting_iterations):
        lam = step(lam, k)
        path.append(lam)
    return np.asarray(jnp.stack(path))


def landscape(agent, state, obs: jax.Array, lam: jax.Array, dims: tuple[int, int], grid: np.ndarray,
              samples: int, key: jax.Array) -> np.ndarray:
    """J (G, G) at one state obs (1, obs_dim), over mean[dims[0]] x mean[dims[1]] in `grid`, the rest
    of lambda (1, 2d) fixed; the same samples at every point, so the surface is smooth."""
    g = len(grid)
    mu_i, mu_j = np.meshgrid(grid, grid, indexing="ij")
    lams = np.repeat(np.asarray(lam), g * g, axis=0)  # (G*G, 2d)
    lams[:, dims[0]] = mu_i.ravel()
    lams[:, dims[1]] = mu_j.ravel()
    obs_g = jnp.repeat(obs, g * g, axis=0)
    integrand = agent.objective(state, obs_g).integrand
    # common random numbers: one noise draw (N, 1, d) shared by every grid point
    eps = jnp.broadcast_to(jax.random.normal(key, (samples, 1, agent.act_dim)), (samples, g * g, agent.act_dim))
    values, _ = jax.jit(integrand)(jnp.asarray(lams), eps)  # (N, G*G)
    return np.asarray(jnp.mean(values, axis=0)).reshape(g, g)


def run(run_dir: Path, out: Path, state_index: int = 0, dims: tuple[int, int] = (0, 1),
        direct_run: Path | None = None, grid_size: int = 41, extent: float = 3.0, samples: int = 100,
        states: int = 100, step: int | None = None, seed: int = 0) -> Path:
    """`iapo analyze landscape`: out/landscape.json (grid, J, path, optimum, direct estimate) and
    out/landscape.png."""
    from iapo.evaluate import load_agent

    config, agent, state, step = load_agent(run_dir, step)
    if agent.config.agent != "iterative":
        raise IapoError(f"{run_dir} trained a {agent.config.agent} agent; this analysis needs an iterative one")
    d = agent.act_dim
    if d < 2:
        raise ConfigError(f"{config.env} has {d} action dimension; the landscape needs two")
    if not (0 <= dims[0] < d and 0 <= dims[1] < d and dims[0] != dims[1]):
        raise ConfigError(f"--dims must be two different action dimensions in 0..{d - 1}, got {dims[0]} {dims[1]}")
    if not 0 <= state_index < states:
        raise ConfigError(f"--state must be in 0..{states - 1}, got {state_index}")
    all_obs = collect_states(config.env, agent, state, states, seed)
    obs = jnp.asarray(all_obs[state_index : state_index + 1])  # (1, obs_dim)
    key = jax.random.PRNGKey(seed)
    path = iterative_path(agent, state, obs, key)[:, 0]  # (K + 1, 2d)
    lam_k = jnp.asarray(path[-1:])
    optimum, _ = jax.jit(lambda l, k: ascend_until_no_improvement(agent.objective(state, obs), l, k, lr=1e-2,
                                                                  optimizer="adam", max_steps=2000))(lam_k, key)
    grid = np.linspace(-extent, extent, grid_size)
    surface = landscape(agent, state, obs, lam_k, dims, grid, samples, key)
    result = {"run": str(run_dir), "step": step, "env": config.env, "state_index": state_index,
              "dims": list(dims), "grid": grid.tolist(), "objective": surface.tolist(),
              "iterative_path": path[:, list(dims)].tolist(), "optimum": np.asarray(optimum)[0, list(dims)].tolist()}
    if direct_run is not None:
        _, direct_agent, direct_state, _ = load_agent(direct_run)
        if direct_agent.config.agent != "direct" or direct_agent.act_dim != d:
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
    fig.colorbar(filled, ax=ax, label="J(λ; s)")
    p = np.array(result["iterative_path"])
    ax.plot(p[:, 0], p[:, 1], "w-o", ms=4, lw=1.5, label="iterative path λ₀ … λ_K")
    ax.plot(*result["optimum"], "r*", ms=14, label="gradient-ascent optimum")
    if "direct" in result:
        ax.plot(*result["direct"], "s", color="orange", ms=9, label="direct estimate")
    i, j = result["dims"]
    ax.set_xlabel(f"mean of action dimension {i}")
    ax.set_ylabel(f"mean of action dimension {j}")
    ax.set_title(f"{result['env']}, step {result['step']}, state {result['state_index']}")
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path)
