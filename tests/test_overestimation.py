"""The Monte Carlo soft return and the policy KL match values known in closed form."""

import gymnasium as gym
import numpy as np
import pytest

from iapo import distributions as dist
from iapo.analysis.overestimation import gaussian_kl, mc_soft_returns


class ConstantRewardEnv(gym.Env):
    """Reward 1 at every step, never terminates; terminates at step `end` when given."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def __init__(self, end=None):
        self.end, self.t = end, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.end is not None and self.t >= self.end, False, {}


@pytest.mark.parametrize("end", [None, 4])
def test_monte_carlo_soft_return_is_the_discounted_sum(end):
    gamma, alpha, horizon, log_pi, d = 0.9, 0.2, 10, -1.5, 3
    envs = [ConstantRewardEnv(end) for _ in range(2)]
    for env in envs:
        env.reset()

    def policy(obs):
        return np.zeros((len(obs), d), np.float32), np.full(len(obs), log_pi)

    returns = mc_soft_returns(envs, np.zeros((2, d)), policy, gamma, alpha, horizon)
    steps = horizon if end is None else end
    t = np.arange(steps)
    expected = np.sum(gamma**t) - alpha * np.sum(gamma ** t[1:]) * (log_pi + d * np.log(2.0))
    np.testing.assert_allclose(returns, expected, rtol=1e-12)


def test_gaussian_kl_in_closed_form():
    lam = dist.join(np.array([[0.3, -0.2]]), np.array([[0.0, np.log(0.5)]]))
    np.testing.assert_allclose(gaussian_kl(lam, lam), 0.0, atol=1e-7)
    shifted = dist.join(np.array([[1.3, -0.2]]), np.array([[0.0, np.log(0.5)]]))  # mean + 1 where sigma = 1
    np.testing.assert_allclose(gaussian_kl(lam, shifted), 0.5, rtol=1e-6)
