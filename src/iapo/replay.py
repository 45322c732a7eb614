"""A preallocated replay buffer of transitions, in host memory."""

from __future__ import annotations

import numpy as np

from iapo.agent import Batch


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros((capacity,), np.float32)
        self.terminated = np.zeros((capacity,), np.float32)
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        i = self.position
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        idx = rng.integers(0, self.size, size=batch_size)
        return Batch(
            obs=self.obs[idx],
            action=self.action[idx],
            reward=self.reward[idx],
            next_obs=self.next_obs[idx],
            terminated=self.terminated[idx],
        )

    _FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def state_dict(self) -> dict:
        """The filled part of the buffer and its position (what a checkpoint needs)."""
        return {
            "position": self.position,
            "size": self.size,
            **{name: getattr(self, name)[: self.size].copy() for name in self._FIELDS},
        }

    def load_state_dict(self, data: dict) -> None:
        size = int(data["size"])
        if size > self.capacity:
            raise ValueError(f"replay buffer of {size} transitions does not fit capacity {self.capacity}")
        for name in self._FIELDS:
            getattr(self, name)[:size] = data[name]
        self.position, self.size = int(data["position"]), size
