"""Direct amortization (SAC's policy network, Alg. 1, Eq. 10): lambda = f_phi(s)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from iapo import distributions as dist
from iapo.config import LOG_SCALE_BOUNDS
from iapo.networks import DirectPolicyNet
from iapo.objective import Objective


class LambdaPolicy:
    """Acting from lambda: the tanh-Gaussian's sample and mode. (The flow policy overrides both:
    its actions depend on its parameters and the state, not on lambda alone.)"""

    def sample(self, params, obs, lam, key) -> tuple[jax.Array, jax.Array]:
        """a ~ pi (B, d) and log pi(a) (B,)."""
        del params, obs
        return dist.sample(lam, key)

    def mode(self, params, obs, lam) -> jax.Array:
        """The deterministic action (B, d) used at evaluation: tanh(mu)."""
        del params, obs
        return dist.mode(lam)


@dataclasses.dataclass(frozen=True)
class DirectOptimizer(LambdaPolicy):
    act_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS
    weight_init: str = "lecun"  # networks.layer_init's scheme

    @property
    def net(self) -> DirectPolicyNet:
        return DirectPolicyNet(self.hidden_sizes, self.act_dim, self.weight_init)

    def init(self, key: jax.Array, obs_dim: int):
        return self.net.init(key, jnp.zeros((1, obs_dim)))

    def estimate(self, params, obs: jax.Array) -> jax.Array:
        """lambda = f_phi(s), (B, 2d), with log sigma softly clamped."""
        mean, log_scale = dist.split(self.net.apply(params, obs))
        return dist.join(mean, dist.soft_clamp(log_scale, *self.log_scale_bounds))

    def optimize(self, params, obs, objective: Objective, key, iterations: int | None = None):
        del objective, key, iterations  # a direct estimate uses no feedback
        return self.estimate(params, obs), {}

    def loss(self, params, obs, objective: Objective, key):
        """-J(f_phi(s); s), averaged over the batch."""
        lam = self.estimate(params, obs)
        j, aux = objective(lam, key)
        info = {
            "kl": aux["kl"],
            "lam": lam,
            "objective_per_iteration": jnp.mean(j)[None],  # (1,)
        }
        return -jnp.mean(j), info
