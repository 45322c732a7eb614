"""The update's inputs at Hopper-v5's shapes, shared by the update benchmarks: 11 observation and
3 action dimensions, a batch of 256 random transitions on the default device."""

from __future__ import annotations

import jax
import numpy as np

from iapo.replay import Batch

OBS_DIM, ACT_DIM, BATCH = 11, 3, 256


def random_batch(seed: int = 0, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, batch: int = BATCH) -> Batch:
    """Random transitions at the given shapes (Hopper-v5's by default)."""
    rng = np.random.default_rng(seed)
    return jax.device_put(Batch(
        obs=rng.normal(size=(batch, obs_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, (batch, act_dim)).astype(np.float32),
        reward=rng.normal(size=batch).astype(np.float32),
        next_obs=rng.normal(size=(batch, obs_dim)).astype(np.float32),
        terminated=np.zeros(batch, np.float32),
    ))
