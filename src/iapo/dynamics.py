"""Model-based value estimates (paper Sec. 4.2.5, Fig. 9; appendix A.5).

A learned deterministic model predicts the change of state and the reward of (s, a). The
model-based action value mixes the critics' estimate with H-step model rollouts that follow the
agent's own policy, each bootstrapped with the pessimistic critics (Eq. 13):

    G_n = sum_{t<n} gamma^t r_t - alpha sum_{1<=t<=n} gamma^t KL_t + gamma^n Q(s_n, a_n),   n = 1..H
    Q_MB(s, a_0) = Q(s, a_0) + sum_{t<H} (gamma l)^t delta_t
                 = (1 - l) sum_{1<=n<H} l^(n-1) G_n + l^(H-1) G_H,

with delta_t = r_t + gamma (Q(s_{t+1}, a_{t+1}) - alpha KL_{t+1}) - Q(s_t, a_t) the soft TD errors
along the rollout, s_{t+1} = s_t + Delta(s_t, a_t) and r_t from the model, a_t ~ pi(s_t) for t >= 1
and KL_t its single-sample KL to the prior. This is Retrace with every trace coefficient c = l
(reference 0.9), as the model rollouts are on-policy: the first TD error has weight 1, so the
critics' own Q(s, a_0) cancels and only the rollouts' returns G_1..G_H remain. H = 0 gives the
model-free value. The model does not predict termination: rollouts never stop early.

The rollout policy at a predicted state is the agent's own policy optimizer acting on the
model-free objective there (so the estimate is not recursive); it and the model are constants
for the policy objective, whose gradient with respect to a_0 flows through Q(s, a_0), the
model's reward and the predicted states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from iapo import distributions as dist
from iapo.networks import PairDense
from iapo.objective import make_objective, pessimistic_value

sg = jax.lax.stop_gradient


class LayerNormMLP(nn.Module):
    """Dense -> LayerNorm -> leaky ReLU per hidden layer, then a linear output (reference model)."""

    hidden_sizes: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """On the concatenation [x, y]; x may have fewer leading axes than y (`PairDense`)."""
        for i, width in enumerate(self.hidden_sizes):
            x = PairDense(width, name="Dense_0")(x, y) if i == 0 else nn.Dense(width, name=f"Dense_{i}")(x)
            x = nn.leaky_relu(nn.LayerNorm(name=f"LayerNorm_{i}")(x))
        return nn.Dense(self.out_dim, name=f"Dense_{len(self.hidden_sizes)}")(x)


class DynamicsModel(nn.Module):
    """(s, a) -> (predicted s' - s (..., obs_dim), predicted reward (...)): two networks. The
    states may have fewer leading axes than the actions (s (B, obs_dim), a (M, B, d)): their part
    of the first layers is then computed once per state."""

    hidden_sizes: Sequence[int]
    obs_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        delta = LayerNormMLP(self.hidden_sizes, self.obs_dim, name="state")(obs, action)
        reward = LayerNormMLP(self.hidden_sizes, 1, name="reward")(obs, action)[..., 0]
        return delta, reward


def model_loss(model_params, model: DynamicsModel, obs, action, reward, next_obs) -> tuple[jax.Array, dict]:
    """Squared error of the predicted change of state (summed over its dimensions) and of the
    predicted reward, batch means."""
    delta, r = model.apply(model_params, obs, action)
    state_loss = jnp.mean(jnp.sum((delta - (next_obs - obs)) ** 2, axis=-1))
    reward_loss = jnp.mean((r - reward) ** 2)
    return state_loss + reward_loss, {"model_state_loss": state_loss, "model_reward_loss": reward_loss}


def lambda_return_weights(horizon: int, trace: float) -> list[float]:
    """Weights of G_0 .. G_H (Retrace with traces l): G_0 alone for H = 0; otherwise 0 for G_0,
    (1 - l) l^(n-1) for 1 <= n < H and l^(H-1) for G_H. They sum to 1."""
    if horizon == 0:
        return [1.0]
    return [0.0] + [(1.0 - trace) * trace ** (n - 1) for n in range(1, horizon)] + [trace ** (horizon - 1)]


@dataclasses.dataclass(frozen=True)
class Rollouts:
    """What the model-based value's rollouts are made of: the model, the critics (as evaluated
    inside J) and the policy optimizer that acts at predicted states, and their settings."""

    model: DynamicsModel
    critic_apply: Callable  # (params, obs, actions) -> (2, ...) the twin critics
    optimizer: Any  # the agent's policy optimizer (optimize, sample)
    act_dim: int
    horizon: int  # H
    trace: float  # Retrace's l
    gamma: float
    action_samples: int  # N of the rollout policy's objective
    pessimism_std: str


def make_model_based_value(rollouts: Rollouts, model_params, critic_params, policy_params, alpha: jax.Array,
                           obs: jax.Array, key: jax.Array, beta: float):
    """value(actions (M, B, d), log_pi (M, B)) -> (Q_MB - alpha KL (M, B), aux): the integrand of
    J with the model-based action value at states `obs` (B, obs_dim), the critics' estimates
    (and the rollout policy's objective) with pessimism `beta`. Every parameter is a constant."""
    cfg = rollouts
    alpha = sg(alpha)
    critic_params = sg(critic_params)
    policy_params = sg(policy_params)
    model_params = sg(model_params)
    act_dim = cfg.act_dim

    def q_hat(s, a):
        return pessimistic_value(cfg.critic_apply(critic_params, s, a), beta, cfg.pessimism_std)

    def rollout_action(s: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
        """a ~ pi(s) and its KL, for predicted states s (..., obs_dim), all held constant."""
        flat = s.reshape(-1, s.shape[-1])
        k_opt, k_sample = jax.random.split(k)
        objective = make_objective(cfg.critic_apply, critic_params, flat, alpha, beta, cfg.action_samples,
                                   cfg.pessimism_std)
        lam, _ = cfg.optimizer.optimize(policy_params, flat, objective, k_opt)
        a, log_pi = cfg.optimizer.sample(policy_params, flat, sg(lam), k_sample)
        return sg(a).reshape(*s.shape[:-1], act_dim), sg(dist.kl_sample(log_pi, act_dim)).reshape(s.shape[:-1])

    weights = lambda_return_weights(cfg.horizon, cfg.trace)

    def value(actions: jax.Array, log_pi: jax.Array) -> tuple[jax.Array, dict]:
        q_mb = weights[0] * q_hat(obs, actions) if weights[0] else 0.0  # G_0, used only for H = 0
        ret, discount, s, a = jnp.zeros(actions.shape[:-1]), 1.0, obs, actions
        for t, k in enumerate(jax.random.split(key, cfg.horizon)):
            delta, r = cfg.model.apply(model_params, s, a)  # at t = 0, s (B, obs_dim) is shared by the samples
            s = s + delta  # (M, B, obs_dim)
            ret = ret + discount * r
            discount *= cfg.gamma
            a, kl = rollout_action(s, k)
            q_mb = q_mb + weights[t + 1] * (ret + discount * (q_hat(s, a) - alpha * kl))  # G_{t+1}
            ret = ret - discount * alpha * kl
        kl0 = dist.kl_sample(log_pi, act_dim)
        return q_mb - alpha * kl0, {"q": q_mb, "kl": kl0}

    return value
