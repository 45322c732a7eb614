"""Exact resume: a run killed at any moment and resumed equals a run never interrupted."""

import csv
import errno
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from iapo import checkpoint
from iapo.cli import main
from iapo.trainer import TIMING_COLUMNS

from test_cli import run_cli

ARGS = ["--env", "InvertedPendulum-v5", "--agent", "iterative", "--iterations", "2", "--action-samples", "3",
        "--hidden-sizes", "16", "16", "--critic-hidden-sizes", "16", "16", "--batch-size", "16",
        "--total-steps", "2000", "--random-steps", "300", "--eval-every", "250", "--eval-episodes", "2",
        "--checkpoint-every", "500", "--buffer-capacity", "700", "--no-progress"]


def _cli(*argv):
    return [sys.executable, "-m", "iapo.cli", *argv]


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def _final_params(run_dir):
    (_, path), = [c for c in checkpoint.list_checkpoints(run_dir) if c[0] == 2000]
    return checkpoint.read(path)["state"]


def _assert_same_tree(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same_tree(a[k], b[k])
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _start_and_signal(run_dir, sig, argv=None):
    """Start a training subprocess, send `sig` once `run_dir` has a checkpoint."""
    argv = argv or ["train", *ARGS, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(_cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not checkpoint.list_checkpoints(run_dir):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_cli("train", *ARGS, "--run-dir", str(run_dir)), check=True, capture_output=True, timeout=600)
    return run_dir


def test_sigkill_then_resume_equals_an_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "run"
    code, _, _ = _start_and_signal(run_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    killed_at = checkpoint.list_checkpoints(run_dir)[-1][0]
    assert killed_at < 2000
    subprocess.run(_cli("train", "--resume", str(run_dir), "--no-progress"), check=True, capture_output=True, timeout=600)
    assert _rows(run_dir) == _rows(reference)
    _assert_same_tree(_final_params(run_dir), _final_params(reference))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_checkpoint_exit_128_plus_the_signal_and_the_run_resumes(sig, reference, tmp_path):
    """SIGTERM and SIGHUP (a closed terminal) stop a run like Ctrl-C: a checkpoint, the resume
    hint, and exit status 128 + the signal's number, as a shell expects."""
    run_dir = tmp_path / "run"
    code, out, _ = _start_and_signal(run_dir, sig)
    assert code == 128 + sig
    assert f"resume with: iapo train --resume {run_dir}" in out
    step = checkpoint.list_checkpoints(run_dir)[-1][0]
    assert 250 <= step < 2000  # (the first checkpoint is written before the first evaluation, at 250)
    subprocess.run(_cli("train", "--resume", str(run_dir), "--no-progress"), check=True, capture_output=True, timeout=600)
    assert _rows(run_dir) == _rows(reference)
    _assert_same_tree(_final_params(run_dir), _final_params(reference))


def test_same_seed_same_metrics_other_seed_differs(reference, tmp_path, capsys):
    main(["train", *ARGS, "--run-dir", str(tmp_path / "again")])
    assert _rows(tmp_path / "again") == _rows(reference)
    main(["train", *ARGS, "--seed", "1", "--run-dir", str(tmp_path / "other")])
    assert _rows(tmp_path / "other") != _rows(reference)


def _resume_in_process(run_dir, capsys):
    return run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)


@pytest.mark.parametrize("damaged", ["checkpoint", "replay part"])
def test_corrupt_newest_checkpoint_falls_back_to_the_one_before(damaged, reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    main(["train", *ARGS, "--run-dir", str(run_dir)])
    capsys.readouterr()
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [1500, 2000]  # the newest two
    # The buffer (capacity 700) is in parts of 500 transitions; those the two checkpoints need stay.
    assert sorted(p.name for p in (run_dir / "checkpoints" / "parts").iterdir()) == [
        f"replay_{a:012d}_{a + 500:012d}.part" for a in (500, 1000, 1500)]
    if damaged == "checkpoint":
        newest = checkpoint.list_checkpoints(run_dir)[-1][1]
    else:  # the part only the newest checkpoint needs
        newest = run_dir / "checkpoints" / "parts" / "replay_000000001500_000000002000.part"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=newest.name):
        code, out, err = _resume_in_process(run_dir, capsys)
    assert code == 0, err
    # resumed from step 1500 and trained again to 2000: the same rows, the same parameters
    assert _rows(run_dir) == _rows(reference)
    _assert_same_tree(_final_params(run_dir), _final_params(reference))


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up once the first checkpoint is written
        if checkpoint.list_checkpoints(run_dir):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    argv = ["train", *ARGS[:-1], "--total-steps", "400", "--checkpoint-every", "200", "--run-dir", str(run_dir),
            "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert "the previous one is intact" in err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [200]
    assert not list(run_dir.rglob("*.tmp"))
    code, _, err = _resume_in_process(run_dir, capsys)  # the disk has room again
    assert code == 0, err
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [200, 400]


def test_no_usable_checkpoint_is_a_one_line_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    main(["train", *ARGS[:-1], "--total-steps", "400", "--checkpoint-every", "200", "--run-dir", str(run_dir), "--no-progress"])
    capsys.readouterr()
    for _, path in checkpoint.list_checkpoints(run_dir):
        path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning):
        code, _, err = _resume_in_process(run_dir, capsys)
    assert code == 2 and err.count("\n") == 1 and "no usable checkpoint" in err


def test_newer_format_and_other_configuration_are_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    main(["train", *ARGS[:-1], "--total-steps", "400", "--checkpoint-every", "200", "--run-dir", str(run_dir), "--no-progress"])
    capsys.readouterr()
    config = (run_dir / "config.json").read_text()
    (run_dir / "config.json").write_text(config.replace('"pessimism": null', '"pessimism": 1.0'))
    code, _, err = _resume_in_process(run_dir, capsys)
    assert code == 2 and "another configuration" in err and "Traceback" not in err
    (run_dir / "config.json").write_text(config)

    _, newest = checkpoint.list_checkpoints(run_dir)[-1]
    header, _, payload = newest.read_bytes().partition(b"\n")
    newest.write_bytes(header.replace(b" %d " % checkpoint.FORMAT_VERSION, b" 99 ", 1) + b"\n" + payload)
    code, _, err = _resume_in_process(run_dir, capsys)
    assert code == 2 and "newer than this iapo" in err


class NanObservationEnv(gym.Env):
    """An env whose 50th observation is NaN in training (evaluation episodes, which iapo seeds from
    10 000 on, stay finite: tests/test_reliability.py has a NaN in evaluation)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        if seed is not None:
            self.evaluating = seed >= 10_000
        return np.zeros(3), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, np.nan) if self.t == 50 and not getattr(self, "evaluating", False) else np.ones(3)
        return obs, 0.0, False, self.t >= 100, {}


def test_nan_observation_stops_the_run_naming_it_and_keeps_the_checkpoint(tmp_path, capsys):
    gym.register("IapoTestNanObs-v0", entry_point=NanObservationEnv)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", "IapoTestNanObs-v0", "--total-steps", "100", "--random-steps", "20",
        "--checkpoint-every", "30", "--eval-every", "30", "--eval-episodes", "1", "--hidden-sizes", "8",
        "--critic-hidden-sizes", "8", "--batch-size", "8", "--agent", "direct", "--run-dir", str(run_dir),
        "--no-progress"], capsys)
    assert code == 2 and "non-finite observation in float32" in err and "at training step 50" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [30]


class HugeRewardEnv(NanObservationEnv):
    """From its 60th step on, rewards so large that the critic's loss overflows."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return np.ones(3), (3e38 if self.t >= 60 else 0.0), terminated, truncated, info


def test_non_finite_update_stops_the_run_naming_it_and_keeps_finite_checkpoints(tmp_path, capsys):
    gym.register("IapoTestHugeReward-v0", entry_point=HugeRewardEnv)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", "IapoTestHugeReward-v0", "--total-steps", "400", "--random-steps", "20",
        "--checkpoint-every", "30", "--eval-every", "30", "--eval-episodes", "1", "--hidden-sizes", "8",
        "--critic-hidden-sizes", "8", "--batch-size", "64", "--agent", "direct", "--run-dir", str(run_dir),
        "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "iapo: error: non-finite critic loss at step" in err
    failed_at = int(err.split("at step ")[1].split()[0])
    assert failed_at >= 60
    steps = [s for s, _ in checkpoint.list_checkpoints(run_dir)]
    assert steps and steps[-1] < failed_at
    newest = checkpoint.read(checkpoint.list_checkpoints(run_dir)[-1][1])["state"]
    import jax
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(newest))


def test_a_config_of_an_older_version_compares_at_todays_defaults():
    """A run written before a config field existed resumes: the field counts at its default."""
    import dataclasses
    import json

    from iapo.config import TrainConfig
    from iapo.configfile import run_identity

    today = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
    older = {k: v for k, v in today.items() if k != "replay_sampling"}
    older["algo"] = {k: v for k, v in today["algo"].items() if k != "horizon"}
    assert run_identity(older) == run_identity(today)
    assert run_identity({**today, "replay_sampling": "device"}) != run_identity(today)
    assert run_identity({**today, "no_such_field": 1}) != run_identity(today)
    assert run_identity({}) != run_identity(today)  # no configuration is not the default one


def test_wall_time_goes_on_across_a_resume(tmp_path):
    """metrics.csv's wall_time_s counts the training time of every process that ran the run: the
    checkpoint holds the time so far, and a resumed run's rows continue from it."""
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="direct", hidden_sizes=(16,), critic_hidden_sizes=(16,), action_samples=1, batch_size=8)
    config = TrainConfig(env="Pendulum-v1", total_steps=90, random_steps=20, eval_every=30, eval_episodes=1,
                         checkpoint_every=30, run_dir=str(tmp_path / "run"), progress=False, quiet=True, algo=algo)
    Trainer(config).run()
    (_, path), = [c for c in checkpoint.list_checkpoints(tmp_path / "run") if c[0] == 60]
    before = checkpoint.read(path)["extra"]["loop"]["wall_seconds"]
    with open(tmp_path / "run" / "metrics.csv") as f:
        first = {int(r["step"]): float(r["wall_time_s"]) for r in csv.DictReader(f)}
    assert 0 < first[30] <= first[60] <= before <= first[90]  # (the checkpoint at 60 follows its evaluation)
    checkpoint.checkpoint_path(tmp_path / "run", 90).unlink()  # as if killed between steps 60 and 90
    resumed = Trainer(config, resume=True)
    started = time.perf_counter()
    resumed.run()
    took = time.perf_counter() - started
    with open(tmp_path / "run" / "metrics.csv") as f:
        again = {int(r["step"]): float(r["wall_time_s"]) for r in csv.DictReader(f)}
    assert again[30] == first[30] and again[60] == first[60]  # the rows before the checkpoint are kept
    assert before < again[90] <= before + took
    assert resumed.wall_seconds >= again[90]


