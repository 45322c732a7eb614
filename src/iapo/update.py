"""One training update, composed of small pure steps, each `(agent, state, ...) -> (state, info)`:

0. `model_step`: the learned model of a model-based agent, on the same batch;
1. `critic_step`: the critics regress onto `critic_target` (Eq. 8 with Q̂ of Eq. 13);
2. `policy_step`: the policy optimizer descends −J, averaged over the iterates for the iterative
   optimizer (Eq. 11–12) or at f_φ(s) for the direct one (Eq. 10);
3. `temperature_step`: log α descends −α (KL − target KL);
4. `target_step`: Polyak averaging of the target critics (and an optional full copy).

`update` composes them; `pretrain_model_seeds` runs model steps alone before the first update.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from iapo import distributions as dist
from iapo.agent import Agent, AgentState
from iapo.dynamics import model_loss
from iapo.objective import pessimistic_value
from iapo.replay import Batch
from iapo.seeds import over_seeds

sg = jax.lax.stop_gradient

# Incremented each time `update` is traced (a Python side effect runs only while tracing).
TRACE_COUNT = {"update": 0}


def critic_target(agent: Agent, state: AgentState, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + γ (1 − terminated) [Q̂_target(s′, a′) − α KL(a′)], a′ ~ π_λ′ with λ′ the policy
    optimizer's output at s′ (Eq. 8, 13): (B,), a constant for the critics."""
    k_opt, k_sample = jax.random.split(key)
    k_model = jax.random.fold_in(k_opt, 1)
    lam_next, _ = agent.optimizer.optimize(
        state.policy_params, batch.next_obs, agent.objective(state, batch.next_obs, k_model), k_opt
    )
    return soft_target(agent, state, batch, lam_next, k_sample)


def soft_target(agent: Agent, state: AgentState, batch: Batch, lam_next: jax.Array, key: jax.Array) -> jax.Array:
    """`critic_target` from the distribution parameters λ′ (B, 2d) at s′ on: one action a′ ~ π_λ′
    drawn with `key`."""
    cfg = agent.config
    a_next, log_pi = agent.optimizer.sample(state.policy_params, batch.next_obs, lam_next, key)  # (B, d), (B,)
    q_next = pessimistic_value(
        agent.critic.apply(state.target_critic_params, batch.next_obs, a_next), cfg.beta, cfg.pessimism_std
    )
    soft_value = q_next - jnp.exp(state.log_alpha) * dist.kl_sample(log_pi, agent.act_dim)
    return sg(batch.reward + cfg.gamma * (1.0 - batch.terminated) * soft_value)


