"""Sweeps: the grid, the local backend (finish, skip, Ctrl-C and resume), Ray with a killed worker."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import ray

from iapo.checkpoint import list_checkpoints
from iapo.errors import ConfigError
from iapo.logger import read_metrics
from iapo.config import parse_seeds
from iapo.grid import SweepConfig, build_trials, parse_settings
from iapo.sweep import Sweep
from iapo.trial import common_checkpoint
from test_cli import run_cli

TINY_SET = ("random-steps=100", "eval-every=100", "eval-episodes=1", "hidden-sizes=16x16",
            "critic-hidden-sizes=16x16", "batch-size=16", "action-samples=2", "snapshot-every=0")


def sweep_args(out, steps=300, extra=()):
    return ["sweep", "--envs", "Pendulum-v1", "--agents", "direct", "--seeds", "0-1", "--total-steps", str(steps),
            "--out", str(out), "--set", *TINY_SET, "checkpoint-every=100", "iterations=1,2", *extra, "--no-progress"]


def eval_steps(run_dir):
    """The evaluation steps in a run's metrics.csv; none while the file is missing or has no row
    (a run checkpoints before its first evaluation, so a checkpoint alone does not mean a row)."""
    path = run_dir / "metrics.csv"
    metrics = read_metrics(path) if path.exists() else {}
    return metrics["step"].astype(int).tolist() if metrics else []


def test_grid_parsing():
    assert parse_seeds(("0-2", "7")) == (0, 1, 2, 7)
    assert parse_settings(("iterations=1,2,5", "hidden-sizes=64x64,256x256", "pessimism=none,2.5")) == {
        "iterations": [1, 2, 5], "hidden_sizes": [(64, 64), (256, 256)], "pessimism": [None, 2.5]}
    cfg = SweepConfig(envs=("Hopper-v5", "Ant-v5"), agents=("direct", "iterative"), seeds=("0-4",),
                      set=("iterations=1,2", "batch-size=128"), out="sweeps/x")
    trials = build_trials(cfg)
    assert len(trials) == 2 * 2 * 2
    assert trials[0].name == "Hopper-v5_direct_iterations=1"
    assert all(t.config.algo.batch_size == 128 and t.config.seeds == (0, 1, 2, 3, 4) for t in trials)
    assert {t.config.algo.iterations for t in trials} == {1, 2}
    for bad in (("seed=3",), ("iterations=0",), ("nonsense=1",), ("gamma",)):
        with pytest.raises(ConfigError):
            build_trials(SweepConfig(set=bad))
    with pytest.raises(ConfigError, match="would share the folder Pendulum-v1_direct_name=a-b"):
        build_trials(SweepConfig(envs=("Pendulum-v1",), agents=("direct",), set=("env-kwargs.name=a/b,a-b",)))


def test_a_config_file_is_every_trials_base_and_the_flags_override_it(tmp_path, capsys):
    path = tmp_path / "base.yaml"
    path.write_text("env: Pendulum-v1\nseeds: [1, 2]\ntotal_steps: 500\nagent: iterative\niterations: 2\n"
                    "batch_size: 64\neval_every: 250\nrun_dir: elsewhere\n")
    trials = build_trials(SweepConfig(config=str(path), set=("action-samples=2,4",), out=str(tmp_path / "s")))
    assert [t.name for t in trials] == ["Pendulum-v1_iterative_action_samples=2", "Pendulum-v1_iterative_action_samples=4"]
    for trial in trials:
        c = trial.config
        assert (c.env, c.seeds, c.total_steps, c.eval_every) == ("Pendulum-v1", (1, 2), 500, 250)
        assert (c.algo.agent, c.algo.iterations, c.algo.batch_size) == ("iterative", 2, 64)
        assert c.run_dir == str(tmp_path / "s" / trial.name)
    (trial,) = build_trials(SweepConfig(config=str(path), envs=("InvertedPendulum-v5",), agents=("direct",),
                                        seeds=("3",), total_steps=900, set=("batch-size=32",)))
    c = trial.config
    assert (c.env, c.seeds, c.total_steps, c.algo.agent, c.algo.batch_size, c.algo.iterations, c.eval_every) == \
        ("InvertedPendulum-v5", (3,), 900, "direct", 32, 2, 250)
    # Without a file, the sweep's own defaults.
    assert {(t.config.env, t.config.algo.agent, t.config.seeds, t.config.total_steps)
            for t in build_trials(SweepConfig())} == {("Hopper-v5", a, (0, 1, 2, 3, 4), 1_000_000)
                                                    for a in ("direct", "iterative")}
    # A missing file: one line, exit 2, nothing written.
    out = tmp_path / "never"
    code, stdout, err = run_cli(["sweep", "--config", str(tmp_path / "missing.yaml"), "--out", str(out)], capsys)
    assert code == 2 and "--config" in err and "missing.yaml" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_local_sweep_finishes_skips_and_plots(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(sweep_args(out), capsys)
    assert code == 0, err
    manifest = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in manifest["trials"]] == ["done", "done"]
    assert [t["settings"] for t in manifest["trials"]] == [{"iterations": "1"}, {"iterations": "2"}]
    trial = out / "Pendulum-v1_direct_iterations=1"
    for seed in (0, 1):
        assert eval_steps(trial / f"seed_{seed}") == [100, 200, 300]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}

    code, stdout, err = run_cli(sweep_args(out), capsys)  # the same command again: nothing to do
    assert code == 0, err
    assert "2 of 2 trials already finished" in stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("metrics.csv")}

    code, stdout, err = run_cli(["plot", str(out)], capsys)
    assert code == 0, err
    assert (out / "results.png").stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "direct iterations=1 | 2 |" in table and "direct iterations=2 | 2 |" in table

    code, _, err = run_cli(sweep_args(out, steps=400), capsys)  # other settings in the same --out
    assert code == 2 and "with other settings (total_steps: 300 -> 400)" in err


def test_local_sweep_ctrl_c_then_rerun_completes(tmp_path):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "iapo.cli", *sweep_args(out, steps=1000)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trial = out / "Pendulum-v1_direct_iterations=1"
    deadline = time.time() + 240
    while not all(list_checkpoints(trial / f"seed_{seed}") and eval_steps(trial / f"seed_{seed}") for seed in (0, 1)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    manifest = json.loads((out / "sweep.json").read_text())
    assert {t["status"] for t in manifest["trials"]} <= {"stopped", "pending"}
    stopped_at = eval_steps(trial / "seed_0")
    assert stopped_at and stopped_at[-1] < 1000

    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("Pendulum-v1_direct_iterations=1", "Pendulum-v1_direct_iterations=2"):
        for seed in (0, 1):
            assert eval_steps(out / name / f"seed_{seed}") == list(range(100, 1001, 100))


def test_ray_sweep_survives_a_killed_worker(tmp_path):
    """On a 2-CPU local Ray cluster, kill one trial's worker process after its first checkpoint:
    Ray retries the task, which resumes from the checkpoint; the metrics have every evaluation
    step exactly once."""
    out = tmp_path / "sweep"
    cfg = SweepConfig(envs=("Pendulum-v1",), agents=("direct",), seeds=("0-1",), total_steps=900, out=str(out),
                      set=(*TINY_SET, "checkpoint-every=300", "iterations=1,2"),
                      backend="ray", progress=False)
    victim = out / "Pendulum-v1_direct_iterations=1"
    victim_config = build_trials(cfg)[0].config
    killed = {}

    def kill_after_first_checkpoint():
        deadline = time.time() + 300
        while time.time() < deadline:
            step = common_checkpoint(victim_config)
            if step is not None and step < cfg.total_steps and (victim / "worker.json").exists():
                killed["pid"] = json.loads((victim / "worker.json").read_text())["pid"]
                killed["step"] = step
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.1)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        killer = threading.Thread(target=kill_after_first_checkpoint)
        killer.start()
        unfinished = Sweep(cfg).run()
        killer.join()
    finally:
        ray.shutdown()
    assert killed, "the worker was not killed mid-run"
    assert unfinished == 0
    assert json.loads((victim / "worker.json").read_text())["attempt"] >= 2
    manifest = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in manifest["trials"]] == ["done", "done"]
    for trial in out.glob("Pendulum-v1_*"):
        for seed in (0, 1):
            m = read_metrics(trial / f"seed_{seed}" / "metrics.csv")
            assert m["step"].astype(int).tolist() == list(range(100, 901, 100))
            assert np.all(np.isfinite(m["eval_return_mean"]))


def test_trials_sharing_a_gpu_each_take_a_share_of_its_memory(tmp_path, monkeypatch):
    """A local sweep running two trials at once gives each process XLA's client memory fraction
    0.45 (JAX would otherwise preallocate 75% of the GPU per process); a user's setting stands."""
    from iapo import sweep as sweep_mod
    from iapo.trial import trial_environment

    started = []

    class FakeProcess:
        returncode = 0

        def __init__(self, args, env=None, **kw):
            started.append(env)

        def poll(self):
            return 0

    monkeypatch.setattr(sweep_mod.subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    cfg = SweepConfig(envs=("Pendulum-v1",), agents=("direct",), seeds=("0",), set=("iterations=1,2",),
                      out=str(tmp_path / "sweep"), workers=2, progress=False)
    runner = Sweep(cfg)
    runner._run_local(runner.trials)
    assert [env["XLA_PYTHON_CLIENT_MEM_FRACTION"] for env in started] == ["0.450", "0.450"]
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in trial_environment({}, 1)  # alone: JAX's own default
    assert trial_environment({"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}, 4) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def test_a_sweep_named_by_another_spelling_of_its_folder_is_the_same_sweep(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(sweep_args("sweep", steps=100), capsys)
    assert code == 0, err
    trial = json.loads((tmp_path / "sweep" / "Pendulum-v1_direct_iterations=1" / "trial.json").read_text())
    assert trial["run_dir"] == "Pendulum-v1_direct_iterations=1"  # relative to the sweep folder
    (tmp_path / "sweep").rename(tmp_path / "moved")
    for out in (tmp_path / "moved", "./moved/"):
        code, stdout, err = run_cli(sweep_args(out, steps=100), capsys)
        assert code == 0 and "2 of 2 trials already finished" in stdout, err


def test_a_failed_trial_is_said_as_failed_with_its_cause(tmp_path, capsys):
    """A trial that fails (here: an option of the wrong type, which only the environment's step
    finds; a misspelt one is refused before any trial starts) is reported as failed, with the cause
    in the manifest, not as a trial that a plain rerun would complete."""
    out = tmp_path / "sweep"
    code, _, err = run_cli(["sweep", "--envs", "Pendulum-v1", "--agents", "direct", "--seeds", "0", "--total-steps",
                            "300", "--out", str(out), "--set", *TINY_SET, "env-kwargs.g=abc", "--no-progress"], capsys)
    assert code == 1
    assert "1 trial(s) failed" in err and "after fixing the cause" in err and "did not finish" not in err
    (trial,) = json.loads((out / "sweep.json").read_text())["trials"]
    assert trial["status"] == "failed" and "raised in step: TypeError" in trial["error"]
