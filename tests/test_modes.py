"""Independent optimization runs find both optima of a bimodal objective."""

import jax
import jax.numpy as jnp
import numpy as np

from iapo import distributions as dist
from iapo.analysis.modes import independent_runs, pairwise_distances
from iapo.objective import make_objective
from iapo.optimizers.nonamortized import gradient_ascent


def bimodal_critics(params, obs, action):
    """Q = -20 min((a0 - 0.6)^2, (a0 + 0.6)^2) - 20 a1^2: two optima, a0 = +-0.6."""
    q = -20.0 * jnp.minimum((action[..., 0] - 0.6) ** 2, (action[..., 0] + 0.6) ** 2) - 20.0 * action[..., 1] ** 2
    return jnp.stack([q, q])


def test_independent_runs_find_both_modes():
    obs = jnp.zeros((3, 1))  # three states, the same bimodal Q at each
    objective = make_objective(bimodal_critics, None, obs, jnp.asarray(1e-3), 1.0, n_samples=10)
    lam0 = dist.join(jnp.zeros((3, 2)), jnp.full((3, 2), jnp.log(0.3)))

    def optimize(lam, key):
        return gradient_ascent(objective, lam, key, steps=300, lr=2e-2)[0]

    lams = jax.jit(lambda k: independent_runs(optimize, lam0, k, runs=12, init_spread=1.0))(jax.random.PRNGKey(0))
    found = np.tanh(np.asarray(dist.split(lams)[0]))[..., 0]  # (runs, states)
    assert np.all(np.min(np.abs(np.abs(found) - 0.6), axis=0) < 0.05)  # every run ends on a mode
    assert np.all(np.any(found > 0.5, axis=0)) and np.all(np.any(found < -0.5, axis=0))  # both, at every state
    distances = pairwise_distances(lams)  # (states, 66)
    assert distances.shape == (3, 66)
    np.testing.assert_allclose(distances.max(axis=1), 1.2, atol=0.1)  # runs on different modes
    assert np.all(distances.min(axis=1) < 0.1)  # and runs on the same mode