def critic_loss(critic_params, agent: Agent, batch: Batch, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Σ_i ½ (Q_i(s, a) − y)², mean over the batch; and the mean Q."""
    q = agent.critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    loss = jnp.mean(jnp.sum(0.5 * (q - target) ** 2, axis=0))
    return loss, jnp.mean(q)


def critic_step(agent: Agent, state: AgentState, batch: Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """One Adam step of the twin critics towards `critic_target`."""
    return fit_critics(agent, state, batch, critic_target(agent, state, batch, key))


def fit_critics(agent: Agent, state: AgentState, batch: Batch, target: jax.Array) -> tuple[AgentState, dict]:
    """One Adam step of the twin critics towards the targets `target` (B,)."""
    (loss, q_mean), grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic_params, agent, batch, target)
    updates, opt_state = agent.adam.critic.update(grads, state.critic_opt_state)
    params = optax.apply_updates(state.critic_params, updates)
    return state.replace(critic_params=params, critic_opt_state=opt_state), {"critic_loss": loss, "q_mean": q_mean}


def apply_policy_gradient(agent: Agent, state: AgentState, grads) -> AgentState:
    """One Adam step of the policy optimizer's parameters along the loss gradient `grads`."""
    updates, opt_state = agent.adam.policy.update(grads, state.policy_opt_state)
    params = optax.apply_updates(state.policy_params, updates)
    return state.replace(policy_params=params, policy_opt_state=opt_state)


def policy_step(agent: Agent, state: AgentState, batch: Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """One Adam step of the policy optimizer on its loss at the batch's states, J read with the
    critics as they are now. `info["kl"]` is the policy's mean KL to the prior, a constant."""
    objective = agent.objective(state, batch.obs, jax.random.fold_in(key, 1))
    (loss, pinfo), grads = jax.value_and_grad(agent.optimizer.loss, has_aux=True)(
        state.policy_params, batch.obs, objective, key
    )
    per_iteration = pinfo["objective_per_iteration"]  # (K + 1,): J at λ_0 … λ_K (direct: (1,), J at λ)
    _, log_scale = dist.split(pinfo["lam"])
    info = {
        "policy_loss": loss,
        "kl": sg(jnp.mean(pinfo["kl"])),
        "policy_scale": jnp.mean(jnp.exp(log_scale)),
        "objective": per_iteration[-1],
        # Gain of the refinement iterations after the first (0 for the direct agent).
        "objective_improvement": per_iteration[-1] - per_iteration[min(1, per_iteration.shape[0] - 1)],
        "objective_per_iteration": per_iteration,
    }
    return apply_policy_gradient(agent, state, grads), info


def temperature_step(agent: Agent, state: AgentState, kl: jax.Array) -> tuple[AgentState, dict]:
    """One Adam step of log α on −α (KL − target KL), at the policy's KL `kl`; `info["alpha"]`
    is α before the step."""

    def loss(log_alpha):
        return -jnp.exp(log_alpha) * (kl - dist.target_kl(agent.act_dim))

    updates, opt_state = agent.adam.alpha.update(jax.grad(loss)(state.log_alpha), state.alpha_opt_state)
    log_alpha = optax.apply_updates(state.log_alpha, updates)
    return state.replace(log_alpha=log_alpha, alpha_opt_state=opt_state), {"alpha": jnp.exp(state.log_alpha)}


def target_step(agent: Agent, state: AgentState) -> tuple[AgentState, dict]:
    """Polyak averaging of the target critics towards the critics, and a full copy every
    `target_copy_every` updates (if set); counts the update."""
    cfg = agent.config
    updates = state.updates + 1
    targets = optax.incremental_update(state.critic_params, state.target_critic_params, cfg.tau)
    if cfg.target_copy_every > 0:
        copy = updates % cfg.target_copy_every == 0
        targets = jax.tree.map(lambda c, t: jnp.where(copy, c, t), state.critic_params, targets)
    return state.replace(target_critic_params=targets, updates=updates), {}


def model_step(agent: Agent, state: AgentState, batch: Batch) -> tuple[AgentState, dict]:
    """One Adam step of the model on a batch of transitions."""
    (loss, info), grads = jax.value_and_grad(model_loss, has_aux=True)(
        state.model_params, agent.model, batch.obs, batch.action, batch.reward, batch.next_obs
    )
    updates, opt_state = agent.adam.model.update(grads, state.model_opt_state)
    params = optax.apply_updates(state.model_params, updates)
    return state.replace(model_params=params, model_opt_state=opt_state), {"model_loss": loss, **info}


def all_finite(state: AgentState, info: dict) -> jax.Array:
    """Whether the losses, the temperature and the critics' and policy's parameters are finite."""
    finite = jnp.isfinite(info["critic_loss"]) & jnp.isfinite(info["policy_loss"]) & jnp.isfinite(state.log_alpha)
    for leaf in jax.tree.leaves((state.critic_params, state.policy_params)):
        finite &= jnp.all(jnp.isfinite(leaf))
    return finite


def update(agent: Agent, state: AgentState, batch: Batch) -> tuple[AgentState, dict]:
    """One training update: model (if any), critics, policy optimizer, temperature, targets."""
    TRACE_COUNT["update"] += 1
    key, k_target, k_policy = jax.random.split(state.key, 3)
    state = state.replace(key=key)
    model_info = {}
    if agent.model_based:
        state, model_info = model_step(agent, state, batch)
    state, critic_info = critic_step(agent, state, batch, k_target)
    state, policy_info = policy_step(agent, state, batch, k_policy)
    state, temperature_info = temperature_step(agent, state, policy_info["kl"])
    state, _ = target_step(agent, state)
    info = {**critic_info, **policy_info, **temperature_info, **model_info}
    info["finite"] = all_finite(state, info)
    return state, info


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def pretrain_model_seeds(agent: Agent, state: AgentState, batches: Batch) -> tuple[AgentState, jax.Array]:
    """Model updates before the first agent update: `batches` has leading axes ([S,] U, B, ...),
    U updates for each seed. Returns the state and the last update's loss ([S],)."""

    def one_seed(state, batches):
        def body(state, batch):
            state, info = model_step(agent, state, batch)
            return state, info["model_loss"]

        state, losses = jax.lax.scan(body, state, batches)
        return state, losses[-1]

    return over_seeds(agent.seed_mapping, one_seed, state, batches)