class _SlowSteps(gym.Env):
    """Each step sleeps 20 ms: no process can step it faster than 50 steps per second."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        time.sleep(0.02)
        return np.zeros(2, np.float32), 0.0, False, False, {}


gym.register("IapoSlowSteps-v0", entry_point=_SlowSteps, max_episode_steps=50)


def test_a_resume_within_a_window_rates_only_the_steps_it_took(tmp_path):
    """env_steps_per_s after a resume between two evaluations counts the resumed process's steps
    over its own training time: the steps before the checkpoint took another process's time."""
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="direct", hidden_sizes=(8,), critic_hidden_sizes=(8,), action_samples=1, batch_size=8)
    config = TrainConfig(env="IapoSlowSteps-v0", total_steps=120, random_steps=20, updates_per_step=0, eval_every=60,
                         eval_episodes=1, checkpoint_every=40, run_dir=str(tmp_path / "run"), progress=False,
                         quiet=True, algo=algo)
    Trainer(config).run()
    # as if killed after the checkpoint at 80 (the newest but one): 40 of the window's 60 steps are left
    checkpoint.checkpoint_path(tmp_path / "run", 120).unlink()
    Trainer(config, resume=True).run()
    with open(tmp_path / "run" / "metrics.csv") as f:
        rates = {int(r["step"]): float(r["env_steps_per_s"]) for r in csv.DictReader(f)}
    assert sorted(rates) == [60, 120]
    assert 0 < rates[60] <= 50 and 0 < rates[120] <= 50  # (counting the window's 60 steps would give about 75)


