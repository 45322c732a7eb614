"""Flax modules: MLPs, the twin critic, and the two policy networks (direct and iterative)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from iapo.precision import bf16_dot_general


class MLP(nn.Module):
    """ReLU hidden layers, then a linear output layer (zero-initialized when asked). With
    `bf16_hidden`, the hidden layers multiply bfloat16 operands into float32 results (the same
    parameters; `iapo.precision`); the output layer stays float32 (a narrow output multiplies no
    faster in bfloat16, and XLA:CPU's matrix-vector path rejects bfloat16 operands)."""

    hidden_sizes: Sequence[int]
    out_dim: int
    zero_init_output: bool = False
    bf16_hidden: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dot = bf16_dot_general if self.bf16_hidden else None
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width, dot_general=dot)(x))
        init = nn.initializers.zeros if self.zero_init_output else nn.initializers.lecun_normal()
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenation of state and action, scalar output."""

    hidden_sizes: Sequence[int]
    bf16_hidden: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, 1, bf16_hidden=self.bf16_hidden)(x)[..., 0]


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
    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = inputs
        for width in self.hidden_sizes:
            h = nn.relu(nn.Dense(width)(h))
        zeros = nn.initializers.zeros
        delta = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="update")(h)
        gate_logits = nn.Dense(2 * self.act_dim, kernel_init=zeros, name="gate")(h)
        return delta, gate_logits
