"""One writer per run directory: a second writer is refused while the first lives, a killed
writer leaves no stale lock, and sweep workers do not outlive their driver."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from iapo.rundir import LOCK as LOCK_NAME

from test_cli import run_cli

LONG = ["train", "--env", "Pendulum-v1", "--agent", "direct", "--hidden-sizes", "16", "16",
        "--critic-hidden-sizes", "16", "16", "--batch-size", "16", "--total-steps", "100000", "--random-steps", "100",
        "--eval-every", "500", "--eval-episodes", "1", "--checkpoint-every", "500", "--no-progress"]


def _holder(run_dir, expect=None, timeout=120):
    """The pid written into the run directory's lock file once a process (`expect`, if given)
    holds it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            pid = json.loads((run_dir / LOCK_NAME).read_text())["pid"]
            if expect is None or pid == expect:
                return pid
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"no process took the lock of {run_dir}")


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_stale_lock(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "iapo.cli", *LONG, "--run-dir", str(run_dir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _holder(run_dir) == first.pid
        code, _, err = run_cli([*LONG, "--run-dir", str(run_dir), "--overwrite"], capsys)
        assert code == 2 and f"is in use by another iapo process (pid {first.pid} on " in err, err
        assert err.count("\n") == 1  # one line, no traceback
        deadline = time.time() + 120
        while not list((run_dir / "checkpoints").glob("ckpt_*")) and time.time() < deadline:
            time.sleep(0.2)
        code, _, err = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
        assert code == 2 and "in use by another iapo process" in err, err
    finally:
        first.kill()
        first.wait()
    assert (run_dir / "config.json").exists()  # the refused writers deleted nothing
    # SIGKILL released the lock with the process: a resume takes it.
    resumed = subprocess.Popen([sys.executable, "-m", "iapo.cli", "train", "--resume", str(run_dir), "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _holder(run_dir, expect=resumed.pid) == resumed.pid
    finally:
        resumed.kill()
        resumed.wait()


def _orphan_test(tmp_path, kill_before_ready: bool):
    """The middle process stands for a sweep driver, the grandchild for its worker, which is
    given the driver's pid as the local backend gives it."""
    flag, ready = tmp_path / "terminated", tmp_path / "ready"
    worker = textwrap.dedent(f"""
        import os, pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: (open({str(flag)!r}, "w").close(), sys.exit(0)))
        if {kill_before_ready!r}:  # the driver dies while this worker is still starting
            while os.getppid() == int(sys.argv[1]):
                time.sleep(0.05)
        from iapo.trial import stop_when_orphaned
        stop_when_orphaned(int(sys.argv[1]), period=0.1)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(120)
    """)
    driver = textwrap.dedent(f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {worker!r}, str(os.getpid())], start_new_session=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver])
    deadline = time.time() + 60
    while not kill_before_ready and not ready.exists() and time.time() < deadline:
        time.sleep(0.1)
    if not kill_before_ready:
        assert ready.exists(), "the worker did not start"
    else:
        time.sleep(0.5)  # the worker is running, not yet watching
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the orphaned worker kept running"


def test_a_sweep_worker_stops_when_its_driver_is_killed(tmp_path):
    _orphan_test(tmp_path, kill_before_ready=False)


def test_a_sweep_worker_stops_when_its_driver_was_killed_while_it_started(tmp_path):
    """The failure CI once showed: the driver died before the worker had imported iapo."""
    _orphan_test(tmp_path, kill_before_ready=True)


# -- a damaged metrics.csv ----------------------------------------------------------------------
def _row(step, ret):
    from iapo.logger import COLUMNS

    values = {"step": step, "episodes": step // 100, "eval_return_mean": ret, "eval_return_std": 1.5,
              "updates": step, "wall_time_s": 2.0}
    return ",".join(str(values.get(k, "")) for k in COLUMNS)


def _header():
    from iapo.logger import COLUMNS

    return ",".join(COLUMNS)


@pytest.mark.parametrize("damage", ["cut mid-row", "garbage line", "no header", "empty"])
def test_resume_rebuilds_a_damaged_metrics_file_from_its_valid_rows(damage, tmp_path):
    from iapo.logger import RunLogger, read_metrics

    good = [_row(1000, 292.0), _row(2000, 315.0)]
    text = {
        "cut mid-row": "\n".join([_header(), good[0], good[1][:9]]),  # the file cut inside a row
        "garbage line": "\n".join([_header(), good[0], "\x00\x00 not a row", good[1]]) + "\n",
        "no header": "\n".join(good) + "\n",
        "empty": "",
    }[damage]
    (tmp_path / "metrics.csv").write_text(text)
    logger = RunLogger(tmp_path, "t", resume_after=2000)
    logger.log({"step": 3000, "episodes": 30, "eval_return_mean": 330.0, "eval_return_std": 2.0})
    logger.close()
    m = read_metrics(tmp_path / "metrics.csv")
    want = {"empty": [3000], "cut mid-row": [1000, 3000]}.get(damage, [1000, 2000, 3000])
    assert m["step"].tolist() == want
    assert m["eval_return_mean"][-1] == 330.0 and np.all(m["eval_return_mean"] < 1000)


def test_a_folder_in_place_of_the_metrics_file_is_one_line(tmp_path, capsys):
    from iapo.errors import IapoError
    from iapo.logger import RunLogger

    (tmp_path / "metrics.csv").mkdir()
    with pytest.raises(IapoError, match="is a folder"):
        RunLogger(tmp_path, "t", resume_after=1000)


def test_plot_refuses_rows_that_do_not_parse(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env": "Hopper-v5", "algo": {"agent": "direct"}}))
    (run / "metrics.csv").write_text("\n".join([_header(), _row(1000, 292.0), "3000,292,494000"]) + "\n")
    code, _, err = run_cli(["plot", str(run), "--out", str(tmp_path / "p.png")], capsys)
    assert code == 2 and "line 3" in err and "damaged" in err, err
    assert err.count("\n") == 1


# -- --overwrite deletes only what iapo wrote ------------------------------------------------------
def test_overwrite_refuses_a_folder_holding_files_iapo_did_not_write(tmp_path, capsys, tiny_args):
    from test_cli import smoke_args

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "model_final.pt").write_text("weights")
    (run_dir / "tensorboard").mkdir()
    (run_dir / "tensorboard" / "notes.txt").write_text("notes")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli([*smoke_args(run_dir, "direct", tiny_args), *extra], capsys)
        assert code == 2 and "which iapo did not write" in err and ("model_final.pt" in err or "notes.txt" in err), err
    assert (run_dir / "checkpoints" / "model_final.pt").read_text() == "weights"
    assert (run_dir / "tensorboard" / "notes.txt").read_text() == "notes"


def test_overwrite_replaces_a_run_of_iapo_whole(tmp_path, capsys, tiny_args):
    from test_cli import smoke_args

    run_dir = tmp_path / "run"
    args = smoke_args(run_dir, "direct", tiny_args, steps=150)
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(["train", "--env", "Pendulum-v1", "--agent", "direct", "--seeds", "0", "1", "--total-steps", "150",
                    "--random-steps", "100", "--eval-every", "150", "--eval-episodes", "1", "--run-dir",
                    str(tmp_path / "group"), *tiny_args], capsys)[0] == 0
    for target, argv in ((run_dir, args), (tmp_path / "group", None)):
        if argv is None:
            argv = ["train", "--env", "Pendulum-v1", "--agent", "direct", "--total-steps", "150", "--random-steps",
                    "100", "--eval-every", "150", "--eval-episodes", "1", "--run-dir", str(target), *tiny_args]
        code, _, err = run_cli([*argv, "--overwrite"], capsys)
        assert code == 0, err


# -- one line, not a traceback -------------------------------------------------------------------
@pytest.mark.parametrize("text, says", [
    ("[]", 'a JSON object with an "algo" object'),
    ("null", 'a JSON object with an "algo" object'),
    ('{"env": "Hopper-v5", "algo": {"batch_size": "abc"}}', 'batch_size = "abc" is not of type int'),
    ('{"env": "Hopper-v5", "seed": null, "algo": {"agent": "direct"}}', "seed = null is not of type int"),
    ('{"env": "Hopper-v5", "algo": []}', 'a JSON object with an "algo" object'),
    ('{"env": "Pendulum-v1", "action_repeat": 0, "algo": {"agent": "direct"}}', "--action-repeat must be >= 1, got 0"),
    (None, "is a folder"),
])
def test_a_broken_config_json_is_one_line(text, says, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if text is None:
        (run_dir / "config.json").mkdir()
    else:
        (run_dir / "config.json").write_text(text)
    for argv in (["train", "--resume", str(run_dir), "--no-progress"], ["evaluate", str(run_dir)]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err


def test_out_of_device_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import jax

    from iapo import trainer as train_mod

    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 40000000000 bytes.")

    monkeypatch.setattr(train_mod.Trainer, "run", exhausted)
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--run-dir", str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 2 and "out of memory on the device" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv, says", [
    (["evaluate", "RUN", "--seed", "-5"], "--seed must be in [0, 2**32)"),
    (["evaluate", "RUN", "--seed", str(2**70)], "--seed must be in [0, 2**32)"),
    (["analyze", "gap"], "name at least one run directory"),
    (["analyze", "overestimation"], "name at least one run directory"),
    (["analyze", "gap", "RUN", "--out", "FILE"], "is a file, not a folder"),
    (["analyze", "gap", "RUN", "OTHER"], "different environments"),
])
def test_analysis_and_evaluate_inputs_are_one_line(argv, says, tmp_path, capsys):
    for name, env in (("RUN", "Pendulum-v1"), ("OTHER", "Hopper-v5")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"env": env, "algo": {"agent": "direct"}}))
    (tmp_path / "FILE").write_text("")
    argv = [str(tmp_path / a) if a in ("RUN", "OTHER", "FILE") else a for a in argv]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and says in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name", ["gap", "iterations", "landscape", "modes", "optimizers", "overestimation", "transfer"])
def test_every_analysis_checks_its_shared_fields_in_one_place(name, tmp_path, capsys):
    """Each analysis's Config is built on the shared base: --seed, --out and its counts are checked
    there, before any run is read (the run directories here do not exist)."""
    import importlib

    from iapo.analysis.common import AnalysisConfig
    from iapo.cli import ANALYSES

    module = importlib.import_module(ANALYSES[name])
    assert issubclass(module.Config, AnalysisConfig) and module.Config.counts
    runs = ["SOURCE", "HOST"] if name == "transfer" else ["RUN"]
    if name in ("gap", "overestimation"):  # several runs: these must exist and share an environment
        (tmp_path / "RUN").mkdir()
        (tmp_path / "RUN" / "config.json").write_text(json.dumps({"env": "Pendulum-v1", "algo": {"agent": "direct"}}))
    runs = [str(tmp_path / r) for r in runs]
    code, _, err = run_cli(["analyze", name, *runs, "--seed", "-1"], capsys)
    assert code == 2 and "--seed must be in [0, 2**32)" in err and err.count("\n") == 1, err
    count = module.Config.counts[0]
    code, _, err = run_cli(["analyze", name, *runs, f"--{count.replace('_', '-')}", "0"], capsys)
    assert code == 2 and "must be >= 1, got 0" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("how, says", [
    ("raises", "raised in step: RuntimeError: solver diverged"),
    ("shape", "returned an observation of shape (5,) (its observation space has shape (3,)) from step 1"),
    ("scalar action", "has actions of shape ()"),
    ("empty action", "has actions of shape (0,)"),
    ("array reward", "returned a reward of array([0., 0.]) (ndarray), not one real number from step 1 of an episode"),
    ("None reward", "returned a reward of None (NoneType), not one real number from step 7 of an episode, at training"),
    ("string observation", "returned an observation of <U1 values, not numbers"),
    ("float32 overflow", "returned a non-finite observation in float32 (as iapo stores it)"),
    ("nan in evaluation", "returned a non-finite reward in float32 (as iapo stores it): nan from step 3 of an "
                          "episode, in the evaluation at step 100"),
    ("empty observation", "has observations of size 0"),
    ("flat action bound", "has action bounds low 0.5 >= high 0.5 in dimension 1"),
    ("huge action bounds", "whose width overflows float32"),
])
def test_a_misbehaving_environment_is_one_line(how, says, tmp_path, capsys):
    """What an environment gives is checked where it enters iapo (the step, the reward, the
    observation as iapo stores it; the spaces at start-up): one line naming the environment, the
    call and the step, never a traceback or a NaN found later."""
    import gymnasium as gym

    class Env(gym.Env):
        def __init__(self):
            shape = {"scalar action": (), "empty action": (0,)}.get(how, (2,))
            low, high = -np.ones(shape, np.float32), np.ones(shape, np.float32)
            if how == "flat action bound":
                low[1] = high[1] = 0.5
            if how == "huge action bounds":
                low[0], high[0] = -3e38, 3e38
            self.action_space = gym.spaces.Box(low, high, shape)
            self.observation_space = gym.spaces.Box(-1, 1, (0,) if how == "empty observation" else (3,))
            self.t, self.evaluating = 0, False

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            self.evaluating = seed is not None and seed >= 10_000  # (iapo seeds evaluation episodes from 10 000 on)
            return np.zeros(self.observation_space.shape, np.float32), {}

        def step(self, action):
            self.t += 1
            if how == "raises":
                raise RuntimeError("solver diverged")
            obs = np.zeros(5 if how == "shape" else 3, np.float32)
            reward = {"array reward": np.zeros(2), "None reward": None if self.t == 7 else 0.0,
                      "nan in evaluation": np.nan if self.evaluating and self.t == 3 else 0.0}.get(how, 0.0)
            if how == "string observation" and self.t == 2:
                obs = np.array(["a", "b", "c"])
            if how == "float32 overflow" and self.t == 4:
                obs = np.array([0.0, 1e300, 0.0])  # finite in float64
            return obs, reward, False, False, {}

    env_id = f"IapoBroken{how.title().replace(' ', '')}-v0"
    gym.register(env_id, entry_point=Env, max_episode_steps=50)
    try:
        code, _, err = run_cli(["train", "--env", env_id, "--total-steps", "200", "--random-steps", "50",
                                "--eval-every", "100", "--eval-episodes", "1", "--hidden-sizes", "8",
                                "--critic-hidden-sizes", "8", "--batch-size", "8", "--run-dir", str(tmp_path / "run"),
                                "--no-progress"], capsys)
    finally:
        gym.registry.pop(env_id)
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert len(err) < 400, err


# -- smaller things ---------------------------------------------------------------------------------
def test_resume_refuses_other_settings_given_with_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"env": "Pendulum-v1", "algo": {"agent": "direct"}}))
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--total-steps", "5", "--iterations", "3"], capsys)
    assert code == 2 and "drop --total-steps, --iterations" in err and err.count("\n") == 1, err
    # a flag at its default value is a setting given all the same (the run may have been made with another)
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--action-repeat", "1", "--no-progress",
                            "--random-steps=5000"], capsys)
    assert code == 2 and "drop --action-repeat, --random-steps (other" in err and err.count("\n") == 1, err


