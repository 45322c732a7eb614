"""Gymnasium environments with Box actions, rescaled so the agent acts in (-1, 1)^d.

An environment is named as Gymnasium names it: a registered id (`Hopper-v5`), an id whose
namespace's package iapo imports first (`dm_control/cheetah-run-v0`: shimmy), Gymnasium's
"module:id" form (`mypackage.envs:MyEnv-v0` imports `mypackage.envs`, which registers the id), or
the import path of an environment class (`mypackage.envs:MyEnv`). Its options
(`env_kwargs`) are "key=value" strings, each value read as JSON where it parses (`2`, `false`,
`[1, 2]`) and as a string otherwise, or one JSON object. Dict and Tuple observations (of Boxes)
are flattened in a fixed order: a Dict's keys sorted, depth first (`observation_layout`).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import inspect
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from iapo.config import parse_env_kwargs
from iapo.errors import EnvError

# Packages that register environment ids when imported, by the ids' namespace or name prefix:
# prefix -> (module to import, what to install).
REGISTERING_PACKAGES = {
    "dm_control/": ("shimmy", 'pip install "iapo[dmc]" (shimmy with dm_control)'),
    **{prefix: ("gymnasium_robotics", "pip install gymnasium-robotics")
       for prefix in ("Fetch", "PointMaze", "AntMaze", "Adroit", "FrankaKitchen", "HandManipulate", "HandReach")},
}


def _suggest(env_id: str) -> str:
    ids = [i for i in gym.registry if not i.startswith("phys2d") and not i.startswith("tabular")]
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
    if not close:  # a missing version suffix, a different case
        stem = env_id.split("-v")[0].lower()
        close = sorted(i for i in ids if i.lower().startswith(stem))[-3:]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _import(module: str, env_id: str, install: str | None = None):
    if module in sys.modules:  # (imported already: no new catch_warnings, which resets "warn once")
        return sys.modules[module]
    said = io.StringIO()  # what the module prints on import: passed on, unless it exits (below)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(said):
            warnings.simplefilter("ignore")  # (dm_control warns when no display is there to render to)
            return importlib.import_module(module)
    except SystemExit as exc:  # a script that parses its own command line, or calls sys.exit, on import
        last = [line for line in said.getvalue().splitlines() if line.strip()][-1:]
        said.seek(0), said.truncate()  # (its usage text is not passed on: its last line is in the error)
        raise EnvError(f"importing {module!r} for environment {env_id!r} exited (status {exc.code})"
                       + (f": {last[0].strip()}" if last else "")) from None
    except ImportError as exc:
        how = f"; {install}" if install else ""
        top = module.split(".")[0]
        if not install and module not in sys.modules and (Path(f"{top}.py").is_file() or Path(top).is_dir()) \
                and "" not in sys.path and os.getcwd() not in sys.path:
            how = "; it is in the current folder, which the iapo command does not import from: run it with PYTHONPATH=."
        raise EnvError(f"environment {env_id!r} needs the module {module!r}, which cannot be imported "
                       f"({type(exc).__name__}: {exc}){how}") from None
    except Exception as exc:  # noqa: BLE001 (whatever the module raises while it registers)
        raise EnvError(f"importing {module!r} for environment {env_id!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.stderr.write(said.getvalue())


def env_spec(env_id: str) -> str | EnvSpec:
    """What `gym.make` takes for `env_id` (a registered id, or a spec of an environment class),
    after importing what registers it; an EnvError naming the closest ids, or the package to
    install, when there is none."""
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        if not module_name or not name:
            raise EnvError(f"environment {env_id!r}: expected MODULE:ID or MODULE:CLASS")
        module = _import(module_name, env_id)
        if name in gym.registry:
            return name
        entry = getattr(module, name, None)
        if entry is None:
            raise EnvError(f"module {module_name!r} neither registers an environment {name!r} nor defines a "
                           f"class {name!r}")
        if not (inspect.isclass(entry) and issubclass(entry, gym.Env)):  # (nothing else is ever called)
            raise EnvError(f"{env_id!r} names a {type(entry).__name__}, not an environment class (a subclass of "
                           "gymnasium.Env) nor an id that the module registers")
        return EnvSpec(id=re.sub(r"[^\w.-]", "_", name), entry_point=entry)
    for prefix, (module, install) in REGISTERING_PACKAGES.items():
        if env_id.startswith(prefix) and env_id not in gym.registry:
            _import(module, env_id, install)
            if not any(i.startswith(prefix) for i in gym.registry):  # (shimmy without dm_control registers none)
                raise EnvError(f"unknown environment id {env_id!r}: {module!r} registered no {prefix}* environment; "
                               f"{install}")
    if env_id not in gym.registry:
        raise EnvError(f"unknown environment id {env_id!r}{_suggest(env_id)}")
    return env_id


def check_env_id(env_id: str, env_kwargs: Sequence[str] = ()) -> None:
    """Raise EnvError when `env_id` names no environment (see `env_spec`), or its constructor
    names none of an option of `env_kwargs` (where it can be inspected), without making it."""
    _check_options(env_id, env_spec(env_id), parse_env_kwargs(env_kwargs))


def _check_options(env_id: str, spec: str | EnvSpec, options: dict) -> tuple[list[str], bool] | None:
    """An EnvError for the first option the environment's constructor does not take (unless it
    takes **kwargs, whose own error decides); its known options otherwise."""
    known = _options_of(spec)
    if known is not None and not known[1]:
        unknown = [k for k in options if k not in known[0]]
        if unknown:
            raise _no_option(env_id, unknown[0], known)
    return known


def _options_of(spec: str | EnvSpec) -> tuple[list[str], bool] | None:
    """(the keyword options an environment's constructor names, whether it takes others too
    through **kwargs), where it can be inspected; None otherwise."""
    try:
        entry = (gym.spec(spec) if isinstance(spec, str) else spec).entry_point
        if isinstance(entry, str):
            module, attr = entry.split(":")
            entry = getattr(importlib.import_module(module), attr)
        params = inspect.signature(entry).parameters.values()
    except Exception:  # noqa: BLE001 (an entry point we cannot inspect: no list, not an error)
        return None
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _no_option(env_id: str, option: str, options: tuple[list[str], bool] | None) -> EnvError:
    known = options[0] if options else []
    close = difflib.get_close_matches(option, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (its options: {', '.join(known)})" if known else ""
    return EnvError(f"environment {env_id!r} has no option {option!r}{hint}")


# Where an environment registers no time limit (and --max-episode-steps is unset), episodes end
# after this many steps, so that no episode, in training or evaluation, runs for ever; except for
# the suites whose tasks end their own episodes (dm_control: at each task's time limit).
DEFAULT_EPISODE_STEPS = 1000
SELF_LIMITED = ("dm_control/",)


def make_run_env(config, render_mode: str | None = None) -> gym.Env:
    """The environment a run's `TrainConfig` names: its id, its options, its episode limit and its
    action repeat."""
    return make_env(config.env, config.env_kwargs, render_mode, config.max_episode_steps, config.action_repeat)


def probe_run_env(config) -> None:
    """One reset and one step (of the action at the middle of the bounds) of a fresh environment
    of the run's: an environment that fails at once (an option of the wrong type, say) fails here,
    before a new run writes anything or `--overwrite` deletes the old one."""
    with warnings.catch_warnings():  # (the run's own environments, made already, said them)
        warnings.simplefilter("ignore")
        env = make_run_env(config)
    try:
        env.reset(seed=config.seed)
        env.step(np.zeros(env.action_space.shape, env.action_space.dtype))
    except EnvError as exc:
        raise EnvError(f"{exc}, in a trial step before the run started (nothing was written)") from None
    finally:
        env.close()


def make_env(env_id: str, env_kwargs: Sequence[str] = (), render_mode: str | None = None,
             max_episode_steps: int | None = None, action_repeat: int = 1) -> gym.Env:
    """Make `env_id` with the options `env_kwargs`, its episodes cut off after `max_episode_steps`
    environment steps (unset: its registered time limit, or `DEFAULT_EPISODE_STEPS` where it has
    none, said in a warning), check its spaces, flatten a Dict or Tuple observation, hold each
    action for `action_repeat` steps (`ActionRepeat`), and rescale its actions from (-1, 1) to its
    bounds."""
    spec = env_spec(env_id)
    options = parse_env_kwargs(env_kwargs)
    known = _check_options(env_id, spec, options)
    limit = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    try:
        env = gym.make(spec, **options, **limit, **({} if render_mode is None else {"render_mode": render_mode}))
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"environment {env_id!r} needs a missing dependency: {exc}") from None
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if match:
            raise _no_option(env_id, match.group(1), known) from None
        raise EnvError(f"cannot make environment {env_id!r}: TypeError: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (any failure to construct is reported, not raised)
        raise EnvError(f"cannot make environment {env_id!r}: {type(exc).__name__}: {exc}") from None
    if not _has_time_limit(env) and not env_id.split(":", 1)[-1].startswith(SELF_LIMITED):
        warnings.warn(f"environment {env_id!r} registers no time limit: iapo ends its episodes after "
                      f"{DEFAULT_EPISODE_STEPS} steps (--max-episode-steps sets another)", stacklevel=2)
        env = gym.wrappers.TimeLimit(env, DEFAULT_EPISODE_STEPS)
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
    problem = _action_bounds_problem(space)
    if problem:
        env.close()
        raise EnvError(f"environment {env_id!r} has action bounds {problem}; iapo rescales (-1, 1) onto each "
                       "dimension's [low, high] and needs low < high with a finite width")
    obs_space = env.observation_space
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        try:
            observation_layout(obs_space)
        except EnvError as exc:
            env.close()
            raise EnvError(f"environment {env_id!r}: {exc}") from None
        env = FlattenObservation(env)
    elif not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        env.close()
        raise EnvError(
            f"environment {env_id!r} has observations {obs_space}; iapo needs a flat Box observation "
            "(or a Dict or Tuple of Boxes, which it flattens)"
        )
    if env.observation_space.shape[0] == 0:
        env.close()
        raise EnvError(f"environment {env_id!r} has observations of size 0; iapo needs at least one number")
    ones = np.ones(space.shape, space.dtype)  # (of the env's dtype: Box warns on float32 bounds of a float64 Box)
    env = CheckedEnv(env, env_id)  # (each environment step checked, also under ActionRepeat)
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    return gym.wrappers.RescaleAction(env, -ones, ones)


class ActionRepeat(gym.Wrapper):
    """Each action held for `repeat` environment steps, their rewards summed (undiscounted), the
    observation, flags and info those of the last; an episode that ends on an earlier one ends
    there. A step of the agent is then `repeat` steps of the environment (DrQ-v2's and TD-MPC2's
    dm_control runs use 2). It holds no state of its own, so that a checkpoint captures it."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = int(repeat)

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


