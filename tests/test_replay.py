"""The replay buffer: each observation stored once, exact next observations, incremental export."""

import numpy as np
import pytest

from iapo.replay import ReplayBuffer

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


def _fill(buffer, steps, rng, end_prob):
    """Add `steps` random transitions; returns the plain list of what was added."""
    added = []
    obs = buffer.obs[buffer.added % (buffer.capacity + 1)].astype(np.float64)  # continue the episode
    if buffer.added == 0 or buffer.flags[(buffer.added - 1) % (buffer.capacity + 1)] & 2:
        obs = rng.normal(size=buffer.obs.shape[1])
    for _ in range(steps):
        action, reward, next_obs = rng.normal(size=buffer.action.shape[1]), rng.normal(), rng.normal(size=obs.shape)
        terminated, truncated = rng.random() < end_prob / 3, rng.random() < end_prob
        buffer.add(obs, action, reward, next_obs, terminated, episode_end=terminated or truncated)
        added.append(tuple(np.float32(x) for x in (obs, action, reward, next_obs, terminated)))
        obs = rng.normal(size=obs.shape) if terminated or truncated else next_obs
    return added


@pytest.mark.parametrize("end_prob", [0.01, 0.2, 0.9])  # 0.9: the ring of final observations grows
def test_every_transition_reads_back_exactly_across_wraparound(end_prob):
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(97, 3, 2)
    added = []
    for _ in range(7):
        added += _fill(buffer, 53, rng, end_prob)
        t = np.arange(buffer.first, buffer.added)
        assert len(t) == min(len(added), 97)
        next_obs = buffer.next_obs(t)
        s = t % 98
        for i, ti in enumerate(t):
            obs, action, reward, nxt, terminated = added[ti]
            np.testing.assert_array_equal(buffer.obs[s[i]], obs)
            np.testing.assert_array_equal(buffer.action[s[i]], action)
            assert buffer.reward[s[i]] == reward and bool(buffer.flags[s[i]] & 1) == bool(terminated)
            np.testing.assert_array_equal(next_obs[i], nxt)


def test_sample_draws_only_transitions_in_the_buffer():
    rng = np.random.default_rng(1)
    buffer = ReplayBuffer(50, 2, 1)
    added = _fill(buffer, 120, rng, 0.1)
    batch = buffer.sample(np.random.default_rng(2), 500)
    valid = {tuple(a[0]) + tuple(a[3]) for a in added[-50:]}
    assert {tuple(o) + tuple(n) for o, n in zip(batch.obs, batch.next_obs)} <= valid


def test_restore_from_parts_gives_the_same_samples():
    rng = np.random.default_rng(3)
    buffer = ReplayBuffer(100, 4, 2)
    parts, saved = [], 0
    for steps in (30, 45, 60, 17, 80):  # checkpoints at irregular intervals; older parts get evicted
        _fill(buffer, steps, rng, 0.15)
        parts.append(buffer.export(max(saved, buffer.first), buffer.added))
        saved = buffer.added
        assert len(parts[-1]["obs"]) == min(steps, 100)  # only what is new
        restored = ReplayBuffer(100, 4, 2)
        restored.restore(buffer.meta(), [p for p in parts if p["stop"] > buffer.first])
        a, b = buffer.sample(np.random.default_rng(4), 256), restored.sample(np.random.default_rng(4), 256)
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with pytest.raises(ValueError, match="do not cover"):
        ReplayBuffer(100, 4, 2).restore(buffer.meta(), parts[-1:])


def test_a_transition_that_does_not_continue_the_episode_is_refused():
    buffer = ReplayBuffer(10, 2, 1)
    buffer.add(np.zeros(2), np.zeros(1), 0.0, np.ones(2), False)
    with pytest.raises(ValueError, match="episode_end"):
        buffer.add(np.full(2, 5.0), np.zeros(1), 0.0, np.ones(2), False)
    np.testing.assert_array_equal(buffer.next_obs(np.array([0])), [[1.0, 1.0]])  # unchanged
    buffer.add(np.ones(2), np.zeros(1), 0.0, np.ones(2), False, episode_end=True)
    buffer.add(np.full(2, 5.0), np.zeros(1), 0.0, np.ones(2), False)  # after an episode's end: fine


def test_memory_is_within_a_tenth_of_the_raw_transition_bytes():
    """Humanoid-sized observations; episodes of 200 steps: next observations are not stored twice."""
    obs_dim, act_dim, capacity = 348, 17, 20_000
    buffer = ReplayBuffer(capacity, obs_dim, act_dim)
    obs = np.zeros(obs_dim, np.float32)
    action = np.zeros(act_dim, np.float32)
    for t in range(capacity + 500):
        buffer.add(obs, action, 0.0, obs, False, episode_end=t % 200 == 199)
    raw = capacity * (4 * obs_dim + 4 * act_dim + 4 + 1)  # observation, action, reward, flags
    assert buffer.nbytes <= 1.1 * raw
    assert buffer.nbytes < 0.6 * capacity * (8 * obs_dim + 4 * act_dim + 4 + 1)  # vs storing next_obs


@pytest.mark.parametrize("end_prob", [0.05, 0.9])
def test_a_packed_sample_is_the_same_draw_and_unpacks_exactly(end_prob):
    from iapo.replay import batch_width, unpack_batch

    buffer = ReplayBuffer(61, 4, 3)
    added = _fill(buffer, 150, np.random.default_rng(1), end_prob)  # wrapped around, with episode ends
    plain = buffer.sample(np.random.default_rng(7), 40)
    packed = buffer.sample_packed(np.random.default_rng(7), np.full((40, batch_width(4, 3)), np.nan, np.float32))
    unpacked = unpack_batch(packed, 4, 3)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(unpacked, field), getattr(plain, field))
    assert plain.terminated.any() and not plain.terminated.all()
    # Each packed row is one of the transitions in the buffer, column for column.
    in_buffer = {np.concatenate([np.atleast_1d(x) for x in a]).astype(np.float32).tobytes() for a in added[-61:]}
    assert {row.tobytes() for row in packed} <= in_buffer


def test_the_device_copy_holds_the_buffer_and_samples_only_its_transitions():
    import jax

    from iapo.replay import batch_width
    from iapo.replay import mirror, replay_add, replay_sample
    from iapo.seeds import SeedAxis

    buffer = ReplayBuffer(61, 4, 3)
    _fill(buffer, 150, np.random.default_rng(1), 0.2)  # wrapped around, with episode ends
    width = batch_width(4, 3)
    newest = np.array([buffer.added - 1])
    # The copy of all but the newest transition, then the newest added on the device, as a step does.
    replay = mirror([buffer], [buffer.added - 1], jax.random.PRNGKey(0), SeedAxis(1))
    replay = replay_add(replay, buffer.pack(newest, np.empty((1, width), np.float32))[0])
    t = np.arange(buffer.first, buffer.added)
    np.testing.assert_array_equal(np.asarray(replay.rows)[t % 61], buffer.pack(t, np.empty((len(t), width), np.float32)))
    assert int(replay.added) == buffer.added
    drawn = []
    for _ in range(20):
        replay, rows = replay_sample(replay, 64)
        drawn.append(np.asarray(rows))
    drawn = np.concatenate(drawn)
    valid = {r.tobytes() for r in buffer.pack(t, np.empty((len(t), width), np.float32))}
    assert {r.tobytes() for r in drawn} <= valid
    assert len({r.tobytes() for r in drawn}) > 0.9 * len(valid)  # uniform over all 61: nearly all drawn
