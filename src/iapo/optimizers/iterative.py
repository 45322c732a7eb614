"""Iterative amortization (IAPO, Alg. 2, Eq. 11-12): lambda <- f_phi(s, lambda, grad_lambda J).

Starting from a fixed lambda_0, each of K iterations estimates grad_lambda J with fresh
reparameterized samples, feeds [s, norm(lambda_k), norm(g_k)] (both stop-gradient) to the
network, and applies the gated update of Eq. 12:

    lambda_{k+1} = omega * sg(lambda_k) + (1 - omega) * delta.

The training loss is the mean over iterates k = 1..K of -J(lambda_k; s) (or the final iterate
only). Because lambda_k is computed from stop-gradient inputs, each term reaches phi only through
the network application that produced lambda_k. The term -J(lambda_k) is evaluated with the same
samples that give g_k, so it costs no extra critic pass: its gradient with respect to lambda_k
*is* g_k, and the loss uses the surrogate J + <lambda_k - sg(lambda_k), sg(g_k)>, whose value is
J and whose gradient in phi is g_k . d lambda_k / d phi, the exact path-wise gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from iapo import distributions as dist
from iapo.networks import IterativeNet
from iapo.objective import Objective, value_and_grad
from iapo.optimizers.direct import LambdaPolicy

sg = jax.lax.stop_gradient


def standardize(x: jax.Array, eps: float = 1e-7) -> jax.Array:
    """Per-sample normalization across the last axis: mean 0, std 1, no learned scale."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    std = jnp.std(x, axis=-1, keepdims=True)
    return (x - mean) / (std + eps)


@dataclasses.dataclass(frozen=True)
class IterativeOptimizer(LambdaPolicy):
    act_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    log_scale_bounds: tuple[float, float] = (-5.0, 2.0)
    iterations: int = 5
    init_mean: float = 0.0
    init_scale: float = 0.5
    final_iterate_loss: bool = False
    unroll: bool = False  # unroll the K iterations in the compiled program (same numbers)

    @property
    def net(self) -> IterativeNet:
        return IterativeNet(self.hidden_sizes, self.act_dim)

    def init(self, key: jax.Array, obs_dim: int):
        return self.net.init(key, jnp.zeros((1, obs_dim + 4 * self.act_dim)))

    def initial_lam(self, batch: int) -> jax.Array:
        """The fixed lambda_0 (B, 2d): mean `init_mean`, sigma `init_scale` before the tanh."""
        return dist.constant(batch, self.act_dim, self.init_mean, self.init_scale)

    def step(self, params, obs, objective: Objective, lam, key):
        """One iteration (Eq. 11-12): returns lambda_{k+1} and (J(lambda_k) surrogate, aux)."""
        j, aux, grad = value_and_grad(objective, sg(lam), key)  # (B,), {.}, (B, 2d)
        inputs = jnp.concatenate([obs, standardize(sg(lam)), standardize(grad)], axis=-1)
        delta, gate_logits = self.net.apply(params, inputs)
        gate = jax.nn.sigmoid(gate_logits)
        new_lam = gate * sg(lam) + (1.0 - gate) * delta  # Eq. 12
        mean, log_scale = dist.split(new_lam)
        new_lam = dist.join(mean, dist.soft_clamp(log_scale, *self.log_scale_bounds))
        surrogate = j + jnp.sum((lam - sg(lam)) * grad, axis=-1)  # value J, gradient via lam
        return new_lam, (surrogate, aux)

    def _iterate(self, params, obs, objective, key, iterations: int):
        """K iterations under lax.scan: lambda_K and the per-iterate (J surrogate, aux) of 0..K-1."""

        def body(lam, k):
            return self.step(params, obs, objective, lam, k)

        keys = jax.random.split(key, iterations)
        lam0 = self.initial_lam(obs.shape[0])
        # lam_K, ((K, B), aux of (K, B))
        return jax.lax.scan(body, lam0, keys, unroll=iterations if self.unroll else 1)

    def optimize(self, params, obs, objective: Objective, key, iterations: int | None = None):
        lam, (js, _) = self._iterate(params, obs, objective, key, iterations or self.iterations)
        return lam, {"objective_per_iteration": jnp.mean(js, axis=-1)}

    def loss(self, params, obs, objective: Objective, key):
        """(1/K) sum_{k=1..K} -J(lambda_k; s), or -J(lambda_K; s) with `final_iterate_loss`."""
        key_iter, key_last = jax.random.split(key)
        lam, (js, _) = self._iterate(params, obs, objective, key_iter, self.iterations)
        j_last, aux, grad = value_and_grad(objective, sg(lam), key_last)
        j_last = j_last + jnp.sum((lam - sg(lam)) * grad, axis=-1)
        # J at lambda_1..lambda_K, (K, B); js[0] belongs to the fixed lambda_0 and has no gradient.
        j_iterates = jnp.concatenate([js[1:], j_last[None]], axis=0)
        j_train = j_last if self.final_iterate_loss else j_iterates
        info = {
            "kl": aux["kl"],
            "lam": lam,
            "objective_per_iteration": jnp.concatenate([jnp.mean(js, -1), jnp.mean(j_last)[None]]),
        }
        return -jnp.mean(j_train), info