# -- Dict and Tuple observations --------------------------------------------------------------


def _boxes(space: gym.Space, prefix: str = ""):
    """(path, Box) of each Box of a (nested) Dict or Tuple observation space, in the order iapo
    flattens them: a Dict's keys sorted, a Tuple's entries in order, depth first; the path joins
    the keys (or entry numbers) with "/"."""
    if isinstance(space, gym.spaces.Box):
        yield prefix, space
        return
    if isinstance(space, gym.spaces.Dict):
        items = [(str(key), space.spaces[key]) for key in sorted(space.spaces, key=str)]
    elif isinstance(space, gym.spaces.Tuple):
        items = [(str(i), sub) for i, sub in enumerate(space.spaces)]
    else:
        raise EnvError(f"observation {prefix or 'space'} is a {type(space).__name__}; iapo flattens Dicts and "
                       "Tuples of Boxes")
    for key, sub in items:
        yield from _boxes(sub, f"{prefix}/{key}" if prefix else key)


def observation_layout(space: gym.Space) -> list[tuple[str, int]]:
    """(path, size) of each Box of a (nested) Dict or Tuple observation space, in the order iapo
    flattens them (`_boxes`). A flat Box is [("", size)]."""
    return [(path, int(np.prod(box.shape))) for path, box in _boxes(space)]


