"""The agent: one state pytree, one jitted update, one jitted act.

`Agent` holds what is static (networks, policy optimizer, hyperparameters) and is hashable, so
it is passed to the jitted functions as a static argument; `AgentState` holds every array.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from iapo import precision, resolve
from iapo.config import AgentConfig
from iapo.dynamics import DynamicsModel, Rollouts, make_model_based_value
from iapo.networks import TwinCritic
from iapo.objective import MonteCarloObjective
from iapo.optimizers import PolicyOptimizer, make_policy_optimizer
from iapo.seeds import over_seeds

# Incremented each time `choose_action` is traced (a Python side effect runs only while tracing).
TRACE_COUNT = {"act": 0}


class Adam(NamedTuple):
    """The Adam transformations of the agent's parameters, one per learning rate."""
    policy: optax.GradientTransformation
    critic: optax.GradientTransformation
    alpha: optax.GradientTransformation
    model: optax.GradientTransformation


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
        separate = resolve.critic_layout(self.config) == "separate"
        return TwinCritic(tuple(self.config.critic_hidden_sizes), separate=separate,
                          weight_init=self.config.weight_init)

    @functools.cached_property
    def seed_mapping(self) -> str:
        """"vmap" or "map": the config's `seed_mapping` resolved on this backend (`seeds.over_seeds`)."""
        return resolve.seed_mapping(self.config)

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

    @functools.cached_property
    def rollouts(self) -> Rollouts:
        """The model-based value's rollouts (a model-based agent's)."""
        cfg = self.config
        return Rollouts(self.model, self.objective_critic.apply, self.optimizer, self.act_dim, cfg.horizon,
                        cfg.retrace_lambda, cfg.gamma, cfg.action_samples, cfg.pessimism_std)

    @property
    def model_based(self) -> bool:
        return self.config.value == "model-based"

    @functools.cached_property
    def adam(self) -> Adam:
        cfg = self.config
        return Adam(optax.adam(cfg.policy_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr),
                    optax.adam(cfg.model_lr))

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
            model_opt_state = self.adam.model.init(model_params)
        return AgentState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            log_alpha=log_alpha,
            policy_opt_state=self.adam.policy.init(policy_params),
            critic_opt_state=self.adam.critic.init(critic_params),
            alpha_opt_state=self.adam.alpha.init(log_alpha),
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
            action_value = make_model_based_value(
                self.rollouts, state.model_params, self.objective_critic_params(state), state.policy_params,
                jnp.exp(state.log_alpha), obs, jax.random.PRNGKey(0) if key is None else key, beta)
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


def choose_action(
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


act = jax.jit(choose_action, static_argnames=("agent", "deterministic", "iterations"))


@functools.partial(jax.jit, static_argnames=("agent", "deterministic", "iterations"))
def act_seeds(agent: Agent, state: AgentState, obs: jax.Array, key: jax.Array, deterministic: bool = False,
              iterations: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Actions ([S,] B, d) for states ([S,] B, obs_dim), and the next keys ([S,] 2)."""
    fn = functools.partial(choose_action, agent, deterministic=deterministic, iterations=iterations)
    return over_seeds(agent.seed_mapping, fn, state, obs, key)
