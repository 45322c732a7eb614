"""The agents against numbers computed independently of the code under test: the critic target,
which critics J uses, the temperature's direction, the iterative loss, the pessimism forms, the
acting pessimism, CEM's ranking, the iterative network's input normalization and the model-based
lambda-return. Stubs (a linear twin critic, a fixed policy, a linear model) make every quantity
computable by hand."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from iapo import distributions as dist
from iapo.agent import Agent, AgentState, act
from iapo.config import AgentConfig
from iapo.configfile import train_config_from_dict
from iapo.dynamics import make_model_based_value
from iapo.objective import make_objective, pessimistic_value
from iapo.optimizers import IterativeOptimizer
from iapo.optimizers.iterative import normalize_input
from iapo.optimizers.nonamortized import cem
from iapo.update import critic_target, update

from test_iterative import _perturbed, _quadratic_critic

OBS, ACT = 3, 2
FIXED_ACTION = np.array([0.3, -0.6], np.float32)
FIXED_LOG_PI = -0.7


class LinearCritic:
    """Q_i(s, a) = c_i + s . v + a . u, stacked (2, ...): its parameters are {c, v, u}."""

    @staticmethod
    def apply(params, obs, action):
        base = obs @ params["v"] + action @ params["u"]
        return params["c"].reshape((2,) + (1,) * base.ndim) + base[None]


class FixedPolicy:
    """A policy optimizer whose policy is the same everywhere: lambda = 0 and every sample is
    FIXED_ACTION with log pi = FIXED_LOG_PI; its loss returns a given KL."""

    kl = 0.0

    def init(self, key, obs_dim):
        return {}

    def optimize(self, params, obs, objective, key, iterations=None):
        return jnp.zeros((obs.shape[0], 2 * ACT)), {"objective_per_iteration": jnp.zeros(1)}

    def sample(self, params, obs, lam, key):
        b = obs.shape[0]
        return jnp.broadcast_to(jnp.asarray(FIXED_ACTION), (b, ACT)), jnp.full((b,), FIXED_LOG_PI)

    def loss(self, params, obs, objective, key):
        b = obs.shape[0]
        info = {"kl": jnp.full((b,), self.kl), "lam": jnp.zeros((b, 2 * ACT)),
                "objective_per_iteration": jnp.zeros(1)}
        return jnp.zeros(()), info


class LinearModel:
    """s' - s = s A + a Bm, r = s . w + a . z."""

    A = np.array([[0.1, -0.2, 0.0], [0.05, 0.1, 0.3], [-0.1, 0.0, 0.2]], np.float32)
    Bm = np.array([[0.2, 0.0, -0.1], [0.0, 0.3, 0.1]], np.float32)
    w = np.array([0.5, -1.0, 0.25], np.float32)
    z = np.array([1.5, -0.5], np.float32)

    def apply(self, params, obs, action):
        return obs @ self.A + action @ self.Bm, obs @ self.w + action @ self.z


@dataclasses.dataclass(frozen=True)
class StubAgent(Agent):
    kl: float = 0.0

    @property
    def critic(self):
        return LinearCritic

    @property
    def objective_critic(self):
        return LinearCritic

    @property
    def optimizer(self):
        policy = FixedPolicy()
        policy.kl = self.kl
        return policy

    @property
    def model(self):
        return LinearModel()


def _critic_params(c, v=(0.2, -0.1, 0.4), u=(0.7, -0.3)):
    return {"c": jnp.asarray(c, jnp.float32), "v": jnp.asarray(v, jnp.float32), "u": jnp.asarray(u, jnp.float32)}


def _state(agent, online, target, alpha):
    log_alpha = jnp.asarray(math.log(alpha), jnp.float32)
    adam = optax.adam(agent.config.alpha_lr)
    return AgentState(policy_params={}, critic_params=online, target_critic_params=target, log_alpha=log_alpha,
                      policy_opt_state=optax.adam(1e-3).init({}), critic_opt_state=optax.adam(1e-3).init(online),
                      alpha_opt_state=adam.init(log_alpha), key=jax.random.key_data(jax.random.PRNGKey(0)),
                      updates=jnp.zeros((), jnp.int32), model_params={}, model_opt_state={})


def _q_hat(q1, q2, beta, std):
    """Eq. 13 by hand for two critics: squared deviations over n = 2 (biased) or n - 1 = 1."""
    mean = (q1 + q2) / 2
    squares = (q1 - mean) ** 2 + (q2 - mean) ** 2
    return mean - beta * np.sqrt(squares / (2 if std == "biased" else 1))


