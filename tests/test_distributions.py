import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from iapo import distributions as dist


def test_log_prob_matches_change_of_variables_reference():
    lam = jnp.array([[0.3, -0.7, math.log(0.4), math.log(1.3)]])
    a = np.array([[0.2, -0.9], [0.95, 0.1], [-0.3, 0.5]], np.float32)
    mu, sigma = np.array([0.3, -0.7]), np.array([0.4, 1.3])
    # Independent reference: Gaussian density of atanh(a) times |d atanh / da| = 1 / (1 - a^2).
    ref = (stats.norm.logpdf(np.arctanh(a), mu, sigma) - np.log1p(-(a**2))).sum(-1)
    np.testing.assert_allclose(dist.log_prob(lam, jnp.asarray(a)), ref, rtol=1e-5, atol=1e-5)


def test_density_integrates_to_one_on_the_interval():
    lam = jnp.array([0.8, math.log(0.6)])
    total, _ = integrate.quad(lambda x: float(jnp.exp(dist.log_prob(lam, jnp.array([x])))), -1, 1, limit=200)
    assert abs(total - 1.0) < 1e-4


def test_sample_log_prob_agrees_with_log_prob_of_the_action():
    lam = jnp.array([[0.1, -0.4, math.log(0.5), math.log(0.2)]] * 4)
    actions, lp = dist.sample(lam, jax.random.PRNGKey(0), n=100)  # (100, 4, 2), (100, 4)
    assert actions.shape == (100, 4, 2) and lp.shape == (100, 4)
    assert jnp.all(jnp.abs(actions) < 1)
    np.testing.assert_allclose(lp, dist.log_prob(lam, actions), rtol=1e-4, atol=1e-3)


def test_kl_estimate_matches_numerical_kl_to_uniform_prior():
    lam = jnp.array([[0.5, math.log(0.3)]])
    _, lp = dist.sample(lam, jax.random.PRNGKey(1), n=200_000)
    mc = float(jnp.mean(dist.kl_sample(lp, 1)))

    def integrand(x):
        p = float(jnp.exp(dist.log_prob(lam[0], jnp.array([x]))))
        return p * (math.log(p) - math.log(0.5)) if p > 0 else 0.0

    exact, _ = integrate.quad(integrand, -1 + 1e-9, 1 - 1e-9, limit=400)
    assert abs(mc - exact) < 0.01


def test_log_jacobian_is_stable_for_large_pre_tanh_values():
    u = jnp.array([-40.0, -5.0, 0.0, 5.0, 40.0])
    got = dist.log_one_minus_tanh_sq(u)
    assert jnp.all(jnp.isfinite(got))
    np.testing.assert_allclose(got[1:4], np.log(1 - np.tanh(np.array([-5.0, 0.0, 5.0])) ** 2), rtol=1e-4)


def test_target_kl_is_sac_target_entropy_as_kl():
    # -H_target + d log 2 with H_target = -d.
    assert dist.target_kl(3) == 3 * (1 + math.log(2))
    assert dist.kl_sample(jnp.array(0.0), 2) == 2 * math.log(2)


def test_soft_clamp_bounds_and_is_near_identity_inside():
    x = jnp.linspace(-50, 50, 101)
    y = dist.soft_clamp(x, -5.0, 2.0)
    assert jnp.all(y >= -5.0) and jnp.all(y <= 2.0 + 1e-2)
    assert abs(float(dist.soft_clamp(jnp.array(-1.0), -5.0, 2.0)) + 1.0) < 0.1