def _leaves(space: gym.Space, obs):
    if isinstance(space, gym.spaces.Box):
        yield space, obs
    elif isinstance(space, gym.spaces.Dict):
        if not isinstance(obs, Mapping):
            raise EnvError(f"expected a dict observation with keys {sorted(space.spaces, key=str)}, got a "
                           f"{type(obs).__name__}")
        missing = [k for k in space.spaces if k not in obs]
        if missing:
            raise EnvError(f"the observation lacks the key {missing[0]!r}")
        for key in sorted(space.spaces, key=str):
            yield from _leaves(space.spaces[key], obs[key])
    else:
        if len(obs) != len(space.spaces):
            raise EnvError(f"expected an observation tuple of {len(space.spaces)} entries, got {len(obs)}")
        for sub, value in zip(space.spaces, obs):
            yield from _leaves(sub, value)


def flatten_observation(space: gym.Space, obs) -> np.ndarray:
    """A (nested) Dict or Tuple observation as one vector, in `observation_layout`'s order."""
    parts = []
    try:
        for box, value in _leaves(space, obs):
            value = np.asarray(value)
            if value.size != int(np.prod(box.shape)):
                raise EnvError(f"an observation entry has shape {value.shape}; its space has shape {box.shape}")
            parts.append(value.astype(np.float64).ravel())
    except (TypeError, ValueError) as exc:  # (text where numbers belong, a number where a tuple does)
        raise EnvError(f"the observation does not fit its space ({type(exc).__name__}: {exc})") from None
    return np.concatenate(parts) if parts else np.zeros(0)