def test_machine_json_records_each_start_and_resume_and_a_damaged_one_is_kept(tmp_path):
    """Each start and resume appends where it trained, from which step; a machine.json that is not
    iapo's is a warning, left untouched, and the run trains."""
    import iapo
    from iapo import machine
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="direct", hidden_sizes=(16,), critic_hidden_sizes=(16,), action_samples=1, batch_size=8)
    config = TrainConfig(env="Pendulum-v1", total_steps=60, random_steps=20, eval_every=30, eval_episodes=1,
                         checkpoint_every=30, seeds=(0, 1), run_dir=str(tmp_path / "run"), progress=False, quiet=True,
                         algo=algo)
    Trainer(config).run()
    seed_dirs = [tmp_path / "run" / "seed_0", tmp_path / "run" / "seed_1"]
    for seed_dir in seed_dirs:
        first, = machine.read(seed_dir)
        assert first["from_step"] == 0 and first["cores"] >= 1 and first["cpu"]
        assert first["versions"]["iapo"] == iapo.__version__ and first["backend"] == "cpu"
    for seed_dir in seed_dirs:
        checkpoint.checkpoint_path(seed_dir, 60).unlink()  # as if killed between steps 30 and 60
    Trainer(config, resume=True).run()
    for seed_dir in seed_dirs:
        assert [s["from_step"] for s in machine.read(seed_dir)] == [0, 30]
        checkpoint.checkpoint_path(seed_dir, 60).unlink()
    (seed_dirs[0] / "machine.json").write_text("not json")
    with pytest.warns(UserWarning, match="seed_0.machine.json is not valid JSON; machine.json was left as it is"):
        Trainer(config, resume=True).run()
    assert (seed_dirs[0] / "machine.json").read_text() == "not json"
    assert [s["from_step"] for s in machine.read(seed_dirs[1])] == [0, 30, 30]
    assert checkpoint.list_checkpoints(seed_dirs[0])[-1][0] == 60