def test_warnings_are_one_plain_line_and_a_run_without_updates_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "iapo.cli", "train", "--env", "Pendulum-v1", "--total-steps", "50",
                          "--random-steps", "100", "--eval-every", "50", "--eval-episodes", "1", "--hidden-sizes", "8",
                          "--critic-hidden-sizes", "8", "--run-dir", str(tmp_path / "run"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "iapo: warning: --total-steps 50 is not above --random-steps 100" in out.stderr
    assert "UserWarning" not in out.stderr


def test_a_sweep_trial_whose_final_checkpoint_is_empty_is_not_finished(tmp_path):
    from iapo import checkpoint
    from iapo.config import TrainConfig
    from iapo.trial import is_done

    config = TrainConfig(env="Pendulum-v1", seeds=(0, 1), total_steps=100, run_dir=str(tmp_path))
    for seed in (0, 1):
        path = checkpoint.checkpoint_path(tmp_path / f"seed_{seed}", 100)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" if seed == 0 else b"")
    assert not is_done(config)


def test_a_kill_before_the_first_checkpoint_points_to_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"env": "Pendulum-v1", "algo": {"agent": "direct"}}))
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 2 and "before its first one" in err and "--overwrite" in err, err


def test_a_full_disk_at_the_first_checkpoint_does_not_promise_an_earlier_one(tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):  # the disk is full when the first checkpoint is written
        if "ckpt_" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, os.strerror(28))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--total-steps", "100", "--random-steps", "50",
                            "--eval-every", "100", "--eval-episodes", "1", "--hidden-sizes", "8", "--critic-hidden-sizes",
                            "8", "--checkpoint-every", "100", "--run-dir", str(tmp_path / "run"), "--no-progress"],
                           capsys)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2 and "no earlier checkpoint" in err and "intact" not in err, err


