"""The policy objective J(lambda; s) = E_pi[Q(s, a)] - alpha KL(pi || p) (Eq. 8) and its gradient.

Q is the pessimistic estimate over the critic ensemble (Eq. 13). The prior p is uniform on
(-1, 1)^d, so the per-sample KL estimate is log pi(a) + d log 2.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from iapo import distributions as dist

# objective(lam (B, 2d), key) -> (J (B,), aux dict of (B,) arrays)
Objective = Callable[[jax.Array, jax.Array], tuple[jax.Array, dict]]


def pessimistic_value(q: jax.Array, beta: float | jax.Array) -> jax.Array:
    """Eq. 13: mean - beta * std over the leading ensemble axis, with the biased std.

    For two critics mean = min + |Q1 - Q2| / 2 and std = |Q1 - Q2| / 2, so the estimate is
    computed as min(Q1, Q2) + (1 - beta) |Q1 - Q2| / 2: the same value, and beta = 1 gives
    min(Q1, Q2) to the last bit. Larger ensembles use mean - beta * std directly, with the
    variance floored at 1e-30 inside the square root so that equal critics give a zero
    gradient, not NaN.
    """
    if q.shape[0] == 2:
        half_gap = 0.5 * jnp.abs(q[0] - q[1])
        return jnp.minimum(q[0], q[1]) + (1.0 - beta) * half_gap
    mean = jnp.mean(q, axis=0)
    var = jnp.mean((q - mean) ** 2, axis=0)
    return mean - beta * jnp.sqrt(jnp.maximum(var, 1e-30))


def make_integrand(critic_apply: Callable, critic_params, obs: jax.Array, alpha: jax.Array, beta: float):
    """The integrand of J at fixed states: integrand(lam (B, 2d), eps (M, B, d)) -> (values
    (M, B), aux), the value of Q(s, a) - alpha (log pi(a) - log p(a)) at each action
    a = tanh(mu + sigma eps), with its q and kl parts in aux."""
    alpha = jax.lax.stop_gradient(alpha)

    def integrand(lam: jax.Array, eps: jax.Array) -> tuple[jax.Array, dict]:
        act_dim = lam.shape[-1] // 2
        actions, log_pi = dist.sample_from_noise(lam, eps)  # (M, B, d), (M, B)
        obs_m = jnp.broadcast_to(obs, (eps.shape[0], *obs.shape))  # (M, B, obs_dim)
        q = pessimistic_value(critic_apply(critic_params, obs_m, actions), beta)  # (M, B)
        kl = dist.kl_sample(log_pi, act_dim)  # (M, B)
        return q - alpha * kl, {"q": q, "kl": kl}

    return integrand


def make_objective(
    critic_apply: Callable,
    critic_params,
    obs: jax.Array,
    alpha: jax.Array,
    beta: float,
    n_samples: int,
) -> Objective:
    """J(lambda; s) at fixed states `obs` (B, obs_dim), critics and temperature.

    Monte Carlo over `n_samples` reparameterized actions per state; alpha enters as a constant.
    """
    integrand = make_integrand(critic_apply, critic_params, obs, alpha, beta)

    def objective(lam: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        eps = jax.random.normal(key, (n_samples, *lam.shape[:-1], lam.shape[-1] // 2), lam.dtype)
        values, aux = integrand(lam, eps)  # (N, B)
        return jnp.mean(values, axis=0), {k: jnp.mean(v, axis=0) for k, v in aux.items()}

    return objective


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