SLOW_EVAL_ENV = '''
import time

import gymnasium as gym
import numpy as np


class SlowEvaluation(gym.Env):
    """Quick in training; its evaluation episodes (iapo seeds them from 10 000 on) take 20 ms a step."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.slow = seed >= 10_000
        self.x = float(self.np_random.uniform(-1, 1))
        return np.array([self.x, 0.0], np.float32), {}

    def step(self, action):
        if getattr(self, "slow", False):
            time.sleep(0.02)
        self.x = float(np.clip(self.x + 0.1 * action[0] + 0.01 * self.np_random.standard_normal(), -5, 5))
        return np.array([self.x, 1.0], np.float32), -abs(self.x), False, False, {}


gym.register("IapoSlowEvaluation-v0", entry_point=SlowEvaluation, max_episode_steps=100)
'''


def test_a_signal_during_an_evaluation_checkpoints_before_it_and_the_resumed_run_does_it(tmp_path):
    """A run writes a checkpoint before its first evaluation, and a signal that arrives during an
    evaluation stops it (exit 143) at a checkpoint taken before that evaluation; the resumed run
    evaluates first and ends as a run never interrupted."""
    (tmp_path / "iapo_slow_env.py").write_text(SLOW_EVAL_ENV)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = ["train", "--env", "iapo_slow_env:IapoSlowEvaluation-v0", "--agent", "direct", "--hidden-sizes", "16",
            "--critic-hidden-sizes", "16", "--batch-size", "16", "--total-steps", "300", "--random-steps", "100",
            "--eval-every", "150", "--eval-episodes", "2", "--checkpoint-every", "300", "--no-progress"]
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    subprocess.run(_cli(*args, "--run-dir", str(reference)), check=True, capture_output=True, timeout=600, env=env)
    proc = subprocess.Popen(_cli(*args, "--run-dir", str(run_dir)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 300
    while not checkpoint.list_checkpoints(run_dir):  # the one before the first evaluation (step 150)
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "SIGTERM during the evaluation at step 150: checkpoint written" in out, out
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [150]
    assert not (run_dir / "metrics.csv").exists() or len(_rows(run_dir)) == 0
    subprocess.run(_cli("train", "--resume", str(run_dir), "--no-progress"), check=True, capture_output=True,
                   timeout=600, env=env)
    assert _rows(run_dir) == _rows(reference) and len(_rows(run_dir)) == 2
    with open(run_dir / "metrics.csv") as f:  # (the training time before it was another process's: unknown)
        assert next(csv.DictReader(f))["env_steps_per_s"] == ""


def test_a_kill_after_the_first_evaluation_and_before_the_next_checkpoint_writes_each_row_once(tmp_path):
    """The checkpoint taken before the first evaluation is written again once that evaluation is
    logged, so a run killed later, before its next checkpoint, resumes after that evaluation: it
    does not evaluate again and every row is written once, as in a run never interrupted."""
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="direct", hidden_sizes=(8,), critic_hidden_sizes=(8,), action_samples=1, batch_size=8)
    config = TrainConfig(env="Pendulum-v1", total_steps=120, random_steps=20, eval_every=40, eval_episodes=1,
                         checkpoint_every=120, run_dir=str(tmp_path / "run"), progress=False, quiet=True, algo=algo)
    Trainer(config).run()
    reference = _rows(tmp_path / "run")
    assert [int(r["step"]) for r in reference] == [40, 80, 120]
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run")] == [40, 120]
    checkpoint.checkpoint_path(tmp_path / "run", 120).unlink()  # as if killed between steps 40 and 120
    Trainer(config, resume=True).run()
    assert _rows(tmp_path / "run") == reference


def test_tensorboard_update_means_after_a_resume_are_those_of_a_run_never_interrupted(tmp_path, monkeypatch):
    """The first `updates/` means that a resumed run writes average the updates since the last
    time they were written, as in a run never interrupted, not those since the last evaluation."""
    from iapo.config import AgentConfig, TrainConfig
    from iapo.logger import RunLogger
    from iapo.trainer import Trainer

    written = {}  # (run, step) -> the updates' mean critic loss
    monkeypatch.setattr(RunLogger, "scalars", lambda self, step, values, prefix="updates": written.__setitem__(
        (self.run_dir.parent.name, step), float(values["critic_loss"])))
    algo = AgentConfig(agent="direct", hidden_sizes=(8,), critic_hidden_sizes=(8,), action_samples=1, batch_size=8)
    for name in ("reference", "resumed"):
        config = TrainConfig(env="Pendulum-v1", total_steps=60, random_steps=20, log_every=10, eval_every=60,
                             eval_episodes=1, checkpoint_every=15, run_dir=str(tmp_path / name / "run"),
                             progress=False, quiet=True, algo=algo)
        Trainer(config).run()
    checkpoint.checkpoint_path(tmp_path / "resumed" / "run", 60).unlink()  # as if killed after step 45
    written = {k: v for k, v in written.items() if k[0] == "reference"}
    Trainer(config, resume=True).run()
    assert sorted(s for run, s in written if run == "resumed") == [50, 60]
    for step in (50, 60):  # (the checkpoint at 45 holds the updates since step 20; 41-45 were not written yet)
        assert written["resumed", step] == pytest.approx(written["reference", step], rel=1e-5)


def test_a_trial_stopped_during_its_final_evaluation_is_not_done_until_resumed(tmp_path):
    """A signal during the final step's evaluation leaves a checkpoint of the final step taken
    before it: the trial is not done (a sweep resumes it rather than skip it), and the resumed run
    writes the final row."""
    from iapo import trial
    from iapo.rundir import read_config

    (tmp_path / "iapo_slow_env.py").write_text(SLOW_EVAL_ENV)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", "--env", "iapo_slow_env:IapoSlowEvaluation-v0", "--agent", "direct",
                                 "--hidden-sizes", "16", "--critic-hidden-sizes", "16", "--batch-size", "16",
                                 "--total-steps", "150", "--random-steps", "100", "--eval-every", "150",
                                 "--eval-episodes", "2", "--no-progress", "--run-dir", str(run_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not checkpoint.list_checkpoints(run_dir):  # the one before the evaluation of the final step
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143 and "during the evaluation at step 150" in out, (out, err)
    config = read_config(run_dir)[0]
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [150]
    assert not trial.is_done(config)
    subprocess.run(_cli("train", "--resume", str(run_dir), "--no-progress"), check=True, capture_output=True,
                   timeout=600, env=env)
    assert trial.is_done(config)
    assert [int(r["step"]) for r in _rows(run_dir)] == [150]


def test_machine_json_names_iapos_commit_only_where_its_source_is_tracked(tmp_path):
    """iapo's git commit is recorded where machine.py is tracked by the repository around it (a
    checkout of iapo), with whether it was modified; a copy inside another repository (a venv in a
    project folder) records none."""
    import importlib.util
    import shutil

    from iapo import machine

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def load(path):
        spec = importlib.util.spec_from_file_location("machine_copy", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "README").write_text("a project\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    copy = tmp_path / "lib" / "machine.py"
    copy.parent.mkdir()
    shutil.copy(machine.__file__, copy)
    assert load(copy)._source() is None  # untracked there: not the project's commit
    subprocess.run([*git, "add", "lib/machine.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "second"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert load(copy)._source() == {"commit": head, "modified": False}
    copy.write_text(copy.read_text() + "\n# changed\n")
    assert load(copy)._source() == {"commit": head, "modified": True}
