"""Any environment a researcher uses: "module:id" and class paths, environment options, Dict
observations, legacy RandomState generators and packages that register ids (issue 38)."""

import importlib
import importlib.util
import csv
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from iapo import checkpoint
from iapo.trainer import TIMING_COLUMNS

from test_cli import run_cli

# A module the tests write and import: a registered id, a class path, a Dict observation, options,
# and a legacy RandomState generator.
MODULE = textwrap.dedent('''
    import gymnasium as gym
    import numpy as np


    class Steps(gym.Env):
        """Reward 1 per step for `horizon` steps (then truncated); observation (2,); renders a
        4 x 4 picture whose first pixel is the step."""

        metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

        def __init__(self, horizon=20, legacy_rng=False, render_mode=None):
            self.horizon, self.legacy_rng, self.render_mode = horizon, legacy_rng, render_mode
            self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
            self.observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            if self.legacy_rng and (seed is not None or not isinstance(self._np_random, np.random.RandomState)):
                self._np_random = np.random.RandomState(seed)  # as dm_control through shimmy and older envs
            self.t, self.x = 0, float(self.np_random.uniform(-1, 1))
            return self._obs(), {}

        def _obs(self):
            return np.array([self.x, self.t / self.horizon], np.float32)

        def step(self, action):
            self.t += 1
            self.x = float(np.clip(self.x + 0.1 * action[0] + 0.01 * self.np_random.standard_normal(), -5, 5))
            return self._obs(), 1.0, False, self.t >= self.horizon, {}

        def render(self):
            picture = np.zeros((4, 4, 3), np.uint8)
            picture[0, 0, 0] = self.t
            return picture


    class Reach(gym.Env):
        """A point that moves toward a goal: Dict observation {"position", "goal"}."""

        def __init__(self, speed=0.1):
            self.speed = speed
            self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
            self.observation_space = gym.spaces.Dict({
                "position": gym.spaces.Box(-5, 5, (2,), np.float32), "goal": gym.spaces.Box(-5, 5, (2,), np.float32)})

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            self.p, self.g = self.np_random.uniform(-1, 1, 2), self.np_random.uniform(-1, 1, 2)
            return self._obs(), {}

        def _obs(self):
            return {"position": self.p.astype(np.float32), "goal": self.g.astype(np.float32)}

        def step(self, action):
            self.t += 1
            self.p = self.p + self.speed * np.asarray(action)
            return self._obs(), -float(np.linalg.norm(self.p - self.g)), False, self.t >= 30, {}


    class Pair(gym.Env):
        """A Tuple observation (position (2,), time (1,)); at step `bad_at`, a position of 3 numbers."""

        def __init__(self, bad_at=-1):
            self.bad_at = bad_at
            self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
            self.observation_space = gym.spaces.Tuple((gym.spaces.Box(-5, 5, (2,), np.float32),
                                                       gym.spaces.Box(0, 1, (1,), np.float32)))

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t, self.p = 0, self.np_random.uniform(-1, 1, 2)
            return self._obs(), {}

        def _obs(self):
            p = self.p if self.t != self.bad_at else np.zeros(3)
            return (p.astype(np.float32), np.array([self.t / 30], np.float32))

        def step(self, action):
            self.t += 1
            self.p = np.clip(self.p + 0.1 * np.asarray(action), -5, 5)
            return self._obs(), -float(np.linalg.norm(self.p)), False, self.t >= 30, {}


    gym.register("IapoTestSteps-v0", entry_point=Steps, max_episode_steps=1000)
''')

TINY_RUN = ["--total-steps", "160", "--random-steps", "100", "--eval-every", "80", "--eval-episodes", "1",
            "--checkpoint-every", "80", "--hidden-sizes", "16", "--critic-hidden-sizes", "16", "--batch-size", "16",
            "--no-progress", "--quiet"]


