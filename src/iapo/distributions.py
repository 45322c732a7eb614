"""The tanh-squashed diagonal Gaussian over raw parameters lambda = (mu, log sigma).

lambda has shape (..., 2d): the first d entries are the mean, the last d the log standard
deviation of the Gaussian before the tanh. Actions lie in (-1, 1)^d.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def constant(batch: int, act_dim: int, mean: float, scale: float) -> jax.Array:
    """The same lambda (batch, 2d) at every state: mean `mean`, sigma `scale` before the tanh."""
    return join(jnp.full((batch, act_dim), mean, jnp.float32), jnp.full((batch, act_dim), math.log(scale), jnp.float32))


def split(lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(..., 2d) -> mean (..., d), log sigma (..., d)."""
    d = lam.shape[-1] // 2
    return lam[..., :d], lam[..., d:]


def join(mean: jax.Array, log_scale: jax.Array) -> jax.Array:
    return jnp.concatenate([mean, log_scale], axis=-1)


def soft_clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """Smoothly bound x into (low, high): identity well inside, softplus near the edges."""
    x = high - jax.nn.softplus(high - x)
    return low + jax.nn.softplus(x - low)


def log_one_minus_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2), stable for large |u|: the log-Jacobian of the tanh."""
    return 2.0 * (LOG_2 - u - jax.nn.softplus(-2.0 * u))


def gaussian_log_density(z: jax.Array, log_scale: jax.Array) -> jax.Array:
    """log N(u; mu, sigma) per entry, from the standardized z = (u - mu) / sigma: the Gaussian
    before the tanh (every policy's log-density starts here)."""
    return -0.5 * z**2 - log_scale - _HALF_LOG_2PI


def sample(lam: jax.Array, key: jax.Array, n: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Reparameterized samples a = tanh(mu + sigma * eps) and their log-probabilities.

    Returns actions (n, ..., d) (or (..., d) when n is None) and log pi(a) of shape (n, ...).
    Gradients flow to lambda through the path-wise (reparameterization) estimator.
    """
    mean, log_scale = split(lam)
    shape = mean.shape if n is None else (n, *mean.shape)
    eps = jax.random.normal(key, shape, mean.dtype)
    return sample_from_noise(lam, eps)


def sample_from_noise(lam: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Actions and log pi(a) for given standard-normal noise eps (broadcast against lambda)."""
    mean, log_scale = split(lam)
    u = mean + jnp.exp(log_scale) * eps
    log_prob = gaussian_log_density(eps, log_scale) - log_one_minus_tanh_sq(u)  # then the tanh's Jacobian
    return jnp.tanh(u), jnp.sum(log_prob, axis=-1)


def log_prob(lam: jax.Array, action: jax.Array, eps_clip: float = 1e-6) -> jax.Array:
    """log pi(a) of given actions in (-1, 1)^d (change of variables through atanh)."""
    mean, log_scale = split(lam)
    action = jnp.clip(action, -1.0 + eps_clip, 1.0 - eps_clip)
    u = jnp.arctanh(action)
    z = (u - mean) * jnp.exp(-log_scale)
    lp = gaussian_log_density(z, log_scale) - log_one_minus_tanh_sq(u)
    return jnp.sum(lp, axis=-1)


def uniform_log_prior(act_dim: int) -> float:
    """log p(a) of the uniform prior on (-1, 1)^d."""
    return -act_dim * LOG_2


def kl_sample(log_pi: jax.Array, act_dim: int) -> jax.Array:
    """Single-sample estimate of KL(pi || uniform): log pi(a) - log p(a) = log pi(a) + d log 2."""
    return log_pi - uniform_log_prior(act_dim)


def target_kl(act_dim: int) -> float:
    """Temperature target d (1 + log 2): SAC's target entropy -d expressed as a KL to the prior."""
    return act_dim * (1.0 + LOG_2)


def mode(lam: jax.Array) -> jax.Array:
    """The deterministic action tanh(mu) used at evaluation."""
    return jnp.tanh(split(lam)[0])
