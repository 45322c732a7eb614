"""Issue 37, item 4: the iterative agent's two runs of its optimizer in one scan, measured.

    python benchmarks/merged_iterations.py [--env Hopper-v5 ...] [--rounds 5] [--repeats 6]
                                           [--action-samples 10] [--iterations 5] [--batch 256]

An update of the iterative agent runs its optimizer twice, K iterations each: at s′ for the critics'
target (Eq. 13) and at s for the policy loss (Eq. 11). With J read through the target critics (the
default `objective_critics: target`, as in the reference code), both runs read the same
parameters: the target critics and the temperature change only after the policy step, and the
policy's parameters after its gradient. So the two runs can be one scan over the 2B states
[s′; s], each half drawing the very samples it draws in `update.update` (the same keys), with
multiplies twice as tall and half as many sequential iterations. This script builds that form of
the update, checks that it gives the same new state as `update.update` (up to float rounding), and
times both side by side (losses compared over three updates), interleaved, at a task's shapes (random transitions, float32, batch 256,
2x256 networks). It prints one JSON line per task.

On a 2-core CPU the one scan is slower (see docs/benchmarks.md, issue 37 item 4), so the library
keeps two; `benchmarks/gpu.sh` measures it on a GPU, where the sequential iterations, not the
multiplies' size, may bound the update.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent, AgentState
from iapo.config import AgentConfig
from iapo.objective import MonteCarloObjective, value_and_grad
from iapo.replay import Batch
from iapo.update import all_finite, apply_policy_gradient, fit_critics, soft_target, target_step, temperature_step, update

from hopper_batch import random_batch
from update_cost import machine

sg = jax.lax.stop_gradient


class HalvesObjective(MonteCarloObjective):
    """J at the 2B states [s′; s], each half drawing its noise with its own key: `key` is a pair of
    keys (2, 2), so the samples are those of two separate calls on B states each."""

    def __call__(self, lam, keys):
        half = lam.shape[0] // 2
        d = lam.shape[-1] // 2
        eps = jnp.concatenate([jax.random.normal(k, (self.n_samples, half, d), lam.dtype) for k in keys], axis=1)
        values, aux = self.integrand(lam, eps)  # (N, 2B)
        return jnp.mean(values, axis=0), {k: jnp.mean(v, axis=0) for k, v in aux.items()}


def merged_update(agent: Agent, state: AgentState, batch: Batch):
    """`update.update` for the model-free iterative agent with J on the target critics, its two
    optimizer runs (at s′ and at s) as one scan over [s′; s]."""
    cfg, opt = agent.config, agent.optimizer
    key, k_target, k_policy = jax.random.split(state.key, 3)
    state = state.replace(key=key)
    k_opt, k_sample = jax.random.split(k_target)  # as update.critic_target
    key_iter, key_last = jax.random.split(k_policy)  # as IterativeOptimizer.loss
    keys = jnp.stack([jax.random.split(k_opt, opt.iterations), jax.random.split(key_iter, opt.iterations)], 1)
    half = batch.obs.shape[0]
    obs2 = jnp.concatenate([batch.next_obs, batch.obs])  # (2B, obs_dim)
    objective2 = HalvesObjective(agent.objective_critic.apply, agent.objective_critic_params(state), obs2,
                                 jnp.exp(state.log_alpha), cfg.beta, cfg.action_samples, std=cfg.pessimism_std)
    objective = agent.objective(state, batch.obs)

    def policy_loss(params):
        def body(lam, k):
            new_lam, (surrogate, aux) = opt.step(params, obs2, objective2, lam, k)
            return new_lam, surrogate

        lam2, js = jax.lax.scan(body, opt.initial_lam(2 * half), keys, unroll=opt.iterations if opt.unroll else 1)  # (2B, 2d), (K, 2B)
        lam_next, lam = sg(lam2[:half]), lam2[half:]
        j_last, aux, grad = value_and_grad(objective, sg(lam), key_last)
        j_last = j_last + jnp.sum((lam - sg(lam)) * grad, axis=-1)
        js = js[:, half:]
        j_train = j_last if opt.final_iterate_loss else jnp.concatenate([js[1:], j_last[None]], axis=0)
        return -jnp.mean(j_train), (lam_next, aux["kl"])

    (p_loss, (lam_next, kl)), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(state.policy_params)
    # the critics' step, its target from the s′ half (update.critic_target from λ′ on), then the policy's
    state, c_info = fit_critics(agent, state, batch, soft_target(agent, state, batch, lam_next, k_sample))
    state = apply_policy_gradient(agent, state, p_grads)
    state, t_info = temperature_step(agent, state, sg(jnp.mean(kl)))
    state, _ = target_step(agent, state)
    info = {**c_info, "policy_loss": p_loss, **t_info}
    info["finite"] = all_finite(state, info)
    return state, info


def compare(env: str, samples: int, iterations: int, rounds: int, repeats: int, batch_size: int = 256) -> dict:
    spaces = gym.make(env)
    obs_dim, act_dim = spaces.observation_space.shape[0], spaces.action_space.shape[0]
    spaces.close()
    config = AgentConfig(agent="iterative", action_samples=samples, iterations=iterations,
                         matmul_precision="float32")
    assert config.objective_critics == "target" and config.value == "model-free"
    agent = Agent(config, obs_dim, act_dim)
    batch = random_batch(0, obs_dim, act_dim, batch_size)
    forms = {"two scans": jax.jit(update, static_argnums=0, donate_argnums=1),
             "one scan": jax.jit(merged_update, static_argnums=0, donate_argnums=1)}
    states = {name: agent.init(jax.random.PRNGKey(0)) for name in forms}
    # The same numbers: the losses of three updates from the same state and batch. (Parameters are
    # not compared: Adam's first steps are about lr * sign(gradient), so a gradient entry near 0
    # that rounds to the other sign moves its parameter by up to 2 lr.)
    losses = {name: [] for name in forms}
    for name, fn in forms.items():
        for _ in range(3):
            states[name], info = fn(agent, states[name], batch)
            losses[name].append([float(info[k]) for k in ("critic_loss", "policy_loss", "q_mean", "alpha")])
        jax.block_until_ready(states[name])
    a, b = np.array(losses["two scans"]), np.array(losses["one scan"])
    max_rel_diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6)))
    times = {name: [] for name in forms}
    for _ in range(rounds):  # interleaved, so that both see the same load
        for name, fn in forms.items():
            start = time.perf_counter()
            for _ in range(repeats):
                states[name], _ = fn(agent, states[name], batch)
            jax.block_until_ready(states[name])
            times[name].append((time.perf_counter() - start) / repeats * 1e3)
    ms = {name: statistics.median(t) for name, t in times.items()}
    return {"env": env, "obs_dim": obs_dim, "act_dim": act_dim, "action_samples": samples, "iterations": iterations,
            "batch": batch_size,
            "ms_two_scans": round(ms["two scans"], 2), "ms_one_scan": round(ms["one scan"], 2),
            "speedup": round(ms["two scans"] / ms["one scan"], 3),
            "losses_max_rel_diff": max_rel_diff,
            "machine": machine(), "jax": jax.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=["Hopper-v5"])
    parser.add_argument("--action-samples", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    for env in args.env:
        print(json.dumps(compare(env, args.action_samples, args.iterations, args.rounds, args.repeats, args.batch)),
              flush=True)


if __name__ == "__main__":
    main()