# -- critic targets ---------------------------------------------------------------------------
@pytest.mark.parametrize("std", ["biased", "unbiased"])
def test_critic_target_against_hand_computed_numbers(std):
    gamma, alpha, beta = 0.9, 0.5, 2.5
    agent = StubAgent(AgentConfig(pessimism=beta, pessimism_std=std, gamma=gamma), OBS, ACT)
    target = _critic_params([3.0, 5.0])
    state = _state(agent, _critic_params([-40.0, 40.0]), target, alpha)  # the online critics must not matter
    next_obs = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], np.float32)
    # row 0: terminated (no bootstrap); row 1: truncated by a time limit (bootstrapped)
    batch = _batch(reward=[1.0, 2.0], terminated=[1.0, 0.0], next_obs=next_obs)
    y = np.asarray(critic_target(agent, state, batch, jax.random.PRNGKey(0)))

    v, u = np.array([0.2, -0.1, 0.4]), np.array([0.7, -0.3])
    s1 = next_obs[1]
    q1, q2 = 3.0 + s1 @ v + FIXED_ACTION @ u, 5.0 + s1 @ v + FIXED_ACTION @ u
    kl = FIXED_LOG_PI + ACT * math.log(2)
    expected = [1.0, 2.0 + gamma * (_q_hat(q1, q2, beta, std) - alpha * kl)]
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def _batch(reward, terminated, next_obs):
    from iapo.replay import Batch

    b = len(reward)
    return Batch(obs=jnp.zeros((b, OBS)), action=jnp.zeros((b, ACT)), reward=jnp.asarray(reward, jnp.float32),
                 next_obs=jnp.asarray(next_obs), terminated=jnp.asarray(terminated, jnp.float32))


# -- which critics J uses ---------------------------------------------------------------------
@pytest.mark.parametrize("critics", ["target", "online"])
def test_objective_uses_the_configured_critics(critics):
    agent = StubAgent(AgentConfig(pessimism=1.0, objective_critics=critics), OBS, ACT)
    online, target = _critic_params([1.0, 4.0], u=(0.0, 0.0)), _critic_params([-2.0, 7.0], u=(0.0, 0.0))
    state = _state(agent, online, target, 0.1)
    obs = jnp.asarray([[0.3, 0.2, -0.1]])
    _, aux = agent.objective(state, obs)(jnp.zeros((1, 2 * ACT)), jax.random.PRNGKey(0))
    c = (1.0, 4.0) if critics == "online" else (-2.0, 7.0)
    sv = float(np.asarray(obs[0]) @ np.array([0.2, -0.1, 0.4]))
    np.testing.assert_allclose(aux["q"], [min(c) + sv], rtol=1e-5)


# -- temperature ------------------------------------------------------------------------------
@pytest.mark.parametrize("above", [True, False])
def test_temperature_rises_when_the_kl_is_above_its_target_and_falls_below(above):
    target_kl = ACT * (1 + math.log(2))
    lr = 1e-2
    agent = StubAgent(AgentConfig(alpha_lr=lr), OBS, ACT, kl=target_kl + (1.0 if above else -1.0))
    state = _state(agent, _critic_params([0.0, 1.0]), _critic_params([0.0, 1.0]), 0.3)
    batch = _batch(reward=[0.0, 0.0], terminated=[0.0, 0.0], next_obs=np.zeros((2, OBS), np.float32))
    new, _ = update(agent, state, batch)
    step = float(new.log_alpha - state.log_alpha)
    # Adam's first step has length lr, with the sign of -d loss / d log alpha = alpha (KL - target).
    assert step == pytest.approx(lr if above else -lr, rel=1e-3)


# -- the iterative loss -----------------------------------------------------------------------
@pytest.mark.parametrize("final_only", [False, True])
def test_iterative_loss_is_the_mean_of_j_over_the_returned_iterates(final_only):
    k_iters = 4
    opt = IterativeOptimizer(act_dim=ACT, hidden_sizes=(8,), iterations=k_iters, final_iterate_loss=final_only)
    params = _perturbed(opt.init(jax.random.PRNGKey(0), OBS), jax.random.PRNGKey(1))
    obs = jax.random.normal(jax.random.PRNGKey(2), (6, OBS))
    objective = make_objective(_quadratic_critic, None, obs, 0.2, 2.5, 5)
    key = jax.random.PRNGKey(3)
    loss, info = opt.loss(params, obs, objective, key)
    iterates = np.asarray(info["iterates"])  # (K, B, 2d)
    assert iterates.shape == (k_iters, 6, 2 * ACT)
    # Recompute J at each returned iterate with the same noise: lambda_k (k < K) with iteration
    # k's key, lambda_K with the final key.
    key_iter, key_last = jax.random.split(key)
    keys = list(jax.random.split(key_iter, k_iters))[1:] + [key_last]
    js = [np.mean(np.asarray(objective(jnp.asarray(lam), k)[0])) for lam, k in zip(iterates, keys)]
    want = -js[-1] if final_only else -np.mean(js)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert not np.allclose(js[0], js[-1])  # the iterates differ, so the choice of terms matters