@pytest.fixture
def envmodule(tmp_path, monkeypatch):
    """The module's name, importable here and in `iapo` processes started from here."""
    name = f"iapo_test_envs_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}")
    importlib.invalidate_caches()
    yield name
    sys.modules.pop(name, None)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_module_id_and_options_reach_every_command(envmodule, tmp_path, capsys):
    """`module:id` imports the module that registers the id; the options reach the environment in
    training, `iapo evaluate` (a return of `horizon` steps of reward 1) and a resumed run."""
    run_dir = tmp_path / "run"
    env = f"{envmodule}:IapoTestSteps-v0"
    code, _, err = run_cli(["train", "--env", env, "--env-kwargs", "horizon=7", "--agent", "direct",
                            "--run-dir", str(run_dir), *TINY_RUN], capsys)
    assert code == 0, err
    assert _config(run_dir)["env"] == env and _config(run_dir)["env_kwargs"] == ["horizon=7"]
    sys.modules.pop(envmodule, None)  # a later command imports it again from the recorded name
    code, out, err = run_cli(["evaluate", str(run_dir), "--episodes", "2"], capsys)
    assert code == 0 and "return 7.00 ± 0.00 over 2 episodes" in out, out + err

    from iapo.config import TrainConfig
    from iapo.trainer import make_trainer

    trainer = make_trainer(TrainConfig(resume=str(run_dir), progress=False, quiet=True))
    try:
        assert trainer.runs[0].env.unwrapped.horizon == 7
    finally:
        trainer.close()


def test_a_class_path_and_a_json_object_of_options(envmodule, tmp_path, capsys):
    import iapo

    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", f"{envmodule}:Steps", "--env-kwargs", '{"horizon": 5}', "--agent",
                            "direct", "--run-dir", str(run_dir), *TINY_RUN], capsys)
    assert code == 0, err
    assert iapo.load(run_dir).act(np.zeros(2, np.float32)).shape == (1,)
    code, out, _ = run_cli(["evaluate", str(run_dir), "--episodes", "1"], capsys)
    assert code == 0 and "return 5.00" in out


