"""Value overestimation and policy change (Fig. 3), over a run's snapshots.

- Value bias: at states the agent visits, the critics' estimate Q(s, a) of a sampled action minus
  the discounted Monte Carlo soft return sum_t gamma^t (r_t - alpha KL_t) (no KL at t = 0, as in
  Q) of the same action from the same simulator state, restored, then the stochastic policy; all
  the states' rollouts run side by side, one act call per step.
- Policy change rate: KL(pi_old || pi_new) between successive snapshots' policies at the states
  the older one visits (closed form: tanh is invertible, so it is the KL of the Gaussians).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from iapo import distributions as dist
from iapo.analysis.common import AnalysisConfig
from iapo.config import TrainConfig
from iapo.env_state import extend_time_limit, get_state, set_state
from iapo.envs import make_run_env
from iapo.kinds import kind
from iapo.objective import pessimistic_value
from iapo.figures import new_figure, save_figure, steps_axis
from iapo.rollout import rollout, visited_states
from iapo.saved import load_agent, load_state, snapshots


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(AnalysisConfig):
    """Value overestimation and policy change (Fig. 3), over snapshots: the critics' estimate
    Q(s, a) minus the discounted Monte Carlo soft return of the same action from the restored
    simulator state, and KL(pi_previous || pi) between successive snapshots. Compare runs with
    --pessimism 1 and 2.5. Writes overestimation.csv, .json and .png."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run directories written by `iapo train`."""

    out: str = "analysis/overestimation"

    states: int = 50
    """Visited states per snapshot; their rollouts run side by side."""

    horizon: int = 1000
    """Steps of each Monte Carlo rollout (gamma^horizon is what is left out)."""

    seed: int = 0
    """Seed of the states' rollouts and of the policies' samples."""

    counts = ("states", "horizon")

    def run_dirs_to_check(self) -> tuple[str, ...]:
        return self.run_dirs


@functools.partial(jax.jit, static_argnames="agent")
def policy_sample(agent, state, obs, key):
    """(actions (B, d), log pi (B,), lambda (B, 2d)) of the agent's stochastic policy at obs, as it
    acts (with the acting pessimism)."""
    k_opt, k_sample = jax.random.split(key)
    objective = agent.objective(state, obs, beta=agent.config.acting_beta)
    lam, _ = agent.optimizer.optimize(state.policy_params, obs, objective, k_opt)
    actions, log_pi = agent.optimizer.sample(state.policy_params, obs, lam, k_sample)
    return actions, log_pi, lam


def mc_soft_returns(envs: list, first_actions: np.ndarray, policy, gamma: float, alpha: float,
                    horizon: int, start_obs: np.ndarray | None = None) -> np.ndarray:
    """Discounted soft returns (E,) of envs already set to their start states (observations
    `start_obs`, unused: the first action is given): first_actions (E, d) at t = 0, then
    policy(obs (E, D)) -> (actions (E, d), log pi (E,)) for t = 1 .. horizon - 1;
    sum_t gamma^t r_t - alpha sum_{t>=1} gamma^t (log pi_t + d log 2). An episode that ends adds
    nothing more."""
    n, d = first_actions.shape
    first = [True]

    def step_policy(obs, key):
        if first[0]:
            first[0] = False
            return np.asarray(first_actions), key, None
        actions, log_pi = policy(obs)
        return actions, key, log_pi

    if start_obs is None:
        start_obs = np.zeros((n, *envs[0].observation_space.shape), np.float32)
    out = rollout(envs, step_policy, None, start_obs=start_obs, steps=horizon, record=True)
    t = np.arange(out.rewards.shape[1])
    discount = gamma ** t  # (T,)
    kl = np.where((t >= 1) & (t < out.lengths[:, None]), out.infos + d * np.log(2.0), 0.0)  # (E, T)
    return np.sum(discount * (out.rewards - alpha * kl), axis=1)


def gaussian_kl(lam_p: jax.Array, lam_q: jax.Array) -> np.ndarray:
    """KL(pi_p || pi_q) (B,) of two tanh-Gaussian policies with parameters (B, 2d)."""
    mu_p, ls_p = dist.split(jnp.asarray(lam_p))
    mu_q, ls_q = dist.split(jnp.asarray(lam_q))
    var_p, var_q = jnp.exp(2 * ls_p), jnp.exp(2 * ls_q)
    return np.asarray(jnp.sum(ls_q - ls_p + (var_p + (mu_p - mu_q) ** 2) / (2 * var_q) - 0.5, axis=-1))


