"""Direct amortization with a normalizing-flow policy (paper appendix B.2): a more expressive,
possibly multi-modal, direct baseline.

The policy network gives a Gaussian's lambda = (mu, log sigma) as SAC's does; its sample
u_0 = mu + sigma * eps passes through K affine inverse autoregressive transforms

    u_{k+1} = u_k * exp(s_k(u_k; s)) + m_k(u_k; s),

whose shift m and log-scale s at dimension i depend only on the dimensions before i (masked,
strictly lower-triangular networks of 2 hidden layers, also fed the state), with the order of the
dimensions reversed between transforms, and then through the tanh. Every Jacobian is triangular,
so the log-density is exact:

    log pi(a) = log N(u_0; mu, sigma) - sum_k sum_i s_k,i - sum_i log(1 - tanh(u_K,i)^2).

The transforms' output layers start at zero: an untrained flow policy is the tanh-Gaussian of
its base. The policy is trained like SAC's, on -J with N samples (Eq. 8, 10), with the same
temperature.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from iapo import distributions as dist
from iapo.config import LOG_SCALE_BOUNDS
from iapo.networks import DirectPolicyNet
from iapo.objective import MonteCarloObjective
from iapo.optimizers.direct import LambdaPolicy



def made_masks(act_dim: int, hidden_sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Masks of a MADE network whose output i depends only on inputs j < i (0-based).

    Input j has degree j + 1; hidden unit k of a layer has degree k mod d (0 .. d-1: a unit of
    degree m sees inputs 1 .. m); output i has degree i + 1 and sees hidden units of lower
    degree. Returns the (in, out) masks of each layer, the last for the output layer.
    """
    degrees = [np.arange(1, act_dim + 1)]
    degrees += [np.arange(width) % act_dim for width in hidden_sizes]
    masks = [(d_in[:, None] <= d_out[None, :]).astype(np.float32) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((degrees[-1][:, None] < np.arange(1, act_dim + 1)[None, :]).astype(np.float32))
    return masks


class MaskedDense(nn.Module):
    features: int
    mask_index: int
    act_dim: int
    hidden_sizes: tuple[int, ...]
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mask = jnp.asarray(made_masks(self.act_dim, self.hidden_sizes)[self.mask_index])
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (kernel * mask) + bias


class AffineIAF(nn.Module):
    """Shift m and log-scale s (each (..., d)) of u, output i depending on u_{<i} and the state."""

    act_dim: int
    hidden_sizes: tuple[int, ...] = (64, 64)

    @nn.compact
    def __call__(self, u: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        d, sizes = self.act_dim, self.hidden_sizes
        # The state enters the first hidden layer unmasked: (B, H) broadcast against (..., B, H).
        h = MaskedDense(sizes[0], 0, d, sizes)(u) + nn.Dense(sizes[0], use_bias=False)(context)
        h = nn.relu(h)
        for i, width in enumerate(sizes[1:], start=1):
            h = nn.relu(MaskedDense(width, i, d, sizes)(h))
        shift = MaskedDense(d, len(sizes), d, sizes, zero_init=True, name="shift")(h)
        log_scale = MaskedDense(d, len(sizes), d, sizes, zero_init=True, name="log_scale")(h)
        return shift, 3.0 * jnp.tanh(log_scale / 3.0)  # in (-3, 3), identity near 0


class FlowPolicy(nn.Module):
    """(state, noise) -> (action, log pi(action), base lambda)."""

    hidden_sizes: tuple[int, ...]
    act_dim: int
    transforms: int = 2
    flow_hidden_sizes: tuple[int, ...] = (64, 64)
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS
    weight_init: str = "lecun"  # the base network's (networks.layer_init); the flow's own layers keep Flax's

    def setup(self):
        self.base = DirectPolicyNet(self.hidden_sizes, self.act_dim, self.weight_init)
        self.flows = [AffineIAF(self.act_dim, self.flow_hidden_sizes) for _ in range(self.transforms)]

    def lam(self, obs: jax.Array) -> jax.Array:
        """The base Gaussian's lambda (B, 2d), log sigma softly clamped."""
        mean, log_scale = dist.split(self.base(obs))
        return dist.join(mean, dist.soft_clamp(log_scale, *self.log_scale_bounds))

    def push(self, u: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """u_0 (..., B, d) -> u_K and sum_k log|det du_{k+1}/du_k| (..., B)."""
        log_det = jnp.zeros(u.shape[:-1], u.dtype)
        for k, flow in enumerate(self.flows):
            if k:
                u = u[..., ::-1]  # reversal between transforms
            shift, log_scale = flow(u, obs)
            u = u * jnp.exp(log_scale) + shift
            log_det = log_det + jnp.sum(log_scale, axis=-1)
        if self.transforms > 1 and self.transforms % 2 == 0:
            u = u[..., ::-1]  # back to the action's order (a permutation: no volume change)
        return u, log_det

    def invert(self, u_k: jax.Array, obs: jax.Array) -> jax.Array:
        """u_K -> u_0 exactly: each transform is inverted dimension by dimension (d passes)."""
        u = u_k
        if self.transforms > 1 and self.transforms % 2 == 0:
            u = u[..., ::-1]
        for k in reversed(range(self.transforms)):
            z = jnp.zeros_like(u)
            for _ in range(self.act_dim):  # pass i fixes dimension i; the later ones follow
                shift, log_scale = self.flows[k](z, obs)
                z = (u - shift) * jnp.exp(-log_scale)
            u = z[..., ::-1] if k else z
        return u

    def __call__(self, obs: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Actions (..., B, d) and log pi (..., B) for noise eps (..., B, d); base lambda (B, 2d)."""
        lam = self.lam(obs)
        mean, log_scale = dist.split(lam)
        u0 = mean + jnp.exp(log_scale) * eps
        log_q0 = jnp.sum(dist.gaussian_log_density(eps, log_scale), axis=-1)
        u, log_det = self.push(u0, obs)
        log_pi = log_q0 - log_det - jnp.sum(dist.log_one_minus_tanh_sq(u), axis=-1)
        return jnp.tanh(u), log_pi, lam


@dataclasses.dataclass(frozen=True)
class FlowOptimizer(LambdaPolicy):
    """The direct-flow policy optimizer: `optimize` gives the base lambda; acting and critic
    targets sample through the flow (`sample`, `mode`)."""

    act_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    log_scale_bounds: tuple[float, float] = LOG_SCALE_BOUNDS
    transforms: int = 2
    flow_hidden_sizes: tuple[int, ...] = (64, 64)
    weight_init: str = "lecun"

    @property
    def net(self) -> FlowPolicy:
        return FlowPolicy(self.hidden_sizes, self.act_dim, self.transforms, self.flow_hidden_sizes,
                          self.log_scale_bounds, self.weight_init)

    def init(self, key: jax.Array, obs_dim: int):
        return self.net.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, self.act_dim)))

    def optimize(self, params, obs, objective, key, iterations: int | None = None):
        del objective, key, iterations
        return self.net.apply(params, obs, method=FlowPolicy.lam), {}

    def sample(self, params, obs, lam, key):
        del lam
        eps = jax.random.normal(key, (*obs.shape[:-1], self.act_dim), obs.dtype)
        actions, log_pi, _ = self.net.apply(params, obs, eps)
        return actions, log_pi

    def mode(self, params, obs, lam):
        """The flow's image of the base mean: tanh(flow(mu))."""
        del lam
        actions, _, _ = self.net.apply(params, obs, jnp.zeros((*obs.shape[:-1], self.act_dim), obs.dtype))
        return actions

    def loss(self, params, obs, objective: MonteCarloObjective, key):
        """-J averaged over the batch, J estimated with the objective's N flow samples per state."""
        eps = jax.random.normal(key, (objective.n_samples, obs.shape[0], self.act_dim), obs.dtype)
        actions, log_pi, lam = self.net.apply(params, obs, eps)  # (N, B, d), (N, B)
        values, aux = objective.action_value(actions, log_pi)  # (N, B)
        j = jnp.mean(values, axis=0)
        info = {"kl": jnp.mean(aux["kl"], axis=0), "lam": lam, "objective_per_iteration": jnp.mean(j)[None]}
        return -jnp.mean(j), info
