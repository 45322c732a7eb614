"""The policy objective J(lambda; s) = E_pi[Q(s, a)] - alpha KL(pi || p) (Eq. 8) and its gradient.

Q is the pessimistic estimate over the critic ensemble (Eq. 13). The prior p is uniform on
(-1, 1)^d, so the per-sample KL estimate is log pi(a) + d log 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from iapo import distributions as dist

# objective(lam (B, 2d), key) -> (J (B,), aux dict of (B,) arrays)
Objective = Callable[[jax.Array, jax.Array], tuple[jax.Array, dict]]


def pessimistic_value(q: jax.Array, beta: float | jax.Array, std: str = "biased") -> jax.Array:
    """Eq. 13: mean - beta * std over the leading ensemble axis of q (n, ...).

    `std="biased"` (the paper's text) divides the squared deviations by n, `"unbiased"` (the
    reference code, torch's default) by n - 1. For two critics, mean = min + |Q1 - Q2| / 2 and
    the biased std is |Q1 - Q2| / 2, so the estimate is computed as
    min(Q1, Q2) + (1 - beta c) |Q1 - Q2| / 2 with c = 1 (biased) or sqrt(2) (unbiased): the same
    value, and biased beta = 1 gives min(Q1, Q2) to the last bit. Larger ensembles use
    mean - beta * std directly, with the variance floored at 1e-30 inside the square root so
    that equal critics give a zero gradient, not NaN.
    """
    n = q.shape[0]
    correction = 1.0 if std == "biased" else math.sqrt(n / (n - 1))
    if n == 2:
        half_gap = 0.5 * jnp.abs(q[0] - q[1])
        return jnp.minimum(q[0], q[1]) + (1.0 - beta * correction) * half_gap
    mean = jnp.mean(q, axis=0)
    var = jnp.mean((q - mean) ** 2, axis=0)
    return mean - beta * correction * jnp.sqrt(jnp.maximum(var, 1e-30))


def make_action_value(critic_apply: Callable, critic_params, obs: jax.Array, alpha: jax.Array, beta: float,
                      std: str = "biased"):
    """The integrand of J for given actions: value(actions (M, B, d), log_pi (M, B)) -> (values
    (M, B), aux), Q(s, a) - alpha (log pi(a) - log p(a)) with its q and kl parts in aux. Any
    policy with a log-density (a tanh-Gaussian, a flow) is scored by it."""
    alpha = jax.lax.stop_gradient(alpha)

    def value(actions: jax.Array, log_pi: jax.Array) -> tuple[jax.Array, dict]:
        # the states (B, obs_dim) against the actions (M, B, d): the critics' first layer computes
        # each state's part once for its M actions (`networks.PairDense`)
        q = pessimistic_value(critic_apply(critic_params, obs, actions), beta, std)  # (M, B)
        kl = dist.kl_sample(log_pi, actions.shape[-1])  # (M, B)
        return q - alpha * kl, {"q": q, "kl": kl}

    return value


class MonteCarloObjective:
    """J(lambda; s) at fixed states, critics and temperature (Eq. 8), estimated with `n_samples`
    reparameterized actions per state: `objective(lam (B, 2d), key) -> (J (B,), aux)`. It also
    carries its integrand (for CEM) and its value of given actions (for policies that are not
    tanh-Gaussian, such as the flow)."""

    def __init__(self, critic_apply: Callable, critic_params, obs: jax.Array, alpha: jax.Array, beta: float,
                 n_samples: int, action_value: Callable | None = None, std: str = "biased"):
        self.n_samples = n_samples
        # value(actions (M, B, d), log_pi (M, B)) -> (values (M, B), aux); model-free unless given
        self.action_value = action_value or make_action_value(critic_apply, critic_params, obs, alpha, beta, std)

    def integrand(self, lam: jax.Array, eps: jax.Array) -> tuple[jax.Array, dict]:
        """integrand(lam (B, 2d), eps (M, B, d)) -> (values (M, B), aux) at the actions
        a = tanh(mu + sigma eps)."""
        return self.action_value(*dist.sample_from_noise(lam, eps))

    def __call__(self, lam: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        eps = jax.random.normal(key, (self.n_samples, *lam.shape[:-1], lam.shape[-1] // 2), lam.dtype)
        values, aux = self.integrand(lam, eps)  # (N, B)
        return jnp.mean(values, axis=0), {k: jnp.mean(v, axis=0) for k, v in aux.items()}


def make_objective(
    critic_apply: Callable,
    critic_params,
    obs: jax.Array,
    alpha: jax.Array,
    beta: float,
    n_samples: int,
    std: str = "biased",
) -> MonteCarloObjective:
    """J(lambda; s) at fixed states `obs` (B, obs_dim), critics and temperature.

    Monte Carlo over `n_samples` reparameterized actions per state; alpha enters as a constant.
    """
    return MonteCarloObjective(critic_apply, critic_params, obs, alpha, beta, n_samples, std=std)


def value_and_grad(objective: Objective, lam: jax.Array, key: jax.Array):
    """J(lambda; s) per state and grad_lambda J per state, both with the same samples.

    States are independent, so the gradient of the batch sum is each state's own gradient.
    Returns (J (B,), aux, grad (B, 2d)).
    """

    def total(lam_):
        j, aux = objective(lam_, key)
        return jnp.sum(j), (j, aux)

    (_, (j, aux)), grad = jax.value_and_grad(total, has_aux=True)(lam)
    return j, aux, grad