def check_observation_layout(env: gym.Env, recorded: list | None, env_id: str) -> list[list] | None:
    """The layout of `env`'s flat observation ([[key path, size], ...], None for a Box), checked
    against the one a run recorded (`recorded`, None for a Box or a run of a version before
    layouts were recorded): an environment that now lays its Dict out otherwise (a key renamed,
    added or resized) is an EnvError, not an agent that reads one entry as another."""
    structured = structured_observation_space(env)
    now = None if structured is None else [[path, size] for path, size in observation_layout(structured)]
    if recorded is not None and now != [list(entry) for entry in recorded]:
        shown = "a flat Box" if now is None else now
        raise EnvError(f"environment {env_id!r} now lays its observation out as {shown}, not as the run recorded "
                       f"({recorded}): its agent would read the entries in another order")
    return now


class FlattenObservation(gym.ObservationWrapper):
    """A Dict or Tuple observation as one Box, in `observation_layout`'s order."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        boxes = [box for _, box in _boxes(env.observation_space)]
        low = np.concatenate([np.broadcast_to(b.low, b.shape).ravel() for b in boxes]).astype(np.float64)
        high = np.concatenate([np.broadcast_to(b.high, b.shape).ravel() for b in boxes]).astype(np.float64)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float64)

    def observation(self, obs):
        return flatten_observation(self.env.observation_space, obs)


def structured_observation_space(env: gym.Env) -> gym.Space | None:
    """The Dict or Tuple observation space that `make_env` flattened (None for a Box)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, FlattenObservation):
            return env.env.observation_space
        env = env.env
    return None


