import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iapo import distributions as dist
from iapo.objective import make_objective, pessimistic_value, value_and_grad


def test_beta_one_is_min_of_two_critics():
    q = jax.random.normal(jax.random.PRNGKey(0), (2, 1000)) * 10
    np.testing.assert_array_equal(pessimistic_value(q, 1.0), jnp.min(q, axis=0))


def test_larger_ensembles_use_mean_minus_beta_std():
    q = jnp.array([[1.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
    np.testing.assert_allclose(pessimistic_value(q, 1.5), [3.0 - 1.5 * np.std([1, 2, 6]), 0.0], rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda x: pessimistic_value(jnp.stack([x, x, x]), 2.5).sum())(jnp.ones(3))
    assert jnp.all(jnp.isfinite(g))


def test_beta_zero_is_mean_and_std_is_biased():
    q = jnp.array([[1.0, 4.0], [3.0, 0.0]])
    np.testing.assert_allclose(pessimistic_value(q, 0.0), [2.0, 2.0])
    # biased std of {1, 3} is 1, of {4, 0} is 2
    np.testing.assert_allclose(pessimistic_value(q, 2.5), [2.0 - 2.5, 2.0 - 5.0])


def test_equal_critics_give_finite_gradients():
    g = jax.grad(lambda x: pessimistic_value(jnp.stack([x, x]), 2.5).sum())(jnp.ones(3))
    assert jnp.all(jnp.isfinite(g))


def _critic(params, obs, actions):
    """Two quadratic critics; obs-dependent optimum a* = obs[..., :d]."""
    del params
    d = actions.shape[-1]
    base = -jnp.sum((actions - obs[..., :d]) ** 2, axis=-1)
    return jnp.stack([base, base - 0.5])


def test_objective_is_mc_estimate_of_q_minus_alpha_kl():
    obs = jnp.array([[0.2, -0.3], [0.5, 0.5]])
    lam = jnp.array([[0.0, 0.1, -1.0, -1.2], [0.4, 0.2, -2.0, -0.5]])
    alpha, n = 0.3, 7
    objective = make_objective(_critic, None, obs, alpha, 1.0, n)
    key = jax.random.PRNGKey(3)
    j, aux = objective(lam, key)
    # Plain reference loop over samples and states.
    actions, log_pi = dist.sample(lam, key, n)
    ref = np.zeros(2)
    for b in range(2):
        for i in range(n):
            q = _critic(None, obs[b], actions[i, b])
            ref[b] += (float(jnp.min(q)) - alpha * (float(log_pi[i, b]) + 2 * np.log(2))) / n
    np.testing.assert_allclose(j, ref, rtol=1e-5, atol=1e-5)
    assert aux["kl"].shape == (2,)


def test_value_and_grad_gives_each_states_own_gradient():
    obs = jnp.array([[0.2, -0.3], [0.5, 0.5], [-0.1, 0.9]])
    lam = jnp.zeros((3, 4))
    objective = make_objective(_critic, None, obs, 0.1, 1.0, 5)
    key = jax.random.PRNGKey(0)
    _, _, grad = value_and_grad(objective, lam, key)
    for b in range(3):
        own = jax.grad(lambda l: objective(lam.at[b].set(l), key)[0][b])(lam[b])
        np.testing.assert_allclose(grad[b], own, rtol=1e-5, atol=1e-6)


def test_separate_critics_are_the_ensemble_computed_another_way():
    """critic_layout only changes how the twin critics are compiled: the same parameters, values
    and gradients."""
    from iapo.networks import TwinCritic

    ensemble, separate = TwinCritic((16, 16)), TwinCritic((16, 16), separate=True)
    args = (jnp.zeros((1, 5)), jnp.zeros((1, 2)))
    params = ensemble.init(jax.random.PRNGKey(0), *args)
    assert jax.tree.structure(separate.init(jax.random.PRNGKey(0), *args)) == jax.tree.structure(params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 5))
    action = jax.random.normal(jax.random.PRNGKey(2), (3, 7, 2))
    q = ensemble.apply(params, obs, action)
    assert q.shape == (2, 3, 7) and not np.allclose(q[0], q[1])
    np.testing.assert_allclose(separate.apply(params, obs, action), q, rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda p, c=c: jnp.sum(c.apply(p, obs, action) ** 2))(params) for c in (ensemble, separate)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _concatenated_critics(hidden_sizes):
    """The twin critics as they were before `networks.PairDense`: an MLP on the concatenation
    [s, a] broadcast to every action sample (the same parameter tree)."""
    import flax.linen as nn

    class ConcatMLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for i, width in enumerate(hidden_sizes):
                x = nn.relu(nn.Dense(width, name=f"Dense_{i}")(x))
            return nn.Dense(1, name=f"Dense_{len(hidden_sizes)}")(x)

    class ConcatCritic(nn.Module):
        @nn.compact
        def __call__(self, obs, action):
            obs = jnp.broadcast_to(obs, (*action.shape[:-1], obs.shape[-1]))
            return ConcatMLP(name="MLP_0")(jnp.concatenate([obs, action], axis=-1))[..., 0]

    ensemble = nn.vmap(ConcatCritic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                       out_axes=0, axis_size=2)
    return ensemble(name="VmapCritic_0")


@pytest.mark.parametrize("kind", ["direct", "iterative", "direct-flow", "gradient", "cem"])
def test_each_states_part_computed_once_is_the_concatenated_critic(kind):
    """J and its gradient with respect to lambda, as every agent kind evaluates them (the critics'
    first layer computing each state's part once for its N action samples), equal those of the
    critics applied to [s, a] for every sample, to float rounding."""
    from iapo.agent import Agent
    from iapo.config import AgentConfig
    from iapo.objective import MonteCarloObjective

    agent = Agent(AgentConfig(agent=kind, hidden_sizes=(32,), critic_hidden_sizes=(32, 32), action_samples=7,
                              matmul_precision="float32", critic_layout="ensemble"), 9, 3)
    state = agent.init(jax.random.PRNGKey(0))
    concat = _concatenated_critics((32, 32))

    def concat_apply(params, obs, action):
        return concat.apply({"params": params["params"]["VmapCritic_0"]}, obs, action)

    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 9))
    lam = jax.random.normal(jax.random.PRNGKey(2), (16, 6))
    key = jax.random.PRNGKey(3)
    split = agent.objective(state, obs)
    reference = MonteCarloObjective(concat_apply, agent.objective_critic_params(state), obs,
                                    jnp.exp(state.log_alpha), agent.config.beta, 7)
    j, _, grad = value_and_grad(split, lam, key)
    j_ref, _, grad_ref = value_and_grad(reference, lam, key)
    np.testing.assert_allclose(j, j_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-5)