# -- pessimism --------------------------------------------------------------------------------
def test_biased_beta_one_is_the_min_and_unbiased_std_is_the_gap_over_root_two():
    q = jax.random.normal(jax.random.PRNGKey(0), (2, 64)) * 3
    q1, q2 = np.asarray(q)
    np.testing.assert_array_equal(pessimistic_value(q, 1.0, "biased"), np.minimum(q1, q2))
    for beta in (0.0, 1.0, 2.5):
        np.testing.assert_allclose(pessimistic_value(q, beta, "unbiased"),
                                   (q1 + q2) / 2 - beta * np.abs(q1 - q2) / np.sqrt(2), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pessimistic_value(q, beta, "biased"), _q_hat(q1, q2, beta, "biased"),
                                   rtol=1e-5, atol=1e-5)
    q5 = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 16)))
    np.testing.assert_allclose(pessimistic_value(jnp.asarray(q5), 2.0, "unbiased"),
                               q5.mean(0) - 2.0 * q5.std(0, ddof=1), rtol=1e-5, atol=1e-5)


def test_default_betas_follow_the_paper():
    assert AgentConfig(agent="iterative").beta == 2.5
    for kind in ("direct", "direct-flow", "gradient", "cem"):
        assert AgentConfig(agent=kind).beta == 1.0
    assert AgentConfig(agent="iterative").acting_beta == 1.0
    assert AgentConfig(agent="iterative", acting_pessimism=None).acting_beta == 2.5


def test_older_configs_keep_the_behaviour_they_were_trained_with():
    old = {"env": "Hopper-v5", "algo": {"agent": "cem"}}
    algo = train_config_from_dict(old).algo
    assert (algo.input_norm, algo.acting_pessimism, algo.beta) == ("joint", None, 2.5)
    new = train_config_from_dict({"env": "Hopper-v5", "algo": {"agent": "cem", "acting_pessimism": 1.0,
                                                               "input_norm": "reference"}}).algo
    assert (new.input_norm, new.acting_beta, new.beta) == ("reference", 1.0, 1.0)


# -- acting pessimism -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["iterative", "cem"])
def test_acting_uses_the_acting_pessimism(kind):
    def agent(**kw):
        cfg = AgentConfig(agent=kind, hidden_sizes=(16,), critic_hidden_sizes=(16,), iterations=3,
                          action_samples=4, cem_samples=20, cem_elites=4, cem_smoothing=0.5, **kw)
        return Agent(cfg, OBS, ACT)

    trained = agent(pessimism=2.5, acting_pessimism=1.0)
    state = trained.init(jax.random.PRNGKey(0))
    # A target critic pair that disagrees a lot, so that beta matters, and a policy network away
    # from its initialization (whose zero output heads ignore the gradient).
    state = state.replace(target_critic_params=_perturbed(state.target_critic_params, jax.random.PRNGKey(5), 1.0),
                          policy_params=_perturbed(state.policy_params, jax.random.PRNGKey(6)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS))
    key = jax.random.PRNGKey(2)

    def actions(a):
        return np.asarray(act(a, state, obs, key, deterministic=True)[0])

    # Acting with beta 1 is acting as an agent trained with beta 1 does, and not as with 2.5.
    np.testing.assert_array_equal(actions(trained), actions(agent(pessimism=1.0, acting_pessimism=None)))
    assert not np.allclose(actions(trained), actions(agent(pessimism=2.5, acting_pessimism=None)), atol=1e-4)


# -- CEM ranks by Q alone -----------------------------------------------------------------------
def test_cem_ranks_samples_by_the_value_not_by_their_density():
    """With alpha large, -alpha log pi(a) dominates the integrand and is largest for the least
    likely samples; ranked by Q alone, CEM still moves to Q's optimum a* = 0.5."""
    obs = jnp.zeros((4, 1))

    def critic(params, o, a):
        del params, o
        q = -10.0 * jnp.sum((a - 0.5) ** 2, axis=-1)
        return jnp.stack([q, q])

    objective = make_objective(critic, None, obs, 50.0, 1.0, 8)
    lam0 = dist.constant(4, 1, 0.0, 0.5)
    lam, _ = cem(objective.integrand, objective, lam0, jax.random.PRNGKey(0), steps=30, samples=64, elites=8,
                 smoothing=0.5)
    np.testing.assert_allclose(np.tanh(np.asarray(dist.split(lam)[0])), 0.5, atol=0.05)


