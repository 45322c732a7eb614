"""A training step's device work as one jitted call: the step's updates, then the training action
for the next observation, so that per environment step the host makes one call and waits once.

Where the replay buffer is sampled (`TrainConfig.replay_sampling`) is a sampler object with one
call, `sampler(agent, state, obs, key)`:

- `HostSampler`: the host samples (from each seed's `ReplayBuffer`) and sends the batches as one
  packed array (`train_step`); the right choice on a CPU, where host and device share memory.
- `DeviceSampler`: the device holds a copy of the buffer (`DeviceReplay`), so the host sends
  only the step's new transition and the observation to act on, and reads the action back: the
  unavoidable transfers (`train_step_on_device`). The host buffer stays the one that checkpoints
  save; the copy is rebuilt from it (`mirror`) on the first policy step and after a resume.

Both compiled steps run the same body on the step's batches (`_updates_and_act`), mapped over a
leading seed axis (`agent._over_seeds`), or for one seed on arrays without it (`agent.SeedAxis`).
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent, AgentState, SeedAxis, _act, _over_seeds, _update
from iapo.replay import ReplayBuffer, batch_width, unpack_batch


def _updates_and_act(agent: Agent, state: AgentState, batches: jax.Array, obs: jax.Array, key: jax.Array):
    """One seed's step: an update on each packed batch of `batches` (U, B, width) in turn, then the
    training action for `obs` (1, obs_dim) with the updated state. Returns (state, infos (U, ...),
    action (1, d), key)."""

    def body(state, packed):
        return _update(agent, state, unpack_batch(packed, agent.obs_dim, agent.act_dim))

    state, infos = jax.lax.scan(body, state, batches)
    action, key = _act(agent, state, obs, key)
    return state, infos, action, key


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def train_step(agent: Agent, state: AgentState, batches: jax.Array, obs: jax.Array, key: jax.Array):
    """The updates on `batches` ([S,] U, B, width), U packed batches updated on in turn, then the
    training action for the next states `obs` ([S,] 1, obs_dim) with the updated state.
    Returns (state, infos ([S,] U, ...), actions ([S,] 1, d), keys ([S,] 2))."""
    return _over_seeds(agent, functools.partial(_updates_and_act, agent), state, batches, obs, key)


class DeviceReplay(flax.struct.PyTreeNode):
    """A seed's replay buffer in device memory: transition t (counted over the run) in row
    t mod C of `rows` (C, width), packed as `ReplayBuffer.pack` packs it, next observation
    included (twice the observation memory of the host buffer, which stores each one once)."""

    rows: jax.Array  # (C, width)
    added: jax.Array  # () int32: transitions added over the run
    key: jax.Array  # (2,) uint32: the sampling key


def mirror(buffers: list[ReplayBuffer], stops: list[int], keys, axis: SeedAxis) -> DeviceReplay:
    """The device copy of each host buffer's transitions before its `stops` entry (those still in
    it), with sampling keys `keys`, in `axis`'s form. The rows are gathered on the host into one
    array and sent once."""
    capacity = buffers[0].capacity
    width = batch_width(buffers[0].obs.shape[1], buffers[0].action.shape[1])
    rows = np.zeros((len(buffers), capacity, width), np.float32)
    for buffer, stop, out in zip(buffers, stops, rows):
        t = np.arange(max(buffer.first, stop - capacity), stop)
        out[t % capacity] = buffer.pack(t, np.empty((len(t), width), np.float32))
    rows, added = axis.native((rows, np.asarray(stops, np.int32)))
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
    """Add the step's transition `row` ([S,] width) to the device buffer, draw `updates` batches
    there, update on them and act for `obs` ([S,] 1, obs_dim). Returns (state, replay, infos
    ([S,] U, ...), actions ([S,] 1, d), keys)."""

    def add_and_draw(replay, row):
        replay = replay_add(replay, row)
        return jax.lax.scan(lambda r, _: replay_sample(r, agent.config.batch_size), replay, None, length=updates)

    # The buffers are vmapped whatever `seed_mapping` says: under lax.map each seed's (C, width)
    # rows would be sliced out and written back, a copy of the buffer every step.
    draw = jax.vmap(add_and_draw) if replay.added.ndim else add_and_draw
    replay, batches = draw(replay, row)  # batches ([S,] U, B, width)
    state, infos, actions, key = _over_seeds(agent, functools.partial(_updates_and_act, agent), state, batches, obs,
                                             key)
    return state, replay, infos, actions, key


class HostSampler:
    """Each seed's batches sampled on the host from its buffer with its NumPy generator, sent
    packed (`train_step`). `key` (the seeds' device-sampling keys, in `axis`'s form) is kept only
    to be saved: a run that moves to device sampling on resume would draw with it."""

    on_device = False

    def __init__(self, buffers: list[ReplayBuffer], rngs: list[np.random.Generator], batch_size: int, updates: int,
                 key: jax.Array, axis: SeedAxis):
        self.buffers, self.rngs, self.batch_size, self.updates, self.key = buffers, rngs, batch_size, updates, key
        self.axis = axis

    def keys(self) -> jax.Array:
        """The sampling keys to save in a checkpoint, in `axis`'s form."""
        return self.key

    def __call__(self, agent: Agent, state: AgentState, obs: np.ndarray, key: jax.Array):
        """The step's updates and the next action for `obs` (S, 1, obs_dim): (state, infos, actions,
        keys), in `axis`'s form."""
        width = batch_width(agent.obs_dim, agent.act_dim)
        batches = np.empty((len(self.buffers), self.updates, self.batch_size, width), np.float32)
        for buffer, rng, seed_batches in zip(self.buffers, self.rngs, batches):
            for out in seed_batches:
                buffer.sample_packed(rng, out)
        return train_step(agent, state, *self.axis.native((batches, obs)), key)


class DeviceSampler:
    """Each seed's batches sampled on the device from its copy of the buffer (`DeviceReplay`),
    made on the first call (and again after `reset`); the host sends each step's new transition."""

    on_device = True

    def __init__(self, buffers: list[ReplayBuffer], updates: int, key: jax.Array, axis: SeedAxis):
        self.buffers, self.updates, self.key, self.axis = buffers, updates, key, axis
        self.replay: DeviceReplay | None = None

    def keys(self) -> jax.Array:
        return self.key if self.replay is None else self.replay.key

    def __call__(self, agent: Agent, state: AgentState, obs: np.ndarray, key: jax.Array):
        width = batch_width(agent.obs_dim, agent.act_dim)
        newest = [buffer.added - 1 for buffer in self.buffers]
        if self.replay is None:
            self.replay = mirror(self.buffers, newest, self.key, self.axis)
        rows = np.stack([b.pack(np.array([t]), np.empty((1, width), np.float32))[0] for b, t in zip(self.buffers, newest)])
        rows, obs = self.axis.native((rows, obs))
        state, self.replay, infos, actions, key = train_step_on_device(agent, state, self.replay, rows, obs, key,
                                                                       updates=self.updates)
        return state, infos, actions, key
