"""Flax modules: MLPs, the twin critic, and the two policy networks (direct and iterative)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from iapo.precision import bf16_dot_general


class MLP(nn.Module):
    """ReLU hidden layers, then a linear output layer (zero-initialized when asked). With
    `bf16_hidden`, the hidden layers multiply bfloat16 operands into float32 results (the same
    parameters; `iapo.precision`); the output layer stays float32 (a narrow output multiplies no
    faster in bfloat16, and XLA:CPU's matrix-vector path rejects bfloat16 operands).

    Called with a second input, `mlp(x, y)`, the network reads the concatenation [x, y] but its
    first layer computes x W_x + y W_y + b (`PairDense`), so that x may have fewer leading axes
    than y: x's part is computed once and broadcast (a state's, across its action samples)."""

    hidden_sizes: Sequence[int]
    out_dim: int
    zero_init_output: bool = False
    bf16_hidden: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        dot = bf16_dot_general if self.bf16_hidden else None
        for i, width in enumerate(self.hidden_sizes):
            if i == 0 and y is not None:
                x = nn.relu(PairDense(width, dot_general=dot, name="Dense_0")(x, y))
            else:
                x = nn.relu(nn.Dense(width, dot_general=dot, name=f"Dense_{i}")(x))
        init = nn.initializers.zeros if self.zero_init_output else nn.initializers.lecun_normal()
        return nn.Dense(self.out_dim, kernel_init=init, name=f"Dense_{len(self.hidden_sizes)}")(x)


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

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        dx = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (dx + y.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
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

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, bf16_hidden=self.bf16_hidden)(obs, action)[..., 0]


class TwinCritic(nn.Module):
    """`n_critics` independent critics as one vmapped module: output (n_critics, ...). Their
    parameters are stacked on a leading axis; `separate` applies them one critic after the other
    instead of as one batched computation (same numbers, another compiled layout). `bf16_hidden`:
    see `MLP`."""

    hidden_sizes: Sequence[int]
    n_critics: int = 2
    separate: bool = False
    bf16_hidden: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        if self.separate and not self.is_initializing():
            members = self.variables["params"]["VmapCritic_0"]
            critic = Critic(self.hidden_sizes, self.bf16_hidden)
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
        return ensemble(self.hidden_sizes, self.bf16_hidden)(obs, action)


class DirectPolicyNet(nn.Module):
    """f_phi(s) -> raw lambda = (mu, log sigma) before the log-sigma clamp (Eq. 10)."""

    hidden_sizes: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 2 * self.act_dim)(obs)


class IterativeNet(nn.Module):
    """f_phi(s, lambda, grad J) -> update delta and gate logits, each (..., 2d) (Eq. 11-12).

    Both output layers start at zero, so initially the gate is 0.5 and the update 0.
    """

    hidden_sizes: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = obs
        for i, width in enumerate(self.hidden_sizes):
            layer = PairDense(width, split=True, name="Dense_0") if i == 0 else nn.Dense(width, name=f"Dense_{i}")
            h = nn.relu(layer(h, z) if i == 0 else layer(h))
        zeros = nn.initializers.zeros
        delta = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="update")(h)
        gate_logits = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="gate")(h)
        return delta, gate_logits