@pytest.mark.parametrize("argv, says", [
    (["--env", "Pendulum-v1", "--env-kwargs", "gravty=9.0"], "environment 'Pendulum-v1' has no option 'gravty' "
                                                            "(its options: render_mode, g)"),
    (["--env", "Hopper-v5", "--env-kwargs", "frame_skp=2"], "has no option 'frame_skp'; did you mean 'frame_skip'?"),
    (["--env", "Pendulum-v1", "--env-kwargs", "g"], "--env-kwargs 'g': expected KEY=VALUE"),
    (["--env", "Pendulum-v1", "--env-kwargs", "{g: 1}"], "--env-kwargs '{g: 1}' is not a JSON object"),
    (["--env", "Pendulum-v1", "--env-kwargs", "g=1", "g=2"], "--env-kwargs gives 'g' twice"),
    (["--env", "Pendulum-v1", "--env-kwargs", "g=1e999"], "--env-kwargs: 1e999 is not a finite number"),
    (["--env", "Pendulum-v1", "--env-kwargs", '{"g": NaN}'], "--env-kwargs: NaN is not a finite number"),
    (["--env", "no_such_module_here:Thing-v0"], "needs the module 'no_such_module_here', which cannot be imported"),
    (["--env", "json:NoSuchThing"], "module 'json' neither registers an environment 'NoSuchThing' nor defines"),
    (["--env", "json:dumps"], "'json:dumps' names a function, not an environment class"),
    (["--env", "Pendulum-v1", "--env-kwargs", '{"g": 1, "g": 2}'], "--env-kwargs gives 'g' twice"),
    (["--env", "Pendulum-v1", "--env-kwargs", 'g={"a": 1, "a": 2}'], "--env-kwargs g: its value gives 'a' twice"),
    (["--env", "Pendulum-v1", "--env-kwargs", "max_episode_steps=5"], "is iapo's own setting: use --max-episode-steps"),
    (["--env", "Pendulum-v1", "--env-kwargs", "render_mode=human"], "--env-kwargs render_mode: is chosen by iapo"),
])
def test_bad_environments_and_options_are_one_line(argv, says, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", *argv, "--run-dir", str(run_dir), *TINY_RUN], capsys)
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not run_dir.exists()


def test_a_class_path_never_calls_what_is_not_an_environment_class(envmodule, tmp_path, capsys):
    """`module:NAME` makes an environment only from a gymnasium.Env subclass: a function of the
    module is refused before it is called with the options (it could do anything)."""
    module = tmp_path / f"{envmodule}_side.py"
    module.write_text("def effect(path):\n    open(path, 'w').write('called')\n")
    code, _, err = run_cli(["train", "--env", f"{envmodule}_side:effect", "--env-kwargs",
                            f"path={json.dumps(str(tmp_path / 'touched'))}", "--run-dir", str(tmp_path / "run"),
                            *TINY_RUN], capsys)
    assert code == 2 and "names a function, not an environment class" in err, err
    assert not (tmp_path / "touched").exists()


def test_a_module_that_exits_on_import_is_one_line(envmodule, tmp_path, capsys):
    """A module that calls sys.exit, or parses a command line of its own, on import: one line naming
    it and its last word, not iapo's exit with that status or another program's usage text."""
    (tmp_path / f"{envmodule}_exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / f"{envmodule}_script.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', required=True)\np.parse_args()\n")
    code, _, err = run_cli(["train", "--env", f"{envmodule}_exits:Env", "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and f"importing '{envmodule}_exits' for environment" in err and "exited (status 3)" in err, err
    assert err.count("\n") == 1, err
    code, _, err = run_cli(["train", "--env", f"{envmodule}_script:Env", "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "exited (status 2): " in err and "required: --lr" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_an_environment_failing_at_its_first_step_writes_nothing_and_keeps_the_old_run(envmodule, tmp_path, capsys):
    """An option that fails only when the environment steps (a string where a number goes) is
    found by a trial step before anything is written: --overwrite keeps the old run, and a new
    run directory is not left half made. A message of several lines is said on one."""
    run_dir = tmp_path / "run"
    assert run_cli(["train", "--env", f"{envmodule}:IapoTestSteps-v0", "--run-dir", str(run_dir), *TINY_RUN],
                   capsys)[0] == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    (tmp_path / f"{envmodule}_bad.py").write_text(
        f"from {envmodule} import Steps\n\n\nclass Bad(Steps):\n    def step(self, action):\n"
        "        raise TypeError('step took\\n    a string\\n  where a number goes')\n")
    code, _, err = run_cli(["train", "--env", f"{envmodule}_bad:Bad", "--run-dir", str(run_dir), "--overwrite",
                            *TINY_RUN], capsys)
    assert code == 2 and "raised in step: TypeError: step took a string where a number goes, in a trial step " \
        "before the run started (nothing was written)" in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    code, _, err = run_cli(["train", "--env", f"{envmodule}_bad:Bad", "--run-dir", str(tmp_path / "new"), *TINY_RUN],
                           capsys)
    assert code == 2 and not (tmp_path / "new").exists(), err


def test_a_missing_package_is_named(tmp_path, capsys):
    if importlib.util.find_spec("gymnasium_robotics") is not None:
        pytest.skip("gymnasium-robotics is installed")
    code, _, err = run_cli(["train", "--env", "FetchReach-v4", "--run-dir", str(tmp_path / "run"), *TINY_RUN], capsys)
    assert code == 2 and "pip install gymnasium-robotics" in err and err.count("\n") == 1, err


def test_a_package_that_registers_nothing_and_a_module_in_the_current_folder_are_named(tmp_path):
    """shimmy installed without dm_control registers no dm_control/ id: the error says what to
    install, not only "unknown id". A module in the current folder, which the `iapo` command does
    not import from (unlike `python -m`), is named with the way to reach it."""
    import subprocess

    if importlib.util.find_spec("shimmy") is not None:
        code = ("import sys; sys.modules['dm_control'] = None\n"
                "from iapo.envs import make_env\nmake_env('dm_control/cheetah-run-v0')\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "registered no dm_control/* environment; pip install \"iapo[dmc]\"" in done.stderr, done.stderr
    (tmp_path / "mymodule.py").write_text("import gymnasium\n")
    script = Path(sys.executable).parent / "iapo"
    done = subprocess.run([str(script), "train", "--env", "mymodule:Thing-v0", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 2 and "run it with PYTHONPATH=." in done.stderr and done.stderr.count("\n") == 1, \
        done.stderr


def test_dict_observations_end_to_end(envmodule, tmp_path, capsys):
    """A Dict observation is flattened with its keys sorted; the order is recorded in config.json,
    and `iapo.load(run).act` takes the environment's own Dict observation (or a list of them)."""
    import iapo
    from iapo.envs import make_env, observation_layout

    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", f"{envmodule}:Reach", "--env-kwargs", "speed=0.2", "--agent",
                            "iterative", "--iterations", "1", "--action-samples", "2", "--run-dir", str(run_dir),
                            *TINY_RUN], capsys)
    assert code == 0, err
    assert _config(run_dir)["resolved"]["observation_layout"] == [["goal", 2], ["position", 2]]
    env = make_env(f"{envmodule}:Reach")
    obs, _ = env.reset(seed=3)
    raw = env.unwrapped._obs()
    np.testing.assert_array_equal(obs, np.concatenate([raw["goal"], raw["position"]]))
    assert observation_layout(env.unwrapped.observation_space) == [("goal", 2), ("position", 2)]
    env.close()
    as_dict = iapo.load(run_dir, seed=1).act(raw)
    as_flat = iapo.load(run_dir, seed=1).act(obs)
    np.testing.assert_allclose(as_dict, as_flat, rtol=1e-6)
    assert iapo.load(run_dir).act([raw, raw, raw]).shape == (3, 2)
    with pytest.raises(iapo.IapoError, match="lacks the key 'goal'"):
        iapo.load(run_dir).act({"position": raw["position"]})
    with pytest.raises(iapo.IapoError, match="does not fit its space"):
        iapo.load(run_dir).act({"position": raw["position"], "goal": ["a", "b"]})


def test_an_environment_that_lays_its_observation_out_otherwise_is_refused(envmodule, tmp_path, capsys):
    """A run records its Dict observation's layout; if the environment later names or sizes its
    entries otherwise, evaluating, loading or resuming the run is one line, not an agent that
    reads one entry as another."""
    import iapo

    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", f"{envmodule}:Reach", "--agent", "direct", "--run-dir", str(run_dir),
                            *TINY_RUN], capsys)
    assert code == 0, err
    checkpoint.checkpoint_path(run_dir, 160).unlink()  # (so that there is something left to resume)
    module = tmp_path / f"{envmodule}.py"
    module.write_text(module.read_text().replace('"goal"', '"target"'))  # same sizes, another order
    sys.modules.pop(envmodule, None)
    importlib.invalidate_caches()
    says = "now lays its observation out as [['position', 2], ['target', 2]], not as the run recorded"
    code, _, err = run_cli(["evaluate", str(run_dir), "--episodes", "1"], capsys)
    assert code == 2 and says in err and err.count("\n") == 1, err
    with pytest.raises(iapo.IapoError, match="not as the run recorded"):
        iapo.load(run_dir)
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 2 and says in err, err


def test_tuple_observations_and_an_entry_of_the_wrong_size(envmodule, tmp_path, capsys):
    """A Tuple observation trains flattened; `act` takes the environment's tuple or a list of them,
    and refuses a malformed one in one line; an entry of the wrong size from the environment is one
    line naming the environment and the step."""
    import iapo

    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", f"{envmodule}:Pair", "--agent", "direct", "--run-dir", str(run_dir),
                            *TINY_RUN], capsys)
    assert code == 0, err
    policy = iapo.load(run_dir)
    obs = (np.array([0.1, -0.2], np.float32), np.array([0.5], np.float32))
    np.testing.assert_array_equal(policy.act(obs), policy.act(np.array([0.1, -0.2, 0.5], np.float32)))
    assert policy.act([obs, obs, obs]).shape == (3, 2)
    with pytest.raises(iapo.IapoError, match=r"an observation entry has shape \(\); its space has shape \(2,\)"):
        policy.act((0.3, np.array([0.5])))
    with pytest.raises(iapo.IapoError, match="does not fit its space"):
        policy.act((np.array(["a", "b"]), np.array([0.5])))
    code, _, err = run_cli(["train", "--env", f"{envmodule}:Pair", "--env-kwargs", "bad_at=3", "--agent", "direct",
                            "--run-dir", str(tmp_path / "bad"), *TINY_RUN], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"environment '{envmodule}:Pair', step 3 of an episode: an observation entry has shape (3,)" in err, err


def test_a_mujoco_task_with_its_own_episode_state_is_restored_whole():
    """A MuJoCo task that keeps episode state in its own attributes (a goal drawn at reset, as
    gymnasium-robotics' Fetch tasks do) gets it back with the simulator's state, not the goal of
    the episode the restoring environment happened to be in."""
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    from iapo.env_state import get_state, set_state, uncaptured

    class GoalHopper(HopperEnv):
        def reset_model(self):
            self.goal = self.np_random.uniform(-1.0, 1.0)
            return super().reset_model()

    env, other = GoalHopper(), GoalHopper()
    env.reset(seed=1)
    other.reset(seed=0)
    assert env.goal != other.goal
    env.step(np.zeros(3))
    set_state(other, get_state(env))
    assert other.goal == env.goal and uncaptured(env) == []
    np.testing.assert_array_equal(other.step(np.full(3, 0.5))[0], env.step(np.full(3, 0.5))[0])
    for e in (env, other):
        e.close()


def test_a_legacy_random_state_environment_trains_and_resumes_exactly(envmodule, tmp_path, capsys):
    """An environment whose generator is a NumPy RandomState: its state is captured and restored
    like a Generator's (it was an AttributeError), and a run resumed from a checkpoint mid-way ends
    with the same metrics as a run never interrupted."""
    from iapo.env_state import get_state, set_state
    from iapo.envs import make_env

    env = make_env(f"{envmodule}:IapoTestSteps-v0", ["legacy_rng=true"])
    env.reset(seed=0)
    assert isinstance(env.unwrapped.np_random, np.random.RandomState)
    saved = get_state(env)
    first = [env.step(np.zeros(1, np.float32))[0] for _ in range(3)]
    set_state(env, saved)
    again = [env.step(np.zeros(1, np.float32))[0] for _ in range(3)]
    np.testing.assert_array_equal(first, again)
    fresh = make_env(f"{envmodule}:IapoTestSteps-v0", ["legacy_rng=true"])  # as a resumed run's: reset, then restored
    fresh.reset(seed=5)
    set_state(fresh, saved)
    np.testing.assert_array_equal(first, [fresh.step(np.zeros(1, np.float32))[0] for _ in range(3)])
    # the step of the episode that iapo's messages name comes back too
    later = make_env(f"{envmodule}:IapoTestSteps-v0", ["legacy_rng=true"])
    later.reset(seed=9)
    set_state(later, get_state(fresh))
    assert get_state(later)["episode_step"] == 3
    for e in (env, fresh, later):
        e.close()

    common = ["--env", f"{envmodule}:IapoTestSteps-v0", "--env-kwargs", "legacy_rng=true", "horizon=50",
              "--agent", "direct", *TINY_RUN]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli(["train", *common, "--run-dir", str(whole)], capsys)[0] == 0
    shutil.copytree(whole, part)
    # as if killed between the checkpoints at steps 80 (mid-episode) and 160
    checkpoint.checkpoint_path(part, 160).unlink()
    code, _, err = run_cli(["train", "--resume", str(part), "--no-progress", "--quiet"], capsys)
    assert code == 0, err
    assert _rows(part) == _rows(whole)


def test_action_repeat_holds_each_action_and_sums_the_rewards(envmodule, tmp_path, capsys, monkeypatch):
    """--action-repeat N: one step of the agent is N of the environment, rewards summed, stopping
    where the episode ends; evaluation returns are whole episodes' returns; recorded in config.json
    for every later command; the run resumes exactly; 0 is refused in one line."""
    from iapo.envs import make_env

    env = make_env(f"{envmodule}:IapoTestSteps-v0", ["horizon=7"], action_repeat=3)
    env.reset(seed=0)
    steps = [env.step(np.zeros(1, np.float32)) for _ in range(3)]
    assert [s[1] for s in steps] == [3.0, 3.0, 1.0] and [s[3] for s in steps] == [False, False, True]
    assert steps[-1][0][1] == 1.0  # the observation of the episode's last step (t / horizon)
    from iapo.env_state import get_state

    assert get_state(env)["episode_step"] == 7  # (iapo's messages count the environment's steps)
    env.close()

    common = ["--env", f"{envmodule}:IapoTestSteps-v0", "--env-kwargs", "horizon=50", "--action-repeat", "2",
              "--agent", "direct", *TINY_RUN]
    whole, part = tmp_path / "whole", tmp_path / "part"
    code, _, err = run_cli(["train", *common, "--run-dir", str(whole)], capsys)
    assert code == 0, err
    assert _config(whole)["action_repeat"] == 2
    rows = _rows(whole)
    assert [float(r["eval_return_mean"]) for r in rows] == [50.0, 50.0]  # whole episodes: 50 rewards of 1
    assert [float(r["eval_length_mean"]) for r in rows] == [25.0, 25.0]  # of 25 actions each
    assert [int(r["episodes"]) for r in rows] == [3, 6]  # 80 and 160 actions, 25 per episode
    code, out, err = run_cli(["evaluate", str(whole), "--episodes", "1"], capsys)
    assert code == 0 and "return 50.00" in out, out + err
    saved, imageio = {}, pytest.importorskip("imageio")
    monkeypatch.setattr(imageio, "mimsave", lambda path, frames, fps, **kw: saved.update(frames=frames, fps=fps)
                        or Path(path).write_bytes(b""))
    code, _, err = run_cli(["evaluate", str(whole), "--episodes", "1", "--video", str(tmp_path / "v.mp4")], capsys)
    assert code == 0, err  # a frame per action, played at 20 / 2 frames per second: in real time
    assert [int(f[0, 0, 0]) for f in saved["frames"]] == list(range(0, 51, 2)) and saved["fps"] == 10
    shutil.copytree(whole, part)
    checkpoint.checkpoint_path(part, 160).unlink()  # as if killed between the checkpoints at 80 and 160
    code, _, err = run_cli(["train", "--resume", str(part), "--no-progress", "--quiet"], capsys)
    assert code == 0, err
    assert _rows(part) == rows
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--action-repeat", "0", "--run-dir",
                            str(tmp_path / "bad"), *TINY_RUN], capsys)
    assert code == 2 and "--action-repeat must be >= 1, got 0" in err and err.count("\n") == 1, err


def test_overestimation_rollouts_run_their_horizon_in_actions(envmodule, tmp_path, capsys):
    """`iapo analyze overestimation` rolls out `horizon` actions from each visited state past the
    episode's limit; under --action-repeat that is `horizon` x N environment steps (reward 1 per
    environment step here, so with alpha -> 0 and gamma = 1 a return is 2 per action)."""
    from iapo.analysis.overestimation import value_bias
    from iapo.saved import load_agent

    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", f"{envmodule}:IapoTestSteps-v0", "--env-kwargs", "horizon=10000",
                            "--max-episode-steps", "40", "--action-repeat", "2", "--agent", "direct",
                            "--run-dir", str(run_dir), *TINY_RUN], capsys)
    assert code == 0, err
    config, agent, state, _ = load_agent(run_dir)
    state = state.replace(log_alpha=state.log_alpha * 0 - 60.0)  # alpha ~ 1e-26: the rewards alone
    out = value_bias(config, agent, state, gamma=1.0, states=2, horizon=30, seed=0)
    np.testing.assert_allclose(out["returns"], 60.0, rtol=1e-5)  # 30 actions, 60 environment steps (> 40)


def test_the_python_api_takes_options_as_a_dict():
    import iapo

    config = iapo.make_config(env="Pendulum-v1", env_kwargs={"g": 9.0, "name": "x"})
    assert config.env_kwargs == ("g=9.0", 'name="x"')
    config.validate()
    with pytest.raises(iapo.IapoError, match='"g=1" is not an option name'):
        iapo.make_config(env="Pendulum-v1", env_kwargs={"g=1": 5})


def test_sweeps_and_config_files_take_options(envmodule, tmp_path, capsys):
    from iapo.configfile import read_config_file
    from iapo.grid import build_trials
    from iapo.grid import SweepConfig

    path = tmp_path / "c.yaml"
    path.write_text(f"env: {envmodule}:IapoTestSteps-v0\nenv_kwargs:\n  horizon: 9\n  legacy_rng: true\n")
    config = read_config_file(path)
    assert config.env_kwargs == ("horizon=9", "legacy_rng=true")
    trials = build_trials(SweepConfig(config=str(path), agents=("direct",), seeds=("0",), total_steps=200,
                                      set=("env-kwargs.horizon=5,7",), out=str(tmp_path / "sweep")))
    assert [t.config.env_kwargs for t in trials] == [("horizon=5", "legacy_rng=true"), ("horizon=7", "legacy_rng=true")]
    assert [t.name for t in trials] == [f"{envmodule}:IapoTestSteps-v0_direct_horizon=5",
                                        f"{envmodule}:IapoTestSteps-v0_direct_horizon=7"]
    # a JSON list is one value, and a value with a / makes no nested folder
    trials = build_trials(SweepConfig(config=str(path), agents=("direct",), seeds=("0",), total_steps=200,
                                      set=("env-kwargs.shape=[1,2],[3]", "env-kwargs.xml=a/b.xml"),
                                      out=str(tmp_path / "sweep")))
    assert [t.config.env_kwargs for t in trials] == [
        ("horizon=9", "legacy_rng=true", "shape=[1, 2]", 'xml="a/b.xml"'),
        ("horizon=9", "legacy_rng=true", "shape=[3]", 'xml="a/b.xml"')]
    assert all("/" not in t.name and t.dir.parent == tmp_path / "sweep" for t in trials)
    # YAML merge keys, and counts written as 1e3 in fields that may be unset
    path.write_text("algo:\n  <<: {batch_size: 16}\n  agent: direct\nmax_episode_steps: 1e3\n")
    config = read_config_file(path)
    assert (config.algo.batch_size, config.algo.agent, config.max_episode_steps) == (16, "direct", 1000)
    # a number with an exponent and no point is a number, as on the command line (YAML 1.1 reads text)
    path.write_text("env: Pendulum-v1\nenv_kwargs: {g: 1e1, h: -2E-3, name: 1e1x}\nalgo: {policy_lr: 3e-4}\n")
    config = read_config_file(path)
    assert config.env_kwargs == ("g=10.0", "h=-0.002", 'name="1e1x"') and config.algo.policy_lr == 3e-4
    # a misspelt option in a sweep is refused before any trial starts, and nothing is written
    code, _, err = run_cli(["sweep", "--envs", "Pendulum-v1", "--agents", "direct", "--seeds", "0", "--total-steps", "300",
                         "--no-progress", "--out", str(tmp_path / "swk"), "--set", "env_kwargs.gg=1,2"], capsys)
    assert code == 2 and "environment 'Pendulum-v1' has no option 'gg'; did you mean 'g'?" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "swk").exists()
    # options that are neither a mapping nor KEY=VALUE texts
    from iapo.errors import ConfigError

    for bad in ("[1, 2]", "5"):
        path.write_text(f"env: Pendulum-v1\nenv_kwargs: {bad}\n")
        with pytest.raises(ConfigError, match="env_kwargs .* is not a mapping of option names to values"):
            read_config_file(path)


def test_dm_control_through_shimmy(tmp_path, capsys):
    """A DeepMind Control Suite task by its `dm_control/` id (shimmy imported on demand): its Dict
    observation flattened, its RandomState captured; it trains, evaluates and resumes."""
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", "dm_control/cartpole-balance-v0", "--agent", "direct",
                            "--run-dir", str(run_dir), *TINY_RUN], capsys)
    assert code == 0, err
    layout = _config(run_dir)["resolved"]["observation_layout"]
    assert layout == [["position", 3], ["velocity", 2]]
    code, out, err = run_cli(["evaluate", str(run_dir), "--episodes", "1"], capsys)
    assert code == 0 and out.startswith("return "), out + err
    # a video: dm_control chooses its GL backend when imported, so iapo chooses before (a new
    # process, as a user's: this one may have imported dm_control already)
    import subprocess

    video = tmp_path / "episode.mp4"
    done = subprocess.run([sys.executable, "-m", "iapo.cli", "evaluate", str(run_dir), "--episodes", "1", "--video",
                           str(video)], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")})
    assert "Traceback" not in done.stderr and "warning" not in done.stderr, done.stderr
    if done.returncode == 0:
        assert video.read_bytes()[4:8] == b"ftyp"
    else:
        assert done.returncode == 2 and "MUJOCO_GL" in done.stderr, done.stderr


def test_the_time_limit_warning_is_said_once_per_process(envmodule, tmp_path):
    """An environment without a time limit is said once, however many copies a process makes
    (training and evaluation environments, seeds); dm_control's tasks, which end their own
    episodes, are not said at all."""
    import os
    import subprocess

    code = (f"from iapo.envs import make_env\n[make_env('{envmodule}:Reach') for _ in range(4)]\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('shimmy'):\n    make_env('dm_control/cartpole-balance-v0')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("registers no time limit") == 1, done.stderr
    assert "dm_control" not in done.stderr