# -- input normalization ----------------------------------------------------------------------
def test_input_normalization_forms_against_numpy():
    x = np.array([[1.0, 2.0, 4.0, -1.0, 0.5, 3.0], [0.1, -0.3, 0.2, 2.0, 2.0, 2.5]], np.float32)  # d = 3
    got = np.asarray(normalize_input(jnp.asarray(x), "reference"))
    for block in (slice(0, 3), slice(3, 6)):
        b = x[:, block]
        want = (b - b.mean(-1, keepdims=True)) / (b.std(-1, ddof=1, keepdims=True) + 1e-7)
        np.testing.assert_allclose(got[:, block], want, rtol=1e-5, atol=1e-6)
    joint = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(normalize_input(jnp.asarray(x), "joint"), joint, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(normalize_input(jnp.asarray(x), "none"), x)
    np.testing.assert_allclose(normalize_input(jnp.asarray(x), "log"), np.sign(x) * np.log1p(np.abs(x)), rtol=1e-6)
    one = np.array([[0.37, -1.2], [-4.0, 0.1]], np.float32)  # d = 1: the reference form keeps magnitudes
    np.testing.assert_array_equal(normalize_input(jnp.asarray(one), "reference"), one)
    np.testing.assert_allclose(np.abs(normalize_input(jnp.asarray(one), "joint")), 1.0, rtol=1e-5)


def _toy():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "input_norm.py"
    spec = importlib.util.spec_from_file_location("input_norm_toy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_normalization_finds_a_hidden_optimum_at_d_one():
    """The optimum a* is drawn per state and hidden from the network, so only grad_lambda J can
    lead to it; with d = 1 the joint form leaves the network only signs."""
    toy = _toy()
    assert AgentConfig().input_norm == "reference"
    assert toy.final_error("reference", act_dim=1) <= 0.02
    assert toy.final_error("joint", act_dim=1) > 0.05


# -- model-based value --------------------------------------------------------------------------
@pytest.mark.parametrize("horizon", [1, 2, 3])
def test_model_based_value_is_the_hand_computed_lambda_return(horizon):
    gamma, alpha, beta, trace = 0.9, 0.4, 2.0, 0.7
    cfg = AgentConfig(value="model-based", horizon=horizon, retrace_lambda=trace, gamma=gamma,
                      pessimism_std="unbiased")
    agent = StubAgent(cfg, OBS, ACT)
    target = _critic_params([1.0, 2.5])
    state = _state(agent, _critic_params([0.0, 0.0]), target, alpha)
    s0 = np.array([[0.5, -0.2, 1.0], [-1.0, 0.3, 0.0]], np.float32)
    a0 = np.array([[[0.1, 0.9], [-0.5, 0.2]]], np.float32)  # (M = 1, B = 2, d)
    log_pi0 = np.array([[-0.4, 0.3]], np.float32)
    value = make_model_based_value(agent.rollouts, state.model_params, agent.objective_critic_params(state),
                                   state.policy_params, jnp.exp(state.log_alpha), jnp.asarray(s0),
                                   jax.random.PRNGKey(0), beta)
    got, aux = value(jnp.asarray(a0), jnp.asarray(log_pi0))

    m, v, u = LinearModel(), np.array([0.2, -0.1, 0.4]), np.array([0.7, -0.3])

    def q_hat(s, a):
        base = s @ v + a @ u
        return _q_hat(1.0 + base, 2.5 + base, beta, "unbiased")

    kl_next = FIXED_LOG_PI + ACT * math.log(2)
    want = np.zeros(2)
    for b in range(2):
        s, a, rewards, g = s0[b].astype(np.float64), a0[0, b].astype(np.float64), [], []
        for t in range(horizon):  # G_n = sum_{t<n} g^t r_t - alpha sum_{1<=t<=n} g^t KL_t + g^n Q(s_n, a_n)
            rewards.append(s @ m.w + a @ m.z)
            s = s + s @ m.A + a @ m.Bm
            a = FIXED_ACTION.astype(np.float64)
            n = t + 1
            g.append(sum(gamma**i * r for i, r in enumerate(rewards))
                     - alpha * sum(gamma**i * kl_next for i in range(1, n + 1)) + gamma**n * q_hat(s, a))
        weights = [(1 - trace) * trace ** (n - 1) for n in range(1, horizon)] + [trace ** (horizon - 1)]
        want[b] = sum(w * gn for w, gn in zip(weights, g))
    np.testing.assert_allclose(np.asarray(aux["q"])[0], want, rtol=1e-5)
    kl0 = log_pi0[0] + ACT * math.log(2)
    np.testing.assert_allclose(np.asarray(got)[0], want - alpha * kl0, rtol=1e-5)
