"""Capture and restore an environment mid-episode, for exact resume.

A MuJoCo environment is restored from a copy of its whole `MjData`: the integration state (time,
qpos, qvel, activations, controls, warm start) is not enough, because Gymnasium's tasks read
derived quantities (body positions for the forward reward, contact forces) that `mj_step` left
one step behind the state. Every environment is also restored from a pickle of its unwrapped
instance's other attributes (a MuJoCo task's goal, a counter), those that hold no episode state
(the model, the data, the renderer) left out. Either way the env's random generator and the
time-limit counter come along.
"""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _step_counter(env: gym.Env) -> gym.Wrapper | None:
    """The wrapper that counts the steps of the episode for iapo's messages (`envs.CheckedEnv`)."""
    while isinstance(env, gym.Wrapper):
        if hasattr(env, "episode_step"):
            return env
        env = env.env
    return None


def _is_mujoco(env) -> bool:
    return hasattr(env, "model") and hasattr(env, "data") and type(env.data).__module__.startswith("mujoco")


def get_state(env: gym.Env) -> dict:
    """A picklable snapshot of `env` that `set_state` restores exactly."""
    base = env.unwrapped
    limit = _time_limit(env)
    state = {
        "np_random": _rng_state(base.np_random),
        "elapsed_steps": None if limit is None else limit._elapsed_steps,
    }
    counter = _step_counter(env)
    if counter is not None:
        state["episode_step"] = counter.episode_step
    attrs = {k: v for k, v in vars(base).items() if not k.startswith("_np_random")}
    if _is_mujoco(base):
        state["mjdata"] = pickle.dumps(base.data)
        # the task's own episode state beside the simulator's (a goal, a target, a counter);
        # the model, the data and the renderer (which holds references to both) stay as they are
        attrs = {k: v for k, v in attrs.items() if k not in _NOT_STATE and k not in ("model", "data")
                 and not type(v).__module__.startswith("mujoco")}
    kept = _picklable(attrs)
    state["attributes"] = pickle.dumps(kept)
    state["uncaptured"] = sorted(k for k in attrs if k not in kept and k not in _NOT_STATE)
    return state


# Attributes that hold no episode state (rendering handles and the like): not capturing them is
# not a loss.
_NOT_STATE = {"viewer", "screen", "clock", "window", "renderer", "render_mode", "mujoco_renderer", "spec"}


def uncaptured(env: gym.Env) -> list[str]:
    """The names of `env`'s attributes that `get_state` cannot capture (not picklable): where
    there are any, the environment cannot be restored mid-episode."""
    return get_state(env).get("uncaptured", [])


def set_state(env: gym.Env, state: dict) -> None:
    """Restore a snapshot from `get_state` into an env made with the same id."""
    import mujoco

    base = env.unwrapped
    _set_rng_state(base, state["np_random"])
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = state["elapsed_steps"]
    counter = _step_counter(env)
    if counter is not None and "episode_step" in state:  # (a checkpoint of iapo 0.3 lacks it)
        counter.episode_step = state["episode_step"]
    if "mjdata" in state:
        mujoco.mj_copyData(base.data, base.model, pickle.loads(state["mjdata"]))
    if "attributes" in state:  # (a MuJoCo env's checkpoint of iapo 0.3 holds the simulator's state alone)
        vars(base).update(pickle.loads(state["attributes"]))
    _mark_reset(env)


def _rng_state(rng) -> object:
    """A copy of the state of an environment's generator: a NumPy `Generator`'s, or a legacy
    `RandomState`'s (dm_control through shimmy, older environments)."""
    if isinstance(rng, np.random.RandomState):
        return {"random_state": rng.get_state(legacy=False)}
    return copy.deepcopy(rng.bit_generator.state)


def _set_rng_state(base: gym.Env, state) -> None:
    """Restore `_rng_state`'s copy into the environment's generator, in place, or, where the env has
    a generator of the other kind (not reset yet), as a new generator."""
    legacy = isinstance(state, dict) and "random_state" in state
    rng = base.np_random
    if legacy and isinstance(rng, np.random.RandomState):
        rng.set_state(state["random_state"])
    elif not legacy and isinstance(rng, np.random.Generator) and rng.bit_generator.state["bit_generator"] == \
            state.get("bit_generator"):
        rng.bit_generator.state = state
    elif legacy:
        restored = np.random.RandomState()
        restored.set_state(state["random_state"])
        base.np_random = restored
    else:
        restored = np.random.Generator(getattr(np.random, state["bit_generator"])())
        restored.bit_generator.state = state
        base.np_random = restored


def _mark_reset(env: gym.Env) -> None:
    """Tell the order-enforcing and checker wrappers that the episode is under way."""
    while isinstance(env, gym.Wrapper):
        if hasattr(env, "_has_reset"):
            env._has_reset = True
        env = env.env


def _picklable(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001  (render handles, windows: not state)
            continue
        out[key] = value
    return out


def extend_time_limit(env: gym.Env, steps: int) -> None:
    """Restart the env's time-limit count and let it run at least `steps` more steps."""
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = 0
        limit._max_episode_steps = max(limit._max_episode_steps, steps)