def test_a_full_disk_at_start_up_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):  # the disk fills up as config.json is written
        if str(dst).endswith("config.json"):
            raise OSError(28, os.strerror(28))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--run-dir", str(tmp_path / "run"), "--no-progress"],
                           capsys)
    assert code == 2 and "cannot write" in err and "No space left on device" in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("after", [1.0, 2.5, 4.0])
def test_ctrl_c_during_start_up_ends_the_run(after, tmp_path):
    """A SIGINT while JAX is imported and the update compiled is never swallowed: the process
    ends with 130 (128 + SIGINT), at once or, if training had begun, at a checkpoint, and every
    file it wrote is whole."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "iapo.cli", *LONG, "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the interrupt was swallowed: training went on")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not list(tmp_path.rglob("*.tmp"))
    if (run_dir / "config.json").exists():
        json.loads((run_dir / "config.json").read_text())


# -- an environment whose state cannot be captured ---------------------------------------------------
class _Opaque:
    """Environment state that cannot be pickled (as Box2D's bodies)."""

    def __init__(self):
        self.position = 0.0

    def __reduce__(self):
        raise TypeError("cannot pickle a physics body")


def _register_opaque():
    import gymnasium as gym

    class OpaqueEnv(gym.Env):
        observation_space = gym.spaces.Box(-10, 10, (2,))
        action_space = gym.spaces.Box(-1, 1, (1,))

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.body = _Opaque()
            self.body.position = float(self.np_random.uniform(-1, 1))
            return np.array([self.body.position, 0.0], np.float32), {}

        def step(self, action):
            self.body.position = float(np.clip(self.body.position + 0.1 * float(action[0]), -10, 10))
            obs = np.array([self.body.position, float(action[0])], np.float32)
            return obs, -abs(self.body.position), False, False, {}

    if "IapoOpaque-v0" not in gym.registry:
        gym.register("IapoOpaque-v0", entry_point=OpaqueEnv, max_episode_steps=70)


def test_an_environment_that_cannot_be_captured_is_said_and_resumed_deterministically(tmp_path, capsys):
    import warnings

    from iapo.config import AgentConfig, TrainConfig
    from iapo.logger import read_metrics
    from iapo.trainer import Trainer

    _register_opaque()
    algo = AgentConfig(agent="direct", hidden_sizes=(8,), critic_hidden_sizes=(8,), batch_size=8, action_samples=1)

    def config(name):
        return TrainConfig(env="IapoOpaque-v0", total_steps=300, random_steps=50, eval_every=100, eval_episodes=1,
                           checkpoint_every=100, snapshot_every=0, run_dir=str(tmp_path / name), progress=False,
                           algo=algo)

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        Trainer(config("a")).run()
    assert any("cannot be captured" in str(w.message) for w in said)
    # Resumed twice from step 200 (mid-episode: episodes last 70 steps): both go on the same way.
    results = []
    for name in ("b", "c"):
        Trainer(config(name)).run()
        for step, path in __import__("iapo.checkpoint", fromlist=["list_checkpoints"]).list_checkpoints(tmp_path / name):
            if step > 200:
                path.unlink()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            Trainer(config(name), resume=True).run()
        assert any("episode in progress at step 200" in str(w.message) for w in said)
        results.append(read_metrics(tmp_path / name / "metrics.csv")["eval_return_mean"].tolist())
    assert results[0] == results[1]
    # A later resume reads the ended episode back from the checkpoints: transition 199 (step 200)
    # is an episode end, saved again in the part after it, which overrides the earlier one.
    from iapo.replay import EPISODE_END

    later = Trainer(config("c"), resume=True)
    buffer = later.runs[0].buffer
    assert buffer.flags[buffer._slot(199)] & EPISODE_END
    assert 199 in buffer.final_t[: buffer.finals_live].tolist()
    later.close()


def test_a_sweep_worker_waits_for_a_live_worker_of_the_same_trial(tmp_path):
    """run_trial takes the trial's lock with wait=True: it goes on only once the other process,
    here one holding the lock for 2 s, has ended."""
    from iapo.rundir import lock as lock_run_dir
    from iapo.rundir import unlock as unlock_run_dir

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from iapo.rundir import lock
        lock({str(tmp_path)!r})
        print("locked", flush=True)
        time.sleep(2)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    start = time.time()
    lock_run_dir(tmp_path, wait=True, label="trial")
    waited = time.time() - start
    unlock_run_dir(tmp_path)
    holder.wait()
    assert waited > 1.0, waited


def test_counts_as_users_write_them_and_a_version(tmp_path, capsys):
    """`--total-steps 1e6` (as SB3 and RL Zoo scripts write budgets) is a count, in flags, --set
    and config files; 1.5 is not; `iapo --version` prints the version."""
    from iapo import __version__
    from iapo.configfile import read_config_file
    from iapo.grid import parse_settings

    from test_cli import smoke_args

    code, _, err = run_cli([*smoke_args(tmp_path / "run", "direct", ["--no-progress"], steps=150),
                            "--random-steps", "1e2", "--eval-every", "1.5e2"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["random_steps"] == 100
    assert parse_settings(("random-steps=1e3,2e3",)) == {"random_steps": [1_000, 2_000]}
    (tmp_path / "c.yaml").write_text("total_steps: 1e6\nrandom_steps: 5.0e+3\n")
    assert (read_config_file(tmp_path / "c.yaml").total_steps, read_config_file(tmp_path / "c.yaml").random_steps) \
        == (1_000_000, 5_000)
    (tmp_path / "bad.yaml").write_text("total_steps: 1.5\n")
    code, _, err = run_cli(["train", "--config", str(tmp_path / "bad.yaml"), "--run-dir", str(tmp_path / "x")], capsys)
    assert code == 2 and "total_steps = 1.5 is not of type int" in err
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"iapo {__version__}"


@pytest.mark.parametrize("run_dir", ["", "   "])
def test_an_empty_run_dir_is_refused(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--run-dir", run_dir], capsys)
    assert code == 2 and "--run-dir must name a folder" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_sweep_value_or_environment_given_twice_is_one_trial(tmp_path):
    from iapo.grid import SweepConfig, build_trials

    trials = build_trials(SweepConfig(envs=("Pendulum-v1", "Pendulum-v1"), agents=("direct", "direct"), seeds=("0",),
                                      total_steps=200, set=("iterations=1,1,2",), out=str(tmp_path / "sweep")))
    assert [t.name for t in trials] == ["Pendulum-v1_direct_iterations=1", "Pendulum-v1_direct_iterations=2"]


def test_config_given_empty_or_twice_is_one_line(tmp_path, capsys):
    """`--config=` (empty) would have started a default 1M-step run; `--config A --config B` read A
    and recorded B."""
    path = tmp_path / "a.yaml"
    path.write_text("env: Pendulum-v1\n")
    for argv, says in [(["train", "--config="], "--config needs a file name, got an empty one"),
                       (["sweep", "--config=", "--out", str(tmp_path / "s")], "--config needs a file name"),
                       (["train", "--config", str(path), f"--config={path}"], "--config is given 2 times")]:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name, raw, says", [
    ("twice.yaml", b"lr: 1\nlr: 2\n", 'gives the key "lr" twice (line 2)'),
    ("twice.json", b'{"algo": {"iterations": 2, "iterations": 3}}', 'gives the key "iterations" twice'),
    ("date.yaml", b"total_steps: 2024-01-01\n", "total_steps = datetime.date(2024, 1, 1) is not of type int"),
    ("binary.yaml", b"policy_lr: !!binary aGVsbG8=\n", "policy_lr = b'hello' is not of type float"),
    ("list.yaml", b"algo: [1, 2]\n", "algo must be a mapping of the algorithm's fields, not list [1, 2]"),
    ("string.yaml", b"algo: direct\n", 'algo must be a mapping of the algorithm\'s fields, not str "direct"'),
    ("keys.yaml", b"1: 2\nenv: Hopper-v5\n", "the key 1 is not a field name"),
    ("latin1.yaml", b"env: Hopper\xff\n", "is not UTF-8 text (byte 0xff at position 11)"),
    ("options.yaml", b"env_kwargs: {a: 2024-01-01}\n", "holds a value that is not JSON"),
    ("long.yaml", b"env: " + b"x" * 5000 + b"\nseed: [" + b"1, " * 2000 + b"1]\n", "is not of type int"),
    ("both.yaml", b"agent: iterative\nalgo: {agent: direct}\n", "agent is given both under algo and beside it"),
    ("nested.yaml", b"env: Pendulum-v1\nconfig: other.yaml\n", 'a config file cannot name another (config: "other'),
])
def test_a_malformed_config_file_is_one_short_line(name, raw, says, tmp_path, capsys):
    """Whatever a config file holds, a one-line error naming the key and what was wrong, at most a
    few hundred characters long, with exit 2 (dates, binary values, mappings of the wrong kind,
    keys given twice, bytes that are not UTF-8), for `iapo train` and `iapo sweep` alike."""
    path = tmp_path / name
    path.write_bytes(raw)
    for argv in (["train", "--config", str(path), "--run-dir", str(tmp_path / "run")],
                 ["sweep", "--config", str(path), "--out", str(tmp_path / "sweep"), "--no-progress"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and says in err and err.count("\n") == 1 and len(err) < 400, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("name", [LOCK_NAME, "metrics.csv", "config.json"])
def test_iapo_never_writes_through_a_symlink_of_its_own_files(name, tmp_path, capsys, tiny_args):
    """A symbolic link where iapo keeps one of its own files (the lock, the metrics, config.json)
    is never followed: the file it points to is left as it was, whether the run refuses it (the
    lock, the metrics: one line) or replaces the link itself (config.json, written by a rename)."""
    from test_cli import smoke_args

    run_dir = tmp_path / "run"
    args = smoke_args(run_dir, "direct", tiny_args, steps=150)
    assert run_cli(args, capsys)[0] == 0
    foreign = tmp_path / "someone-elses.txt"
    foreign.write_text("precious")
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(foreign)
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert foreign.read_text() == "precious"
    if name == "config.json":  # (read through the link: not a run configuration)
        assert code == 2 and "config.json is not a valid run configuration" in err, err
    else:
        assert code == 2 and f"{name} is a symbolic link; iapo does not follow links" in err, err
    assert err.count("\n") == 1


def test_an_environment_without_a_time_limit_gets_one(tmp_path, capsys):
    """An environment that never ends its episodes: iapo cuts them off at its default, said at
    start-up, or at --max-episode-steps (recorded, so `iapo evaluate` cuts them off the same)."""
    import gymnasium as gym

    class Endless(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 1.0, False, False, {}

    gym.register("IapoEndless-v0", entry_point=Endless)  # (no max_episode_steps)
    try:
        common = ["train", "--env", "IapoEndless-v0", "--agent", "direct", "--total-steps", "150", "--random-steps",
                  "100", "--eval-every", "150", "--eval-episodes", "1", "--hidden-sizes", "8", "--critic-hidden-sizes",
                  "8", "--batch-size", "8", "--no-progress"]
        with pytest.warns(UserWarning, match="registers no time limit: iapo ends its episodes after 1000 steps"):
            code, out, err = run_cli([*common, "--run-dir", str(tmp_path / "default")], capsys)
        assert code == 0, err
        assert json.loads((tmp_path / "default" / "config.json").read_text())["max_episode_steps"] is None
        with open(tmp_path / "default" / "metrics.csv") as f:
            assert f.read().splitlines()[-1].split(",")[2:5] == ["1000", "0", "1000"]  # return, std, length
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no warning with a limit given)
            code, out, err = run_cli([*common, "--max-episode-steps", "20", "--run-dir", str(tmp_path / "short")],
                                     capsys)
        assert code == 0, err
        code, out, _ = run_cli(["evaluate", str(tmp_path / "short"), "--episodes", "2"], capsys)
        assert code == 0 and "return 20.00 ± 0.00" in out
    finally:
        gym.registry.pop("IapoEndless-v0")