class CheckedEnv(gym.Wrapper):
    """The boundary where an environment's values enter iapo. Its failure in `reset` or `step`,
    a result that is not Gymnasium's tuple, an observation that is not numbers of its space's
    shape, a reward that is not one real number, or either not finite as iapo stores them
    (float32: 1e300 is inf there) is an EnvError naming the environment, the call and the step of
    the episode (one line, not a traceback from inside it, nor a NaN found later)."""

    def __init__(self, env: gym.Env, env_id: str):
        super().__init__(env)
        self.env_id = env_id
        self.episode_step = 0  # steps into the current episode (saved in checkpoints: `env_state`)

    def _where(self, what: str) -> str:
        return "reset" if what == "reset" else f"step {self.episode_step} of an episode"

    def _fail(self, what: str, problem: str) -> EnvError:
        return EnvError(f"environment {self.env_id!r} returned {problem} from {self._where(what)}")

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except EnvError as exc:  # (flattening a Dict or Tuple observation: said with where it happened)
            raise EnvError(f"environment {self.env_id!r}, {self._where(what)}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 (whatever the environment raises)
            raise EnvError(f"environment {self.env_id!r} raised in {what}: {type(exc).__name__}: {exc}") from None
        size = 2 if what == "reset" else 5
        if not isinstance(out, tuple) or len(out) != size:
            raise self._fail(what, f"{type(out).__name__} {_short(out)}, not Gymnasium's {size}-tuple")
        obs = out[0]
        if np.shape(obs) != self.observation_space.shape:
            raise self._fail(what, f"an observation of shape {np.shape(obs)} (its observation space has shape "
                                   f"{self.observation_space.shape})")
        array = np.asarray(obs)
        if array.dtype.kind not in "biuf":
            raise self._fail(what, f"an observation of {array.dtype} values, not numbers: {_short(obs)}")
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.all(np.isfinite(array.astype(np.float32))):
                raise self._fail(what, f"a non-finite observation in float32 (as iapo stores it): {_short(obs)}")
        if what == "step":
            reward = out[1]
            if reward is None or np.ndim(reward) != 0 or np.asarray(reward).dtype.kind not in "biuf":
                raise self._fail(what, f"a reward of {_short(reward)} ({type(reward).__name__}), not one real number")
            with np.errstate(over="ignore", invalid="ignore"):
                if not np.isfinite(np.float32(reward)):
                    raise self._fail(what, f"a non-finite reward in float32 (as iapo stores it): {_short(reward)}")
        return out

    def reset(self, **kwargs):
        self.episode_step = 0
        return self._call("reset", self.env.reset, **kwargs)

    def step(self, action):
        self.episode_step += 1
        return self._call("step", self.env.step, action)


def _has_time_limit(env: gym.Env) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = env.env
    return False


def _action_bounds_problem(space: gym.spaces.Box) -> str | None:
    """What is wrong with a Box's bounds for rescaling onto them (None when nothing): a dimension
    with low >= high (no inverse), or a width that overflows the action's dtype (3e38 - -3e38)."""
    low, high = np.asarray(space.low), np.asarray(space.high)
    flat = [i for i in range(low.size) if not low.flat[i] < high.flat[i]]
    if flat:
        i = flat[0]
        return f"low {low.flat[i]:g} >= high {high.flat[i]:g} in dimension {i}"
    with np.errstate(over="ignore"):
        width = high.astype(space.dtype) - low.astype(space.dtype)
    wide = np.flatnonzero(~np.isfinite(width))
    if wide.size:
        i = int(wide[0])
        return f"[{low.flat[i]:g}, {high.flat[i]:g}] in dimension {i}, whose width overflows {space.dtype}"
    return None


def _short(value, limit: int = 60) -> str:
    """A value as at most `limit` characters of text, for one-line messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def dims(env: gym.Env) -> tuple[int, int]:
    """(obs_dim, act_dim)."""
    return int(env.observation_space.shape[0]), int(env.action_space.shape[0])


def use_offscreen_gl() -> None:
    """Select MuJoCo's headless EGL backend unless the user chose one (must precede rendering)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
