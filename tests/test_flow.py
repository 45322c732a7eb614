"""The normalizing-flow direct policy (exact log-density, exact inverse, identity at init) and
the non-amortized agents' optimizers (gradient, CEM) on an analytic objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iapo import distributions as dist
from iapo.objective import make_objective
from iapo.optimizers import FlowOptimizer, NonAmortizedOptimizer
from iapo.optimizers.flow import FlowPolicy, made_masks

D, OBS = 3, 4


def random_flow(transforms, key=0):
    """A flow policy with every parameter random (so no transform is the identity)."""
    opt = FlowOptimizer(D, (16,), transforms=transforms, flow_hidden_sizes=(8, 8))
    params = opt.init(jax.random.PRNGKey(key), OBS)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(key + 1), len(leaves))
    leaves = [0.4 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    return opt, jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("transforms", [1, 2, 3])
def test_log_prob_is_the_change_of_variables_density(transforms):
    opt, params = random_flow(transforms)
    obs = jax.random.normal(jax.random.PRNGKey(2), (5, OBS))
    eps = jax.random.normal(jax.random.PRNGKey(3), (5, D))
    actions, log_pi, _ = opt.net.apply(params, obs, eps)

    def one(o, e):  # noise -> action at one state
        return opt.net.apply(params, o[None], e[None])[0][0]

    for b in range(5):
        jac = jax.jacobian(one, argnums=1)(obs[b], eps[b])  # (d, d) of a = f(eps)
        log_noise = jnp.sum(-0.5 * eps[b] ** 2) - 0.5 * D * jnp.log(2 * jnp.pi)
        expected = log_noise - jnp.linalg.slogdet(jac)[1]
        np.testing.assert_allclose(log_pi[b], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transforms", [1, 2, 3])
def test_every_transform_inverts_exactly(transforms):
    opt, params = random_flow(transforms, key=5)
    obs = jax.random.normal(jax.random.PRNGKey(6), (7, OBS))
    u0 = jax.random.normal(jax.random.PRNGKey(7), (7, D))
    u_k, _ = opt.net.apply(params, u0, obs, method=FlowPolicy.push)
    assert not np.allclose(u_k, u0, atol=1e-2)
    back = opt.net.apply(params, u_k, obs, method=FlowPolicy.invert)
    np.testing.assert_allclose(back, u0, atol=1e-5)


def test_transforms_are_autoregressive():
    masks = made_masks(4, (8, 8))
    connectivity = masks[0] @ masks[1] @ masks[2]  # (inputs, outputs): paths from input j to output i
    seen = connectivity.T  # (outputs, inputs)
    assert np.all(np.triu(seen) == 0)  # output i sees only inputs j < i
    assert np.all(seen[np.tril_indices(4, -1)] > 0)  # and every one of them


def test_untrained_flow_is_the_tanh_gaussian_of_its_base():
    opt = FlowOptimizer(D, (16,), transforms=2, flow_hidden_sizes=(8, 8))
    params = opt.init(jax.random.PRNGKey(0), OBS)
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, OBS))
    eps = jax.random.normal(jax.random.PRNGKey(2), (6, D))
    actions, log_pi, lam = opt.net.apply(params, obs, eps)
    ref_actions, ref_log_pi = dist.sample_from_noise(lam, eps)
    np.testing.assert_allclose(actions, ref_actions, atol=1e-6)
    np.testing.assert_allclose(log_pi, ref_log_pi, atol=1e-5)


def _quadratic_critic(params, obs, actions):
    """Twin critics with their optimum at a*(s) = 0.5 tanh(s[..., :d])."""
    del params
    base = -5.0 * jnp.sum((actions - 0.5 * jnp.tanh(obs[..., : actions.shape[-1]])) ** 2, axis=-1)
    return jnp.stack([base, base - 0.1])


@pytest.mark.parametrize("method, iterations, extra", [("gradient", 100, {"lr": 5e-2}),
                                                       ("cem", 60, {"smoothing": 0.3})])
def test_non_amortized_agents_improve_j(method, iterations, extra):
    opt = NonAmortizedOptimizer(method, D, iterations=iterations, **extra)
    obs = jax.random.normal(jax.random.PRNGKey(0), (16, OBS))
    objective = make_objective(_quadratic_critic, None, obs, 0.01, 1.0, 10)
    lam, info = jax.jit(lambda o, k: opt.optimize({}, o, objective, k))(obs, jax.random.PRNGKey(1))
    js = np.asarray(info["objective_per_iteration"])
    assert js.shape == (iterations + 1,)
    assert js[-1] > js[0] + 0.5
    mean = np.tanh(np.asarray(dist.split(lam)[0]))
    np.testing.assert_allclose(mean, 0.5 * np.tanh(np.asarray(obs[:, :D])), atol=0.15)
