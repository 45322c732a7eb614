"""The agent: one state pytree, one jitted update, one jitted act.

`Agent` holds what is static (networks, policy optimizer, hyperparameters) and is hashable, so
it is passed to the jitted functions as a static argument; `AgentState` holds every array.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from iapo import distributions as dist
from iapo import precision
from iapo.config import AgentConfig
from iapo.model import DynamicsModel, make_model_based_value, model_loss
from iapo.networks import TwinCritic
from iapo.objective import MonteCarloObjective, pessimistic_value
from iapo.optimizers import PolicyOptimizer, make_policy_optimizer

sg = jax.lax.stop_gradient

# Incremented each time `update` is traced (a Python side effect runs only while tracing).
TRACE_COUNT = {"update": 0, "act": 0}


class AgentState(flax.struct.PyTreeNode):
    policy_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array
    updates: jax.Array  # number of updates done, int32
    model_params: dict  # the learned model of a model-based agent; {} otherwise
    model_opt_state: optax.OptState


class Batch(flax.struct.PyTreeNode):
    obs: jax.Array  # (B, obs_dim)
    action: jax.Array  # (B, d) in (-1, 1)
    reward: jax.Array  # (B,)
    next_obs: jax.Array  # (B, obs_dim)
    terminated: jax.Array  # (B,) 1.0 where the episode truly ended (no bootstrap)


@dataclasses.dataclass(frozen=True)
class Agent:
    config: AgentConfig
    obs_dim: int
    act_dim: int

    @functools.cached_property
    def optimizer(self) -> PolicyOptimizer:
        return make_policy_optimizer(self.config, self.act_dim)

    @functools.cached_property
    def critic(self) -> TwinCritic:
        """The twin critics, float32: their TD regression and targets."""
        layout = self.config.critic_layout
        if layout == "auto":
            layout = "separate" if self.config.agent == "iterative" and jax.default_backend() == "cpu" else "ensemble"
        return TwinCritic(tuple(self.config.critic_hidden_sizes), separate=layout == "separate")

    @functools.cached_property
    def seed_mapping(self) -> str:
        """"vmap" or "map": the config's `seed_mapping` resolved on this backend (`_over_seeds`)."""
        return resolve_seed_mapping(self.config)

    @functools.cached_property
    def matmul_precision(self) -> str:
        """"float32" or "bfloat16": the config's `matmul_precision` resolved on this backend."""
        return precision.resolve(self.config.matmul_precision)

    @functools.cached_property
    def objective_critic(self) -> TwinCritic:
        """The same critics (same parameters) as evaluated inside J, in `matmul_precision`."""
        if self.matmul_precision == "float32":
            return self.critic
        return self.critic.clone(bf16_hidden=True)

    @functools.cached_property
    def model(self) -> DynamicsModel:
        return DynamicsModel(tuple(self.config.model_hidden_sizes), self.obs_dim)

    @property
    def model_based(self) -> bool:
        return self.config.value == "model-based"

    def _adam(self, lr: float) -> optax.GradientTransformation:
        return optax.adam(lr)

    def init(self, key: jax.Array) -> AgentState:
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)  # raw uint32 keys serialize into checkpoints
        k_policy, k_critic, k_model, key = jax.random.split(key, 4)
        policy_params = self.optimizer.init(k_policy, self.obs_dim)
        critic_params = self.critic.init(
            k_critic, jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.act_dim))
        )
        log_alpha = jnp.asarray(math.log(self.config.init_alpha), jnp.float32)
        model_params, model_opt_state = {}, {}
        if self.model_based:
            model_params = self.model.init(k_model, jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.act_dim)))
            model_opt_state = self._adam(self.config.model_lr).init(model_params)
        return AgentState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            log_alpha=log_alpha,
            policy_opt_state=self._adam(self.config.policy_lr).init(policy_params),
            critic_opt_state=self._adam(self.config.critic_lr).init(critic_params),
            alpha_opt_state=self._adam(self.config.alpha_lr).init(log_alpha),
            key=key,
            updates=jnp.zeros((), jnp.int32),
            model_params=model_params,
            model_opt_state=model_opt_state,
        )

    def objective_critic_params(self, state: AgentState):
        """The critics that J uses for policy optimization (`objective_critics`)."""
        if self.config.objective_critics == "target":
            return state.target_critic_params
        return state.critic_params

    def objective(self, state: AgentState, obs: jax.Array, key: jax.Array | None = None, *,
                  beta: float | None = None, n_samples: int | None = None) -> MonteCarloObjective:
        """J(lambda; s) at the states `obs` with the agent's critics and temperature, pessimism
        `beta` (unset: the training beta; acting uses `config.acting_beta`) and `n_samples`
        actions per state (unset: `action_samples`); for a model-based agent, with the
        model-based action value, whose rollouts draw on `key` (unset: a fixed key, the same
        rollouts at every call)."""
        cfg = self.config
        beta = cfg.beta if beta is None else beta
        action_value = None  # model-free
        if self.model_based:
            action_value = make_model_based_value(self, state, obs, jax.random.PRNGKey(0) if key is None else key, beta)
        return MonteCarloObjective(
            self.objective_critic.apply,
            self.objective_critic_params(state),
            obs,
            jnp.exp(state.log_alpha),
            beta,
            n_samples or cfg.action_samples,
            action_value,
            std=cfg.pessimism_std,
        )


