"""Independent seeds trained together, and how their arrays are held.

A state whose arrays have a leading seed axis (S, ...) is updated, or acted for, by one compiled
call, and then every other argument has that axis too; a lone seed's state has no seed axis and
is not mapped. (On XLA:CPU a vmap of size 1 leaves batched dots and layout copies behind: the
direct update ran 1.13x as long through it as unbatched; benchmarks/update_variants.py. Slicing
the axis away inside the compiled call instead changes the rounding of some updates: a lone
seed's run would no longer equal the same run of an earlier version.) `over_seeds` is the one
place in the compiled code, and `SeedAxis` the one place on the host, that decide this.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def over_seeds(mapping: str, fn, state, *args):
    """fn(state, *args) for each seed: vmapped (`mapping` "vmap"), or one seed after the other
    ("map", `lax.map`: each seed runs a lone seed's unbatched computations); a state without a
    seed axis (its `updates` counter is a scalar) is passed through unmapped."""
    if state.updates.ndim == 0:
        return fn(state, *args)
    if mapping == "map":
        return jax.lax.map(lambda xs: fn(*xs), (state, *args))
    return jax.vmap(fn)(state, *args)


def stack(trees: list):
    """Stack pytrees of the same structure on a new leading (seed) axis (NumPy leaves stay NumPy)."""
    return jax.tree.map(lambda *xs: np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs), *trees)


@dataclasses.dataclass(frozen=True)
class SeedAxis:
    """How S seeds' arrays are held for the compiled calls: on a leading seed axis, or, for one
    seed, without it (see `over_seeds`). The training loop builds and reads every per-seed array
    with the axis and passes it through `native` on the way in and `with_axis` on the way out."""

    seeds: int

    @property
    def mapped(self) -> bool:
        return self.seeds > 1

    def stack(self, trees: list):
        """The seeds' pytrees (one each) in the compiled calls' form."""
        return stack(trees) if self.mapped else trees[0]

    def native(self, tree):
        """A pytree with the seed axis (S, ...) in the compiled calls' form (host arrays: a view)."""
        return tree if self.mapped else jax.tree.map(lambda x: x[0], tree)

    def with_axis(self, tree):
        """A pytree in the compiled calls' form, on the host, with the seed axis (S, ...)."""
        return tree if self.mapped else jax.tree.map(lambda x: np.asarray(x)[None], tree)

    def take(self, tree, i: int):
        """Seed i's part of a pytree in the compiled calls' form."""
        return jax.tree.map(lambda x: x[i], tree) if self.mapped else tree
