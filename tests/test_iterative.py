import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import optax

from iapo import distributions as dist
from iapo.objective import make_objective
from iapo.optimizers import IterativeOptimizer

sg = jax.lax.stop_gradient


def _quadratic_critic(params, obs, actions):
    """Twin quadratic critics with optimum a*(s) = 0.6 tanh(s[..., :d]); the second is lower."""
    del params
    d = actions.shape[-1]
    target = 0.6 * jnp.tanh(obs[..., :d])
    base = -5.0 * jnp.sum((actions - target) ** 2, axis=-1)
    return jnp.stack([base, base - 0.1])


def _perturbed(params, key, scale=0.3):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def _block_norm(x):
    """The reference input normalization written out: each of the mean and log-sigma blocks
    minus its mean, over its unbiased std + 1e-7."""
    d = x.shape[-1] // 2
    out = []
    for b in (x[:, :d], x[:, d:]):
        mean = jnp.mean(b, -1, keepdims=True)
        std = jnp.sqrt(jnp.sum((b - mean) ** 2, -1, keepdims=True) / (d - 1))
        out.append((b - mean) / (std + 1e-7))
    return jnp.concatenate(out, -1)


def test_initial_network_halves_lambda_zero():
    opt = IterativeOptimizer(act_dim=2, hidden_sizes=(8,), iterations=1, init_scale=0.5)
    params = opt.init(jax.random.PRNGKey(0), 3)
    obs = jnp.ones((4, 3))
    objective = make_objective(_quadratic_critic, None, obs, 0.1, 1.0, 3)
    lam, _ = opt.optimize(params, obs, objective, jax.random.PRNGKey(1))
    # gate 0.5 and update 0 at initialization: lambda_1 = lambda_0 / 2 (then the soft clamp)
    expected = dist.join(jnp.zeros((4, 2)), dist.soft_clamp(jnp.full((4, 2), 0.5 * math.log(0.5)), -5.0, 2.0))
    np.testing.assert_allclose(lam, expected, rtol=1e-6)


class _ConcatenatedNet(nn.Module):
    """f_phi as the plain MLP on the concatenation [s, norm(lambda), norm(grad)] (the same
    parameters as `IterativeNet`, whose first layer computes the state's part apart)."""

    hidden_sizes: tuple
    act_dim: int

    @nn.compact
    def __call__(self, inputs):
        h = inputs
        for i, width in enumerate(self.hidden_sizes):
            h = nn.relu(nn.Dense(width, name=f"Dense_{i}")(h))
        return (nn.Dense(2 * self.act_dim, name="update")(h), nn.Dense(2 * self.act_dim, name="gate")(h))


def _reference_loss(opt, params, obs, objective, key):
    """Hand-built IAPO loss: a plain loop, J(lambda_k) evaluated directly (not by a surrogate),
    the network applied to the concatenated input."""
    net = _ConcatenatedNet(tuple(opt.hidden_sizes), opt.act_dim)
    key_iter, key_last = jax.random.split(key)
    keys = list(jax.random.split(key_iter, opt.iterations)) + [key_last]
    lam = opt.initial_lam(obs.shape[0])
    iterates = []
    for k in range(opt.iterations):
        lam_in = sg(lam)
        grad = jax.grad(lambda l: objective(l, keys[k])[0].sum())(lam_in)
        inputs = jnp.concatenate([obs, _block_norm(lam_in), _block_norm(grad)], -1)
        delta, gate_logits = net.apply(params, inputs)
        gate = jax.nn.sigmoid(gate_logits)
        lam = gate * lam_in + (1 - gate) * delta
        mean, log_scale = dist.split(lam)
        lam = dist.join(mean, dist.soft_clamp(log_scale, *opt.log_scale_bounds))
        iterates.append(lam)
    terms = [objective(l, keys[k + 1])[0] for k, l in enumerate(iterates)]  # J(lambda_1..K), (B,)
    return -jnp.mean(jnp.stack(terms))


def test_gradient_reaches_network_only_through_the_application_that_produced_each_iterate():
    opt = IterativeOptimizer(act_dim=2, hidden_sizes=(8,), iterations=3)
    params = _perturbed(opt.init(jax.random.PRNGKey(0), 3), jax.random.PRNGKey(1))
    obs = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    objective = make_objective(_quadratic_critic, None, obs, 0.2, 1.0, 4)
    key = jax.random.PRNGKey(3)

    loss, _ = opt.loss(params, obs, objective, key)
    ref = _reference_loss(opt, params, obs, objective, key)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)

    got = jax.grad(lambda p: opt.loss(p, obs, objective, key)[0])(params)
    want = jax.grad(lambda p: _reference_loss(opt, p, obs, objective, key))(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_trained_iterative_optimizer_climbs_an_analytic_quadratic():
    """The optimum depends on the state, which the network is *not* shown (it gets zeros), so
    it can only find the optimum through the gradient feedback of Eq. 11. (With the joint input
    normalization: with d = 2 the reference form leaves each block only the sign of the
    difference of its two entries. tests/test_fidelity.py and benchmarks/input_norm.py compare
    the forms.)"""
    act_dim, obs_dim, iterations = 2, 2, 5
    opt = IterativeOptimizer(act_dim=act_dim, hidden_sizes=(64, 64), iterations=iterations, input_norm="joint")
    params = opt.init(jax.random.PRNGKey(0), obs_dim)
    adam = optax.adam(3e-3)
    opt_state = adam.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        k_obs, k_loss = jax.random.split(key)
        obs = jax.random.uniform(k_obs, (128, obs_dim), minval=-2, maxval=2)
        objective = make_objective(_quadratic_critic, None, obs, 0.01, 1.0, 10)
        grads = jax.grad(lambda p: opt.loss(p, jnp.zeros_like(obs), objective, k_loss)[0])(params)
        updates, opt_state = adam.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    for key in jax.random.split(jax.random.PRNGKey(1), 400):
        params, opt_state = train_step(params, opt_state, key)

    obs = jax.random.uniform(jax.random.PRNGKey(7), (512, obs_dim), minval=-2, maxval=2)
    objective = make_objective(_quadratic_critic, None, obs, 0.01, 1.0, 10)
    optimum = 0.6 * jnp.tanh(obs)

    # Follow the iterates: lambda_1 after one iteration, lambda_K after all.
    hidden = jnp.zeros_like(obs)
    lam_1, _ = opt.optimize(params, hidden, objective, jax.random.PRNGKey(8), iterations=1)
    lam_k, info = opt.optimize(params, hidden, objective, jax.random.PRNGKey(8), iterations=iterations)
    j_1 = jnp.mean(objective(lam_1, jax.random.PRNGKey(9))[0])
    j_k = jnp.mean(objective(lam_k, jax.random.PRNGKey(9))[0])
    assert j_k > j_1 + 0.1, (j_1, j_k)
    dist_1 = jnp.mean(jnp.linalg.norm(dist.mode(lam_1) - optimum, axis=-1))
    dist_k = jnp.mean(jnp.linalg.norm(dist.mode(lam_k) - optimum, axis=-1))
    assert dist_k < 0.6 * dist_1, (dist_1, dist_k)
    per_iter = info["objective_per_iteration"]  # J at lambda_0 .. lambda_{K-1}
    assert per_iter[-1] > per_iter[0]
