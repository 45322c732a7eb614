"""The amortization gap is about zero at the optimum of J and positive away from it."""

import jax
import jax.numpy as jnp
import numpy as np

from iapo import distributions as dist
from iapo.analysis.gap import amortization_gap
from iapo.objective import make_objective

from test_nonamortized import TARGET, _setup, quadratic_critics


def test_gap_is_zero_at_the_optimum_and_positive_off_it():
    _, objective, _ = _setup()
    precise = make_objective(quadratic_critics, None, TARGET, jnp.asarray(1e-3), 1.0, n_samples=2000)
    # The optimum, analytically: tanh(mu) = a*, and a small sigma where the entropy term's gain
    # (alpha = 1e-3) balances the critic's quadratic loss: about exp(-4.7) here.
    lam_opt = dist.join(jnp.arctanh(TARGET), jnp.full_like(TARGET, -4.7))
    gap = jax.jit(lambda l, k: amortization_gap(objective, l, k, eval_objective=precise, lr=3e-3,
                                                optimizer="adam", patience=50))
    at_optimum = gap(lam_opt, jax.random.PRNGKey(1))
    assert np.all(np.abs(at_optimum["gap"]) < 0.01), at_optimum["gap"]

    mean, log_scale = dist.split(lam_opt)
    perturbed = dist.join(mean + 0.5, log_scale)
    off = gap(perturbed, jax.random.PRNGKey(2))
    assert np.all(off["gap"] > 1.0), off["gap"]  # about 10 * |shift in a|^2 over two dimensions
    assert 0 < int(off["steps"]) < 5000
    np.testing.assert_allclose(np.tanh(dist.split(off["lam_star"])[0]), TARGET, atol=0.1)
