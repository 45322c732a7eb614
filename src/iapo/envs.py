"""Gymnasium environments with Box actions, rescaled so the agent acts in (-1, 1)^d."""

from __future__ import annotations

import difflib
import os

import gymnasium as gym
import numpy as np

from iapo.errors import EnvError


def _suggest(env_id: str) -> str:
    ids = [i for i in gym.registry if not i.startswith("phys2d") and not i.startswith("tabular")]
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
    if not close:  # a missing version suffix, a different case
        stem = env_id.split("-v")[0].lower()
        close = sorted(i for i in ids if i.lower().startswith(stem))[-3:]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_env_id(env_id: str) -> None:
    """Raise EnvError naming the closest registered ids when `env_id` is not registered."""
    if env_id not in gym.registry:
        raise EnvError(f"unknown environment id {env_id!r}{_suggest(env_id)}")


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """Make `env_id`, check its spaces, and rescale its actions from (-1, 1) to its bounds."""
    check_env_id(env_id)
    try:
        env = gym.make(env_id, **({} if render_mode is None else {"render_mode": render_mode}))
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"environment {env_id!r} needs a missing dependency: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (any failure to construct is reported, not raised)
        raise EnvError(f"cannot make environment {env_id!r}: {type(exc).__name__}: {exc}") from None
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        raise EnvError(
            f"environment {env_id!r} has a {type(space).__name__} action space; "
            "iapo needs a continuous (Box) action space"
        )
    if len(space.shape) != 1 or space.shape[0] == 0:
        env.close()
        raise EnvError(f"environment {env_id!r} has actions of shape {space.shape}; iapo needs a flat Box of at "
                       "least one dimension")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        env.close()
        raise EnvError(f"environment {env_id!r} has an unbounded action space; iapo needs finite bounds")
    obs_space = env.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        env.close()
        raise EnvError(
            f"environment {env_id!r} has observations {obs_space}; iapo needs a flat Box observation"
        )
    ones = np.ones(space.shape, np.float32)
    return gym.wrappers.RescaleAction(CheckedEnv(env, env_id), -ones, ones)


class CheckedEnv(gym.Wrapper):
    """Turns an environment's failure in `reset` or `step`, or an observation of another shape
    than its observation space says, into an EnvError naming the environment (one line, not a
    traceback from inside it)."""

    def __init__(self, env: gym.Env, env_id: str):
        super().__init__(env)
        self.env_id = env_id

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except EnvError:
            raise
        except Exception as exc:  # noqa: BLE001 (whatever the environment raises)
            raise EnvError(f"environment {self.env_id!r} raised in {what}: {type(exc).__name__}: {exc}") from None
        if np.shape(out[0]) != self.observation_space.shape:
            raise EnvError(f"environment {self.env_id!r} returned an observation of shape {np.shape(out[0])} from "
                           f"{what}; its observation space has shape {self.observation_space.shape}")
        return out

    def reset(self, **kwargs):
        return self._call("reset", self.env.reset, **kwargs)

    def step(self, action):
        return self._call("step", self.env.step, action)


def dims(env: gym.Env) -> tuple[int, int]:
    """(obs_dim, act_dim)."""
    return int(env.observation_space.shape[0]), int(env.action_space.shape[0])


def use_offscreen_gl() -> None:
    """Select MuJoCo's headless EGL backend unless the user chose one (must precede rendering)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
