"""Flax modules: MLPs, the twin critic, and the two policy networks (direct and iterative)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from iapo.config import WeightInit
from iapo.precision import bf16_dot_general

Layer = Literal["hidden", "policy", "critic"]  # a ReLU hidden layer, or the policy's or a critic's output layer


def _uniform(bound: float) -> Callable:
    """U(-bound, bound) elementwise, as an initializer."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def layer_init(scheme: WeightInit, layer: Layer, fan_in: int) -> dict[str, Callable]:
    """`kernel_init` and `bias_init` of one dense layer under a weight-initialization scheme:

    - lecun: Flax's default, truncated normal of variance 1/fan_in, zero biases (iapo's default);
    - torch: PyTorch's `nn.Linear` default, weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)):
      the networks of SB3's and CleanRL's SAC;
    - reference: the reference code's (variational_rl): hidden ReLU layers Xavier normal with gain
      sqrt(2) (variance 2 / fan_avg) and biases 0.1; the policy's output layer U(-1e-3, 1e-3) and a
      critic's U(-3e-3, 3e-3), weights and biases."""
    if scheme == "lecun":
        return {"kernel_init": nn.initializers.lecun_normal(), "bias_init": nn.initializers.zeros_init()}
    if scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return {"kernel_init": _uniform(bound), "bias_init": _uniform(bound)}
    if scheme == "reference":
        if layer == "hidden":
            return {"kernel_init": nn.initializers.variance_scaling(2.0, "fan_avg", "normal"),
                    "bias_init": nn.initializers.constant(0.1)}
        bound = 1e-3 if layer == "policy" else 3e-3
        return {"kernel_init": _uniform(bound), "bias_init": _uniform(bound)}
    raise ValueError(f"unknown weight_init {scheme!r}: expected lecun, torch or reference")


class MLP(nn.Module):
    """ReLU hidden layers, then a linear output layer, initialized by `weight_init` (`layer_init`). With
    `bf16_hidden`, the hidden layers multiply bfloat16 operands into float32 results (the same
    parameters; `iapo.precision`); the output layer stays float32 (a narrow output multiplies no
    faster in bfloat16, and XLA:CPU's matrix-vector path rejects bfloat16 operands).

    Called with a second input, `mlp(x, y)`, the network reads the concatenation [x, y] but its
    first layer computes x W_x + y W_y + b (`PairDense`), so that x may have fewer leading axes
    than y: x's part is computed once and broadcast (a state's, across its action samples)."""

    hidden_sizes: Sequence[int]
    out_dim: int
    bf16_hidden: bool = False
    weight_init: WeightInit = "lecun"
    output_layer: Layer = "policy"  # which output layer this is, for `weight_init`

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        dot = bf16_dot_general if self.bf16_hidden else None
        for i, width in enumerate(self.hidden_sizes):
            fan_in = x.shape[-1] + (0 if y is None or i > 0 else y.shape[-1])
            init = layer_init(self.weight_init, "hidden", fan_in)
            if i == 0 and y is not None:
                x = nn.relu(PairDense(width, dot_general=dot, name="Dense_0", **init)(x, y))
            else:
                x = nn.relu(nn.Dense(width, dot_general=dot, name=f"Dense_{i}", **init)(x))
        init = layer_init(self.weight_init, self.output_layer, x.shape[-1])
        return nn.Dense(self.out_dim, name=f"Dense_{len(self.hidden_sizes)}", **init)(x)


class PairDense(nn.Module):
    """A dense layer on the concatenation [x, y] (the same parameters, initialized the same way, as
    `nn.Dense` on it: kernel ((dx + dy), width), bias (width,)), computed as x W_x + y W_y + b with
    broadcasting over leading axes: x (..., dx) against y (..., M, B, dy) costs x's part once per
    row of x, and the gradient with respect to y does not run back through W_x. Where broadcasting
    adds no rows (x and y of the same leading shape, or y's extra axes of size 1: a critic on a
    batch of (state, action) pairs), it is one product of the concatenation, as `nn.Dense` computes
    it: two products with a narrow y are slower there (the direct agent with N = 1, seeds vmapped,
    1.5x slower on Ant-v5) and save nothing."""

    features: int
    dot_general: Callable | None = None
    split: bool = False  # always the two products (x's part then reused across calls at the same x)
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        dx = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (dx + y.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        dot = self.dot_general or jax.lax.dot_general

        def matmul(a, w):
            return dot(a, w, (((a.ndim - 1,), (0,)), ((), ())))

        lead = jnp.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        if not self.split and math.prod(lead) == math.prod(x.shape[:-1]) == math.prod(y.shape[:-1]):
            xy = jnp.concatenate([jnp.broadcast_to(x, (*lead, dx)), jnp.broadcast_to(y, (*lead, y.shape[-1]))], -1)
            return matmul(xy, kernel) + bias
        return matmul(x, kernel[:dx]) + matmul(y, kernel[dx:]) + bias


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenation of state and action, scalar output. The state may
    have fewer leading axes than the action (obs (B, obs_dim) against actions (N, B, d)): its part
    of the first layer is then computed once per state (`PairDense`)."""

    hidden_sizes: Sequence[int]
    bf16_hidden: bool = False
    weight_init: WeightInit = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        mlp = MLP(self.hidden_sizes, 1, bf16_hidden=self.bf16_hidden, weight_init=self.weight_init,
                  output_layer="critic")
        return mlp(obs, action)[..., 0]


class TwinCritic(nn.Module):
    """`n_critics` independent critics as one vmapped module: output (n_critics, ...). Their
    parameters are stacked on a leading axis; `separate` applies them one critic after the other
    instead of as one batched computation (same numbers, another compiled layout). `bf16_hidden`:
    see `MLP`."""

    hidden_sizes: Sequence[int]
    n_critics: int = 2
    separate: bool = False
    bf16_hidden: bool = False
    weight_init: WeightInit = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        if self.separate and not self.is_initializing():
            members = self.variables["params"]["VmapCritic_0"]
            critic = Critic(self.hidden_sizes, self.bf16_hidden, self.weight_init)
            return jnp.stack([critic.apply({"params": jax.tree.map(lambda x, i=i: x[i], members)}, obs, action)
                              for i in range(self.n_critics)])
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(self.hidden_sizes, self.bf16_hidden, self.weight_init)(obs, action)


class DirectPolicyNet(nn.Module):
    """f_phi(s) -> raw lambda = (mu, log sigma) before the log-sigma clamp (Eq. 10)."""

    hidden_sizes: Sequence[int]
    act_dim: int
    weight_init: WeightInit = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 2 * self.act_dim, weight_init=self.weight_init)(obs)


class IterativeNet(nn.Module):
    """f_phi(s, lambda, grad J) -> update delta and gate logits, each (..., 2d) (Eq. 11-12).

    Both output layers start at zero, so initially the gate is 0.5 and the update 0, under every
    `weight_init` (which sets the hidden layers').
    """

    hidden_sizes: Sequence[int]
    act_dim: int
    weight_init: WeightInit = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = obs
        for i, width in enumerate(self.hidden_sizes):
            fan_in = h.shape[-1] + (z.shape[-1] if i == 0 else 0)
            init = layer_init(self.weight_init, "hidden", fan_in)
            if i == 0:
                layer = PairDense(width, split=True, name="Dense_0", **init)
            else:
                layer = nn.Dense(width, name=f"Dense_{i}", **init)
            h = nn.relu(layer(h, z) if i == 0 else layer(h))
        zeros = nn.initializers.zeros
        delta = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="update")(h)
        gate_logits = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="gate")(h)
        return delta, gate_logits