def _visit(config: TrainConfig, agent, state, n: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    """n observations (n, D) the agent visits, with the simulator state at each."""

    def policy(obs, key):
        key, k = jax.random.split(key)
        action, _, _ = policy_sample(agent, state, jnp.asarray(obs), k)
        return np.asarray(action), key, None

    env = make_run_env(config)
    try:
        return visited_states(env, policy, jax.random.PRNGKey(seed), n, seed, capture=get_state)
    finally:
        env.close()


def value_bias(config: TrainConfig, agent, state, gamma: float, states: int, horizon: int, seed: int) -> dict:
    """Q(s, a) - Monte Carlo soft return at `states` visited states, for the pessimistic estimate
    (the agent's beta) and for the critics' mean."""
    observations, env_states = _visit(config, agent, state, states, seed)
    key = jax.random.PRNGKey(seed + 1)
    key, k = jax.random.split(key)
    actions, _, _ = policy_sample(agent, state, jnp.asarray(observations), k)
    q = agent.critic.apply(state.critic_params, jnp.asarray(observations), actions)  # (2, B)
    q_pessimistic = np.asarray(pessimistic_value(q, agent.config.beta, agent.config.pessimism_std))
    envs = [make_run_env(config) for _ in range(states)]
    try:
        for env, env_state in zip(envs, env_states):
            env.reset(seed=seed)
            set_state(env, env_state)
            # the rollout runs `horizon` actions (each `action_repeat` environment steps), not to the episode's limit
            extend_time_limit(env, horizon * config.action_repeat)
        keys = iter(jax.random.split(key, horizon))

        def policy(obs):
            a, log_pi, _ = policy_sample(agent, state, jnp.asarray(obs), next(keys))
            return np.asarray(a), np.asarray(log_pi)

        returns = mc_soft_returns(envs, np.asarray(actions), policy, gamma, float(np.exp(state.log_alpha)), horizon,
                                  observations)
    finally:
        for env in envs:
            env.close()
    return {"bias": q_pessimistic - returns, "bias_mean_q": np.asarray(jnp.mean(q, axis=0)) - returns,
            "returns": returns, "observations": observations}


def analyze(cfg: Config) -> Path:
    """`iapo analyze overestimation`: out/overestimation.csv, .json and .png; returns the figure's path."""
    cfg.validate()
    out, states, horizon, seed = Path(cfg.out), cfg.states, cfg.horizon, cfg.seed
    rows = []
    for run_dir in map(Path, cfg.run_dirs):
        config, agent, _, _ = load_agent(run_dir)
        previous = None
        for step, path in snapshots(run_dir).items():
            state = load_state(path, agent)
            vb = value_bias(config, agent, state, config.algo.gamma, states, horizon, seed + step)
            kl = float("nan")
            # at the states the older policy visited; a flow policy is not a Gaussian of lambda: no closed form
            if previous is not None and kind(agent.config.agent).gaussian_policy:
                old_state, old_obs = previous
                key = jax.random.PRNGKey(seed)
                _, _, lam_old = policy_sample(agent, old_state, jnp.asarray(old_obs), key)
                _, _, lam_new = policy_sample(agent, state, jnp.asarray(old_obs), key)
                kl = float(np.mean(gaussian_kl(lam_old, lam_new)))
            previous = (state, vb["observations"])
            rows.append({"run": str(run_dir), "agent": agent.config.agent, "beta": agent.config.beta, "step": step,
                         "value_bias_mean": float(np.mean(vb["bias"])), "value_bias_std": float(np.std(vb["bias"])),
                         "value_bias_critic_mean": float(np.mean(vb["bias_mean_q"])),
                         "mc_return_mean": float(np.mean(vb["returns"])), "policy_kl_from_previous": kl,
                         "states": states, "horizon": horizon})
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "overestimation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "overestimation.json").write_text(json.dumps(rows, indent=1) + "\n")
    _plot(rows, out / "overestimation.png")
    return out / "overestimation.png"


def _plot(rows: list[dict], path: Path) -> None:
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4))
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        step = np.array([r["step"] for r in mine])
        label = f"{mine[0]['agent']}, β = {mine[0]['beta']:g} ({Path(run).parent.name}/{Path(run).name})"
        mean = np.array([r["value_bias_mean"] for r in mine])
        std = np.array([r["value_bias_std"] for r in mine])
        line, = left.plot(step, mean, marker="o", ms=3, label=label)
        left.fill_between(step, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        right.plot(step, [r["policy_kl_from_previous"] for r in mine], marker="o", ms=3, label=label)
    left.axhline(0, color="grey", lw=1)
    left.set_ylabel("Q estimate − Monte Carlo soft return")
    left.set_title("value bias")
    right.set_ylabel(r"$\mathrm{KL}(\pi_{\mathrm{previous}} \,\|\, \pi)$")
    right.set_yscale("log")
    right.set_title("policy change between snapshots")
    for ax in (left, right):
        steps_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    save_figure(fig, path)
