"""What the analyses share: their base configuration (`AnalysisConfig`: --out, --seed and the
checks of both; `OneRunConfig`: one run directory, its `--step` and loading the agent there), the
states an agent visits, J at each iterate of its iterative optimizer, and J over a grid of two dimensions
of the policy mean. (The ascent on lambda to the
optimum of J is `optimizers.nonamortized.ascend_to_optimum`, beside the other ascent.)"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from iapo.agent import Agent, AgentState
from iapo.config import TrainConfig, at_least_one
from iapo.envs import make_run_env
from iapo.errors import IapoError
from iapo.kinds import kind
from iapo.rollout import agent_policy, visited_states
from iapo.saved import check_analysis_inputs, load_agent

# `--step`: which of a run's saved agents an analysis of one agent reads.
SnapshotStep = Annotated[int | None, tyro.conf.arg(
    metavar="STEP", help="The snapshot (or checkpoint) to analyse; unset means the newest checkpoint.")]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnalysisConfig:
    """The fields and checks every `iapo analyze` command shares. A subclass sets `out`'s default,
    names its counts (fields that must be >= 1) in `counts`, and checks its own fields in `check`."""

    out: str
    """Folder for the figure and its numbers."""

    seed: int = 0
    """Seed of the states' rollouts and of the estimates."""

    counts: ClassVar[tuple[str, ...]] = ()

    def run_dirs_to_check(self) -> tuple[str, ...] | None:
        """Several runs, which must exist and be of one environment; None for one run."""
        return None

    def check(self) -> None:
        """One-line errors for the subclass's own fields."""

    def validate(self) -> None:
        check_analysis_inputs(self.seed, self.out, self.run_dirs_to_check())
        at_least_one(self, *self.counts)
        self.check()


@dataclasses.dataclass(frozen=True, kw_only=True)
class OneRunConfig(AnalysisConfig):
    """An analysis of one run's agent at one of its saved steps."""

    run_dir: tyro.conf.Positional[str]
    """Run directory of an iterative agent."""

    step: SnapshotStep = None

    def load_iterative(self):
        """(config, agent, state, step) of the run at `step`; a one-line error unless its agent
        learns iterations (the analyses of an iterative optimizer)."""
        config, agent, state, step = load_agent(Path(self.run_dir), self.step)
        if not kind(agent.config.agent).learned_iterations:
            raise IapoError(f"{self.run_dir} trained a {agent.config.agent} agent; this analysis needs an iterative one")
        return config, agent, state, step


def agent_states(config: TrainConfig, agent: Agent, state: AgentState, n: int, seed: int) -> np.ndarray:
    """n states (n, obs_dim) visited by the agent acting as in training (sampled actions), from a
    reset seeded by `seed`, across episodes."""
    env = make_run_env(config)
    try:
        obs, _ = visited_states(env, agent_policy(agent, state), jax.random.PRNGKey(seed), n, seed)
    finally:
        env.close()
    return obs


@functools.partial(jax.jit, static_argnames=("agent", "iterations"))
def objective_per_iterate(agent: Agent, state: AgentState, obs: jax.Array, key: jax.Array, iterations: int):
    """J (iterations + 1, B) at lambda_0 .. lambda_iterations of the agent's iterative optimizer."""
    k_iter, k_last = jax.random.split(key)
    objective = agent.objective(state, obs)
    lam, out = agent.optimizer.iterate(state.policy_params, obs, objective, k_iter, iterations)
    j_last, _ = objective(lam, k_last)
    return jnp.concatenate([out["objective"], j_last[None]])


def objective_surface(agent: Agent, state: AgentState, obs: jax.Array, lam: jax.Array, dims: tuple[int, int],
                      grid: np.ndarray, samples: int, key: jax.Array) -> np.ndarray:
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
