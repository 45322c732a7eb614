"""Replay: the buffer of transitions in host memory (`ReplayBuffer`), the `Batch` the update
reads, a transition packed as one row (`batch_width`, `unpack_batch`), and the buffer's copy in
device memory (`DeviceReplay`, `mirror`, `replay_add`, `replay_sample`) for sampling there.

The host buffer is preallocated, each observation stored once.

Transition t (counted from 0 over the whole run) lives in slot t mod (capacity + 1). Row `obs[s]`
is the observation the transition in slot s started from; its next observation is the following
row, which the next transition overwrites with that same observation. The ring has one row more
than its capacity so that the row after the newest transition can hold that transition's next
observation. At an episode's end the following transition starts from a reset observation
instead, so the final observation of an ending transition is kept apart, in `final_obs`: a
first-in first-out ring with one row per episode end in the buffer, grown by doubling when
needed.

Memory: (capacity + 1) observation and action rows, one float32 reward and one byte of flags
per slot, plus one observation row and one int64 per episode end in the buffer; that is the raw
size of (observation, action, reward, flags) per transition, plus the episode ends.

For checkpoints, `export(start, stop)` gives the transitions [start, stop) (those still in the
buffer) as plain arrays, and `restore(meta, parts)` rebuilds the buffer from the parts that
cover its contents, so a checkpoint only writes what was added since the one before.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from iapo.seeds import SeedAxis

TERMINATED = np.uint8(1)  # the episode ended in a terminal state: no bootstrapping
EPISODE_END = np.uint8(2)  # the episode ended here (terminated or truncated)
_MIN_FINALS = 64


class Batch(flax.struct.PyTreeNode):
    """A batch of transitions, as the update reads them."""
    obs: jax.Array  # (B, obs_dim)
    action: jax.Array  # (B, d) in (-1, 1)
    reward: jax.Array  # (B,)
    next_obs: jax.Array  # (B, obs_dim)
    terminated: jax.Array  # (B,) 1.0 where the episode truly ended (no bootstrap)


def batch_width(obs_dim: int, act_dim: int) -> int:
    """Columns of a packed transition: obs, action, reward, next obs, terminated."""
    return 2 * obs_dim + act_dim + 2


def unpack_batch(packed, obs_dim: int, act_dim: int) -> Batch:
    """The Batch held in the columns of `packed` (..., batch_width), NumPy or JAX, as
    `ReplayBuffer.pack` wrote them (views, no copies). A packed batch crosses to the device as
    one array instead of five."""
    cuts = [0, obs_dim, obs_dim + act_dim, obs_dim + act_dim + 1, 2 * obs_dim + act_dim + 1]
    return Batch(
        obs=packed[..., cuts[0]:cuts[1]],
        action=packed[..., cuts[1]:cuts[2]],
        reward=packed[..., cuts[2]],
        next_obs=packed[..., cuts[3]:cuts[4]],
        terminated=packed[..., cuts[4]],
    )


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        rows = capacity + 1
        self.obs = np.zeros((rows, obs_dim), np.float32)
        self.action = np.zeros((rows, act_dim), np.float32)
        self.reward = np.zeros((rows,), np.float32)
        self.flags = np.zeros((rows,), np.uint8)
        self.added = 0  # transitions added over the whole run
        # Final observations of the episode ends in the buffer, oldest first, as a ring:
        # entry k (counted over the run) is at k mod len(final_t).
        self.final_obs = np.zeros((_MIN_FINALS, obs_dim), np.float32)
        self.final_t = np.zeros((_MIN_FINALS,), np.int64)  # the transition each belongs to
        self.finals_added = 0
        self.finals_live = 0

    @property
    def size(self) -> int:
        return min(self.added, self.capacity)

    @property
    def first(self) -> int:
        """The oldest transition still in the buffer."""
        return self.added - self.size

    @property
    def nbytes(self) -> int:
        arrays = (self.obs, self.action, self.reward, self.flags, self.final_obs, self.final_t)
        return sum(a.nbytes for a in arrays)

    def _slot(self, t):
        return t % (self.capacity + 1)

    # -- writing -----------------------------------------------------------------------------
    def add(self, obs, action, reward: float, next_obs, terminated: bool, episode_end: bool | None = None) -> None:
        """Add one transition. `episode_end` (default: `terminated`) marks the episode's last
        step, after which the next transition may start from a reset observation; any other
        transition must start from the last one's next observation."""
        end = terminated if episode_end is None else (episode_end or terminated)
        t = self.added
        if t > 0 and not self.flags[self._slot(t - 1)] & EPISODE_END:
            if not np.array_equal(self.obs[self._slot(t)], np.asarray(obs, np.float32)):
                raise ValueError(
                    "a transition must start from the last one's next observation unless that one "
                    "ended its episode (episode_end=True)"
                )
        if t >= self.capacity:  # evict the oldest transition
            if self.flags[self._slot(t - self.capacity)] & EPISODE_END:
                self.finals_live -= 1
        s = self._slot(t)
        self.obs[s] = obs
        self.action[s] = action
        self.reward[s] = reward
        self.flags[s] = (TERMINATED if terminated else 0) | (EPISODE_END if end else 0)
        self.obs[self._slot(t + 1)] = next_obs  # overwritten by the next transition's observation
        if end:
            self._push_final(t, next_obs)
        self.added = t + 1

    def end_episode(self) -> int | None:
        """Mark the newest transition as its episode's end (a truncation), so that the next one
        may start from a reset observation: for an episode that cannot be continued. Returns its
        index, or None when there is none or it already ended an episode."""
        t = self.added - 1
        if t < 0 or self.flags[self._slot(t)] & EPISODE_END:
            return None
        self.flags[self._slot(t)] |= EPISODE_END
        self._push_final(t, self.obs[self._slot(t + 1)].copy())
        return t

    def _push_final(self, t: int, obs) -> None:
        if self.finals_live == len(self.final_t):
            self._grow_finals(2 * len(self.final_t))
        k = self.finals_added % len(self.final_t)
        self.final_obs[k] = obs
        self.final_t[k] = t
        self.finals_added += 1
        self.finals_live += 1

    def _grow_finals(self, n: int) -> None:
        live = np.arange(self.finals_added - self.finals_live, self.finals_added)
        final_obs = np.zeros((n, self.obs.shape[1]), np.float32)
        final_t = np.zeros((n,), np.int64)
        final_obs[live % n] = self.final_obs[live % len(self.final_t)]
        final_t[live % n] = self.final_t[live % len(self.final_t)]
        self.final_obs, self.final_t = final_obs, final_t

    # -- reading -----------------------------------------------------------------------------
    def _final_rows(self, t: np.ndarray) -> np.ndarray:
        """Rows of `final_obs` that hold the final observations of the ending transitions t."""
        n, live = len(self.final_t), self.finals_live
        head = (self.finals_added - live) % n
        if head + live <= n:  # the live entries are one contiguous, sorted run
            k = np.searchsorted(self.final_t[head : head + live], t)
        else:  # they wrap around: [head, n) then [0, rest), each sorted, the first before the second
            first = self.final_t[head:]
            k = np.where(
                t <= first[-1],
                np.searchsorted(first, t),
                len(first) + np.searchsorted(self.final_t[: live - len(first)], t),
            )
        return (head + k) % n

    def next_obs(self, t: np.ndarray) -> np.ndarray:
        """The next observations of transitions t (absolute indices in the buffer)."""
        s = self._slot(t)
        out = self.obs[self._slot(t + 1)]
        ends = (self.flags[s] & EPISODE_END).astype(bool)
        if ends.any():
            out[ends] = self.final_obs[self._final_rows(t[ends])]
        return out

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """`batch_size` transitions drawn uniformly, with replacement, from those in the buffer."""
        width = batch_width(self.obs.shape[1], self.action.shape[1])
        return unpack_batch(self.sample_packed(rng, np.empty((batch_size, width), np.float32)),
                            self.obs.shape[1], self.action.shape[1])

    def pack(self, t: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Transitions t (absolute indices in the buffer) written into the rows of `out`
        (len(t), batch_width): obs, action, reward, next obs and terminated side by side, as
        `unpack_batch` reads them."""
        obs_dim, act_dim = self.obs.shape[1], self.action.shape[1]
        s = self._slot(t)
        np.take(self.obs, s, axis=0, out=out[:, :obs_dim])
        np.take(self.action, s, axis=0, out=out[:, obs_dim : obs_dim + act_dim])
        out[:, obs_dim + act_dim] = self.reward[s]
        out[:, obs_dim + act_dim + 1 : -1] = self.next_obs(t)
        out[:, -1] = self.flags[s] & TERMINATED
        return out

    def sample_packed(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """`sample` written into `out` (B, width) by `pack`: the same transitions as
        `sample(rng, B)` draws."""
        return self.pack(self.first + rng.integers(0, self.size, size=len(out)), out)

    # -- checkpoints -------------------------------------------------------------------------
    def export(self, start: int, stop: int) -> dict:
        """Transitions [start, stop) as arrays; only those still in the buffer."""
        start = max(start, self.first)
        t = np.arange(start, stop)
        s = self._slot(t)
        flags = self.flags[s]
        ends = t[(flags & EPISODE_END).astype(bool)]
        return {
            "start": start,
            "stop": stop,
            "obs": self.obs[s],
            "action": self.action[s],
            "reward": self.reward[s],
            "flags": flags,
            "final_obs": self.final_obs[self._final_rows(ends)] if len(ends) else self.final_obs[:0].copy(),
        }

    def meta(self) -> dict:
        """What `restore` needs beside the parts: the counters and the newest next observation."""
        return {
            "capacity": self.capacity,
            "added": self.added,
            "pending_obs": self.obs[self._slot(self.added)].copy(),
        }

    def restore(self, meta: dict, parts: list[dict]) -> None:
        """Rebuild the buffer from `meta` and parts covering its transitions, oldest first. A part
        that starts before the one before it ends overrides the transitions they share (a
        transition whose flags changed after it was saved is saved again)."""
        if int(meta["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer of capacity {meta['capacity']} does not match {self.capacity}")
        self.__init__(self.capacity, self.obs.shape[1], self.action.shape[1])
        added = int(meta["added"])
        first = max(0, added - self.capacity)
        covered = first
        finals_t, finals_obs = [], []
        for part in parts:
            start, stop = int(part["start"]), int(part["stop"])
            if stop <= covered:  # evicted since
                continue
            if start > covered:
                raise ValueError(f"replay parts do not cover transitions {covered}..{added}")
            if first <= start < covered:  # this part overrides the end of the ones before
                covered = start
                finals_obs = [o[t < start] for t, o in zip(finals_t, finals_obs)]
                finals_t = [t[t < start] for t in finals_t]
            keep = slice(covered - start, stop - start)
            t = np.arange(covered, stop)
            s = self._slot(t)
            self.obs[s] = part["obs"][keep]
            self.action[s] = part["action"][keep]
            self.reward[s] = part["reward"][keep]
            self.flags[s] = part["flags"][keep]
            end_mask = (part["flags"] & EPISODE_END).astype(bool)
            part_ends = np.arange(start, stop)[end_mask]
            live = part_ends >= covered
            finals_t.append(part_ends[live])
            finals_obs.append(part["final_obs"][live])
            covered = stop
        if covered != added:
            raise ValueError(f"replay parts end at transition {covered}, the buffer at {added}")
        self.added = added
        self.obs[self._slot(added)] = meta["pending_obs"]
        if finals_t:
            final_t, final_obs = np.concatenate(finals_t), np.concatenate(finals_obs)
            n = max(_MIN_FINALS, 1 << int(len(final_t) - 1).bit_length())
            self.final_t = np.zeros((n,), np.int64)
            self.final_obs = np.zeros((n, self.obs.shape[1]), np.float32)
            self.final_t[: len(final_t)] = final_t
            self.final_obs[: len(final_t)] = final_obs
            self.finals_added = self.finals_live = len(final_t)


# -- the device copy ---------------------------------------------------------------------------
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
