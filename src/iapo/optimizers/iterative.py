"""Iterative amortization (IAPO, Alg. 2, Eq. 11-12): lambda <- f_phi(s, lambda, grad_lambda J).

Starting from a fixed lambda_0, each of K iterations estimates grad_lambda J with fresh
reparameterized samples, feeds [s, norm(lambda_k), norm(g_k)] (both stop-gradient; `norm` is
`normalize_input`, by default the reference code's per-block standardization) to the network,
and applies the gated update of Eq. 12:

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
from iapo.config import LOG_SCALE_BOUNDS
from iapo.networks import IterativeNet
from iapo.objective import Objective, value_and_grad
from iapo.optimizers.direct import LambdaPolicy

sg = jax.lax.stop_gradient


def standardize(x: jax.Array, eps: float = 1e-7, ddof: int = 0) -> jax.Array:
    """Normalization across the last axis: mean 0, std 1 (std with `ddof`), no learned scale."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    std = jnp.std(x, axis=-1, keepdims=True, ddof=ddof)
    return (x - mean) / (std + eps)


def normalize_input(x: jax.Array, form: str) -> jax.Array:
    """The iterative network's view of lambda_k or grad_lambda J, x (..., 2d) = [mean block,
    log-sigma block], in the normalization `form` (the config's `input_norm`):

    - `reference`: each block standardized across its d entries with the unbiased std + 1e-7,
      as the reference code does; a block of one entry (d = 1) is passed as it is (the unbiased
      std of one number is undefined: the reference would feed NaN);
    - `joint`: the whole 2d vector standardized at once with the biased std (with d = 1 only
      the signs survive);
    - `none`: x itself;
    - `log`: sign(x) log(1 + |x|) elementwise, which keeps order and magnitude but compresses it.
    """
    if form == "none":
        return x
    if form == "log":
        return jnp.sign(x) * jnp.log1p(jnp.abs(x))
    if form == "joint":
        return standardize(x)
    if form != "reference":
        raise ValueError(f"unknown input normalization {form!r}")
    if x.shape[-1] == 2:  # d = 1
        return x
    mean, log_scale = dist.split(x)
    return dist.join(standardize(mean, ddof=1), standardize(log_scale, ddof=1))


@dataclasses.dataclass(frozen=True)
class IterativeOptimizer(LambdaPolicy):
    act_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS
    iterations: int = 5
    init_mean: float = 0.0
    init_scale: float = 0.5
    final_iterate_loss: bool = False
    input_norm: str = "reference"  # normalize_input's form for lambda_k and grad_lambda J
    unroll: bool = False  # unroll the K iterations in the compiled program (same numbers)
    weight_init: str = "lecun"  # networks.layer_init's scheme, for the hidden layers

    @property
    def net(self) -> IterativeNet:
        return IterativeNet(self.hidden_sizes, self.act_dim, self.weight_init)

    def init(self, key: jax.Array, obs_dim: int):
        return self.net.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, 4 * self.act_dim)))

    def initial_lam(self, batch: int) -> jax.Array:
        """The fixed lambda_0 (B, 2d): mean `init_mean`, sigma `init_scale` before the tanh."""
        return dist.constant(batch, self.act_dim, self.init_mean, self.init_scale)

    def step(self, params, obs, objective: Objective, lam, key):
        """One iteration (Eq. 11-12): returns lambda_{k+1} and (J(lambda_k) surrogate, aux)."""
        j, aux, grad = value_and_grad(objective, sg(lam), key)  # (B,), {.}, (B, 2d)
        z = jnp.concatenate([normalize_input(sg(lam), self.input_norm), normalize_input(grad, self.input_norm)], -1)
        delta, gate_logits = self.net.apply(params, obs, z)  # [obs, z] with obs's part of the first layer apart
        gate = jax.nn.sigmoid(gate_logits)
        new_lam = gate * sg(lam) + (1.0 - gate) * delta  # Eq. 12
        mean, log_scale = dist.split(new_lam)
        new_lam = dist.join(mean, dist.soft_clamp(log_scale, *self.log_scale_bounds))
        surrogate = j + jnp.sum((lam - sg(lam)) * grad, axis=-1)  # value J, gradient via lam
        return new_lam, (surrogate, aux)

    def iterate(self, params, obs, objective, key, iterations: int, lam0: jax.Array | None = None):
        """K = `iterations` iterations from lambda_0 (the fixed `initial_lam`, or `lam0` (B, 2d))
        under lax.scan. Iteration k (0-based) draws its samples with the k-th key of
        `jax.random.split(key, iterations)`.

        Returns lambda_K and a dict of per-iterate arrays: `objective` (K, B), J at lambda_0 ..
        lambda_{K-1} (as surrogates whose gradient reaches the parameters through lambda_k),
        `aux` (J's q and kl parts, each (K, B)) and `iterates` (K, B, 2d), lambda_1 .. lambda_K.
        """

        def body(lam, k):
            new_lam, (surrogate, aux) = self.step(params, obs, objective, lam, k)
            return new_lam, {"objective": surrogate, "aux": aux, "iterates": new_lam}

        keys = jax.random.split(key, iterations)
        lam0 = self.initial_lam(obs.shape[0]) if lam0 is None else lam0
        return jax.lax.scan(body, lam0, keys, unroll=iterations if self.unroll else 1)

    def optimize(self, params, obs, objective: Objective, key, iterations: int | None = None):
        lam, out = self.iterate(params, obs, objective, key, iterations or self.iterations)
        return lam, {"objective_per_iteration": jnp.mean(out["objective"], axis=-1)}

    def loss(self, params, obs, objective: Objective, key):
        """(1/K) sum_{k=1..K} -J(lambda_k; s), or -J(lambda_K; s) with `final_iterate_loss`.

        With `key_iter, key_last = jax.random.split(key)`, J(lambda_k) for k < K uses the samples
        of iteration k of `iterate(..., key_iter, K)` and J(lambda_K) those of `key_last`; the
        iterates lambda_1 .. lambda_K are returned in info["iterates"] (K, B, 2d).
        """
        key_iter, key_last = jax.random.split(key)
        lam, out = self.iterate(params, obs, objective, key_iter, self.iterations)
        js = out["objective"]  # (K, B)
        j_last, aux, grad = value_and_grad(objective, sg(lam), key_last)
        j_last = j_last + jnp.sum((lam - sg(lam)) * grad, axis=-1)
        # J at lambda_1..lambda_K, (K, B); js[0] belongs to the fixed lambda_0 and has no gradient.
        j_iterates = jnp.concatenate([js[1:], j_last[None]], axis=0)
        j_train = j_last if self.final_iterate_loss else j_iterates
        info = {
            "kl": aux["kl"],
            "lam": lam,
            "iterates": out["iterates"],
            "objective_per_iteration": jnp.concatenate([jnp.mean(js, -1), jnp.mean(j_last)[None]]),
        }
        return -jnp.mean(j_train), info
