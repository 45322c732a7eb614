"""Adam and CEM on lambda converge on an objective whose optimum is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iapo import distributions as dist
from iapo.objective import make_objective
from iapo.optimizers.nonamortized import cem, gradient_ascent

TARGET = jnp.array([[0.5, -0.3], [-0.6, 0.2]])  # (B=2, d=2): the best action of each state


def quadratic_critics(params, obs, action):
    """Two equal critics, Q = -10 |a - a*(s)|^2; `obs` holds a*(s)."""
    q = -10.0 * jnp.sum((action - obs) ** 2, axis=-1)
    return jnp.stack([q, q])


def _setup(alpha=1e-3):
    lam0 = dist.join(jnp.zeros((2, 2)), jnp.full((2, 2), jnp.log(0.5)))
    args = (quadratic_critics, None, TARGET, jnp.asarray(alpha), 1.0)
    objective = make_objective(*args, n_samples=10)
    return lam0, objective, objective.integrand


def test_adam_converges_to_the_known_optimum():
    lam0, objective, _ = _setup()
    lam, js = jax.jit(lambda l, k: gradient_ascent(objective, l, k, steps=250, lr=1e-2))(lam0, jax.random.PRNGKey(0))
    mean, log_scale = dist.split(lam)
    np.testing.assert_allclose(np.tanh(mean), TARGET, atol=0.06)  # the last iterate is a noisy one
    assert np.all(np.exp(log_scale) < 0.2)  # the Gaussian narrows around the optimum
    assert js.shape == (251, 2) and np.all(js[-1] > js[0] + 1.0)


@pytest.mark.parametrize("smoothing, steps, atol", [(0.1, 150, 0.05), (0.01, 250, 0.15)])
def test_cem_converges_to_the_known_optimum(smoothing, steps, atol):
    lam0, objective, integrand = _setup()
    run = jax.jit(lambda l, k: cem(integrand, objective, l, k, steps=steps, smoothing=smoothing))
    lam, js = run(lam0, jax.random.PRNGKey(1))
    mean, _ = dist.split(lam)
    np.testing.assert_allclose(np.tanh(mean), TARGET, atol=atol)
    assert js.shape == (steps + 1, 2) and np.all(js[-1] > js[0] + 1.0)
