"""A training step's device work as one jitted call: the step's updates, then the training action
for the next observation, so that per environment step the host makes one call and waits once.

Two forms, by where the replay buffer is sampled (`TrainConfig.replay_sampling`):

- `train_step`: the host samples (from its `ReplayBuffer`) and sends the batches as one packed
  array; the right choice on a CPU, where host and device share memory.
- `train_step_on_device`: the device holds a copy of the buffer (`DeviceReplay`), so the host
  sends only the step's new transition and the observation to act on, and reads the action
  back: the unavoidable transfers. The host buffer stays the one that checkpoints save; the copy
  is rebuilt from it (`mirror`) on the first policy step and after a resume.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent, AgentState, _act, _over_seeds, _update
from iapo.replay import ReplayBuffer, batch_width, unpack_batch


def _update_packed(agent: Agent, state: AgentState, packed: jax.Array):
    """One update on a packed batch (B, batch_width)."""
    return _update(agent, state, unpack_batch(packed, agent.obs_dim, agent.act_dim))


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def train_step(agent: Agent, state: AgentState, batches: jax.Array, obs: jax.Array, key: jax.Array):
    """The updates on `batches` ([S,] U, B, width), U packed batches updated on in turn, then the
    training action for the next states `obs` ([S,] 1, obs_dim) with the updated state.
    Returns (state, infos with a leading U axis after the seed axis, actions ([S,] 1, d), keys)."""

    def one_seed(state, batches, obs, key):
        state, infos = jax.lax.scan(functools.partial(_update_packed, agent), state, batches)
        action, key = _act(agent, state, obs, key)
        return state, infos, action, key

    return _over_seeds(one_seed, state, batches, obs, key)


class DeviceReplay(flax.struct.PyTreeNode):
    """A seed's replay buffer in device memory: transition t (counted over the run) in row
    t mod C of `rows` (C, width), packed as `ReplayBuffer.pack` packs it, next observation
    included (twice the observation memory of the host buffer, which stores each one once)."""

    rows: jax.Array  # (C, width)
    added: jax.Array  # () int32: transitions added over the run
    key: jax.Array  # (2,) uint32: the sampling key


def mirror(buffers: list[ReplayBuffer], stops: list[int], keys, stacked: bool) -> DeviceReplay:
    """The device copy of each host buffer's transitions before its `stops` entry (those still in
    it), with sampling keys `keys` ([S,] 2): stacked on a leading seed axis when `stacked`. The
    rows are gathered on the host into one array and sent once."""
    capacity = buffers[0].capacity
    width = batch_width(buffers[0].obs.shape[1], buffers[0].action.shape[1])
    rows = np.zeros((len(buffers), capacity, width), np.float32)
    for buffer, stop, out in zip(buffers, stops, rows):
        t = np.arange(max(buffer.first, stop - capacity), stop)
        out[t % capacity] = buffer.pack(t, np.empty((len(t), width), np.float32))
    added = np.asarray(stops, np.int32)
    if not stacked:
        rows, added = rows[0], added[0]
    # (a copy of the keys: the step donates the replay, and the caller keeps its keys)
    return DeviceReplay(rows=jnp.asarray(rows), added=jnp.asarray(added), key=jnp.array(keys, copy=True))


def replay_add(replay: DeviceReplay, row: jax.Array) -> DeviceReplay:
    """Add one packed transition (width,)."""
    capacity = replay.rows.shape[0]
    rows = jax.lax.dynamic_update_slice(replay.rows, row[None].astype(replay.rows.dtype),
                                        (replay.added % capacity, jnp.zeros((), replay.added.dtype)))
    return replay.replace(rows=rows, added=replay.added + 1)


def replay_sample(replay: DeviceReplay, batch_size: int) -> tuple[DeviceReplay, jax.Array]:
    """B transitions drawn uniformly, with replacement, from those in the buffer: (B, width)."""
    capacity = replay.rows.shape[0]
    key, k = jax.random.split(replay.key)
    size = jnp.minimum(replay.added, capacity)
    t = replay.added - size + jax.random.randint(k, (batch_size,), 0, size)
    return replay.replace(key=key), replay.rows[t % capacity]


@functools.partial(jax.jit, static_argnames=("agent", "updates"), donate_argnames=("state", "replay"))
def train_step_on_device(agent: Agent, state: AgentState, replay: DeviceReplay, row: jax.Array, obs: jax.Array,
                         key: jax.Array, updates: int):
    """Add the step's transition `row` ([S,] width) to the device buffer, make `updates` updates
    on batches sampled there, then act for `obs` ([S,] 1, obs_dim). Returns (state, replay,
    infos ([S,] U, ...), actions ([S,] 1, d), keys)."""

    def one_seed(state, replay, row, obs, key):
        replay = replay_add(replay, row)

        def body(carry, _):
            state, replay = carry
            replay, packed = replay_sample(replay, agent.config.batch_size)
            state, info = _update_packed(agent, state, packed)
            return (state, replay), info

        (state, replay), infos = jax.lax.scan(body, (state, replay), None, length=updates)
        action, key = _act(agent, state, obs, key)
        return state, replay, infos, action, key

    return _over_seeds(one_seed, state, replay, row, obs, key)
