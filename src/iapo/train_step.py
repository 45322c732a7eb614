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
leading seed axis (`seeds.over_seeds`), or for one seed on arrays without it (`seeds.SeedAxis`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from iapo.agent import Agent, AgentState, choose_action
from iapo.replay import DeviceReplay, ReplayBuffer, batch_width, mirror, replay_add, replay_sample, unpack_batch
from iapo.seeds import SeedAxis, over_seeds
from iapo.update import update


def _updates_and_act(agent: Agent, state: AgentState, batches: jax.Array, obs: jax.Array, key: jax.Array):
    """One seed's step: an update on each packed batch of `batches` (U, B, width) in turn, then the
    training action for `obs` (1, obs_dim) with the updated state. Returns (state, infos (U, ...),
    action (1, d), key)."""

    def body(state, packed):
        return update(agent, state, unpack_batch(packed, agent.obs_dim, agent.act_dim))

    state, infos = jax.lax.scan(body, state, batches)
    action, key = choose_action(agent, state, obs, key)
    return state, infos, action, key


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def train_step(agent: Agent, state: AgentState, batches: jax.Array, obs: jax.Array, key: jax.Array):
    """The updates on `batches` ([S,] U, B, width), U packed batches updated on in turn, then the
    training action for the next states `obs` ([S,] 1, obs_dim) with the updated state.
    Returns (state, infos ([S,] U, ...), actions ([S,] 1, d), keys ([S,] 2))."""
    return over_seeds(agent.seed_mapping, functools.partial(_updates_and_act, agent), state, batches, obs, key)


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
    state, infos, actions, key = over_seeds(agent.seed_mapping, functools.partial(_updates_and_act, agent), state,
                                            batches, obs, key)
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