def _critic_target(agent: Agent, state: AgentState, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + gamma (1 - terminated) [Q_target(s', a') - alpha KL(a')], a' ~ pi_{lambda'} (Eq. 8, 13)."""
    cfg = agent.config
    k_opt, k_sample = jax.random.split(key)
    k_model = jax.random.fold_in(k_opt, 1)
    lam_next, _ = agent.optimizer.optimize(
        state.policy_params, batch.next_obs, agent.objective(state, batch.next_obs, k_model), k_opt
    )
    a_next, log_pi = agent.optimizer.sample(state.policy_params, batch.next_obs, lam_next, k_sample)  # (B, d), (B,)
    q_next = pessimistic_value(
        agent.critic.apply(state.target_critic_params, batch.next_obs, a_next), cfg.beta, cfg.pessimism_std
    )
    soft_value = q_next - jnp.exp(state.log_alpha) * dist.kl_sample(log_pi, agent.act_dim)
    return sg(batch.reward + cfg.gamma * (1.0 - batch.terminated) * soft_value)


def _critic_loss(critic_params, agent: Agent, batch: Batch, target: jax.Array):
    """sum_i 1/2 (Q_i(s, a) - y)^2, mean over the batch."""
    q = agent.critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
    loss = jnp.mean(jnp.sum(0.5 * (q - target) ** 2, axis=0))
    return loss, jnp.mean(q)


def _update(agent: Agent, state: AgentState, batch: Batch) -> tuple[AgentState, dict]:
    """One training update: critic targets, critics, policy optimizer, temperature, targets."""
    TRACE_COUNT["update"] += 1
    cfg = agent.config
    key, k_target, k_policy = jax.random.split(state.key, 3)
    k_model = jax.random.fold_in(k_policy, 1)  # (a model-based J's rollouts; the other keys as before)
    model_info = {}
    if agent.model_based:  # 0. The model, on the same batch.
        state, model_info = _model_step(agent, state, batch)

    # 1-2. Critics.
    target = _critic_target(agent, state, batch, k_target)
    (critic_loss, q_mean), critic_grads = jax.value_and_grad(_critic_loss, has_aux=True)(
        state.critic_params, agent, batch, target
    )
    critic_updates, critic_opt_state = agent._adam(cfg.critic_lr).update(
        critic_grads, state.critic_opt_state
    )
    critic_params = optax.apply_updates(state.critic_params, critic_updates)
    state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)

    # 3. Policy optimizer: -J averaged over iterates (iterative) or -J(f_phi(s)) (direct).
    objective = agent.objective(state, batch.obs, k_model)
    (policy_loss, pinfo), policy_grads = jax.value_and_grad(agent.optimizer.loss, has_aux=True)(
        state.policy_params, batch.obs, objective, k_policy
    )
    policy_updates, policy_opt_state = agent._adam(cfg.policy_lr).update(
        policy_grads, state.policy_opt_state
    )
    policy_params = optax.apply_updates(state.policy_params, policy_updates)

    # 4. Temperature: log alpha minimizes -alpha (KL - target KL).
    kl = sg(jnp.mean(pinfo["kl"]))

    def alpha_loss_fn(log_alpha):
        return -jnp.exp(log_alpha) * (kl - dist.target_kl(agent.act_dim))

    alpha_grad = jax.grad(alpha_loss_fn)(state.log_alpha)
    alpha_updates, alpha_opt_state = agent._adam(cfg.alpha_lr).update(
        alpha_grad, state.alpha_opt_state
    )
    log_alpha = optax.apply_updates(state.log_alpha, alpha_updates)

    # 5. Targets: Polyak averaging, and optionally a full copy every `target_copy_every` updates.
    updates = state.updates + 1
    targets = optax.incremental_update(critic_params, state.target_critic_params, cfg.tau)
    if cfg.target_copy_every > 0:
        copy = updates % cfg.target_copy_every == 0
        targets = jax.tree.map(lambda c, t: jnp.where(copy, c, t), critic_params, targets)

    finite = jnp.isfinite(critic_loss) & jnp.isfinite(policy_loss) & jnp.isfinite(log_alpha)
    for leaf in jax.tree.leaves((critic_params, policy_params)):
        finite &= jnp.all(jnp.isfinite(leaf))
    per_iteration = pinfo["objective_per_iteration"]
    _, log_scale = dist.split(pinfo["lam"])
    info = {
        "critic_loss": critic_loss,
        "policy_loss": policy_loss,
        "alpha": jnp.exp(state.log_alpha),
        "kl": kl,
        "q_mean": q_mean,
        "policy_scale": jnp.mean(jnp.exp(log_scale)),
        "objective": per_iteration[-1],
        # Gain of the refinement iterations after the first (0 for the direct agent).
        "objective_improvement": per_iteration[-1] - per_iteration[min(1, per_iteration.shape[0] - 1)],
        "objective_per_iteration": per_iteration,
        "finite": finite,  # losses, temperature and parameters all finite
        **model_info,
    }
    new_state = state.replace(
        policy_params=policy_params,
        policy_opt_state=policy_opt_state,
        log_alpha=log_alpha,
        alpha_opt_state=alpha_opt_state,
        target_critic_params=targets,
        key=key,
        updates=updates,
    )
    return new_state, info


def _model_step(agent: Agent, state: AgentState, batch: Batch) -> tuple[AgentState, dict]:
    """One Adam step of the model on a batch of transitions."""
    (loss, info), grads = jax.value_and_grad(model_loss, has_aux=True)(
        state.model_params, agent.model, batch.obs, batch.action, batch.reward, batch.next_obs
    )
    updates, opt_state = agent._adam(agent.config.model_lr).update(grads, state.model_opt_state)
    params = optax.apply_updates(state.model_params, updates)
    return state.replace(model_params=params, model_opt_state=opt_state), {"model_loss": loss, **info}


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def pretrain_model_seeds(agent: Agent, state: AgentState, batches: Batch) -> tuple[AgentState, jax.Array]:
    """Model updates before the first agent update: `batches` has leading axes ([S,] U, B, ...),
    U updates for each seed. Returns the state and the last update's loss ([S],)."""

    def one_seed(state, batches):
        def body(state, batch):
            state, info = _model_step(agent, state, batch)
            return state, info["model_loss"]

        state, losses = jax.lax.scan(body, state, batches)
        return state, losses[-1]

    return _over_seeds(agent, one_seed, state, batches)


def _act(
    agent: Agent,
    state: AgentState,
    obs: jax.Array,
    key: jax.Array,
    deterministic: bool = False,
    iterations: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Actions (B, d) in (-1, 1) for states (B, obs_dim), and the next acting key.

    Stochastic a ~ pi_lambda for training; tanh(mu) when `deterministic` (evaluation). The
    iterative optimizer runs `iterations` (default: the training K) using the critics, on the
    objective with the acting pessimism (`config.acting_beta`), in training and evaluation alike.
    """
    TRACE_COUNT["act"] += 1
    key, k_opt, k_sample = jax.random.split(key, 3)
    k_model = jax.random.fold_in(k_opt, 1)
    obs = obs.astype(jnp.float32)
    objective = agent.objective(state, obs, k_model, beta=agent.config.acting_beta)
    lam, _ = agent.optimizer.optimize(state.policy_params, obs, objective, k_opt, iterations)
    if deterministic:
        return agent.optimizer.mode(state.policy_params, obs, lam), key
    action, _ = agent.optimizer.sample(state.policy_params, obs, lam, k_sample)
    return action, key


act = jax.jit(_act, static_argnames=("agent", "deterministic", "iterations"))


def resolve_seed_mapping(config: AgentConfig) -> str:
    """`config.seed_mapping` on this backend: auto is `map` for the agents that iterate on the
    policy on a CPU, where their seeds' updates ran faster one after the other than vmapped
    (benchmarks/update_variants.py --seeds 2, benchmarks/throughput.py), else `vmap`."""
    if config.seed_mapping != "auto":
        return config.seed_mapping
    iterates = config.agent in ("iterative", "gradient", "cem")
    return "map" if iterates and jax.default_backend() == "cpu" else "vmap"


# Independent seeds trained together. A state whose arrays have a leading seed axis (S, ...)
# (`state.updates` has shape (S,)) is updated, or acted for, by one compiled call, and then every
# other argument has that axis too; a lone seed's state has no seed axis and is not mapped.
# (On XLA:CPU a vmap of size 1 leaves batched dots and layout copies behind: the direct update
# ran 1.13x as long through it as unbatched; benchmarks/update_variants.py. Slicing the axis
# away inside the compiled call instead changes the rounding of some updates: a lone seed's run
# would no longer equal the same run of an earlier version.) `SeedAxis` (below) is the one place
# on the host that holds a lone seed's arrays without the axis.
def _over_seeds(agent: Agent, fn, state: AgentState, *args):
    """fn(state, *args) for each seed: vmapped, or one seed after the other (`lax.map`: each seed
    runs a lone seed's unbatched computations), as `agent.seed_mapping` says."""
    if state.updates.ndim == 0:
        return fn(state, *args)
    if agent.seed_mapping == "map":
        return jax.lax.map(lambda xs: fn(*xs), (state, *args))
    return jax.vmap(fn)(state, *args)


@dataclasses.dataclass(frozen=True)
class SeedAxis:
    """How S seeds' arrays are held for the compiled calls: on a leading seed axis, or, for one
    seed, without it (see `_over_seeds`). The training loop builds and reads every per-seed array
    with the axis and passes it through `native` on the way in and `with_axis` on the way out."""

    seeds: int

    @property
    def mapped(self) -> bool:
        return self.seeds > 1

    def stack(self, trees: list):
        """The seeds' pytrees (one each) in the compiled calls' form."""
        if not self.mapped:
            return trees[0]
        return jax.tree.map(lambda *xs: np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs), *trees)

    def native(self, tree):
        """A pytree with the seed axis (S, ...) in the compiled calls' form (host arrays: a view)."""
        return tree if self.mapped else jax.tree.map(lambda x: x[0], tree)

    def with_axis(self, tree):
        """A pytree in the compiled calls' form, on the host, with the seed axis (S, ...)."""
        return tree if self.mapped else jax.tree.map(lambda x: np.asarray(x)[None], tree)

    def take(self, tree, i: int):
        """Seed i's part of a pytree in the compiled calls' form."""
        return jax.tree.map(lambda x: x[i], tree) if self.mapped else tree


@functools.partial(jax.jit, static_argnames=("agent", "deterministic", "iterations"))
def act_seeds(agent: Agent, state: AgentState, obs: jax.Array, key: jax.Array, deterministic: bool = False,
              iterations: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Actions ([S,] B, d) for states ([S,] B, obs_dim), and the next keys ([S,] 2)."""
    fn = functools.partial(_act, agent, deterministic=deterministic, iterations=iterations)
    return _over_seeds(agent, fn, state, obs, key)
