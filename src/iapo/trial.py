"""One trial of a sweep: its state on disk (done, its newest common checkpoint, its last
evaluation, whether its folder is this trial's), and running it in a worker process or a Ray task
(`run_trial`), which resumes it from its checkpoints."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from iapo import checkpoint, rundir, signals
from iapo.atomic import write_json_atomic
from iapo.config import TrainConfig
from iapo.configfile import train_config_from_dict, upgrade
from iapo.errors import ConfigError, IapoError, RunDirError
from iapo.grid import Trial
from iapo.trainer import Trainer

# -- a trial's state on disk ---------------------------------------------------------------------
def common_checkpoint(config: TrainConfig) -> int | None:
    """The newest step at which every seed of the trial has a checkpoint, or None."""
    steps = [{s for s, _ in checkpoint.list_checkpoints(d)} for d in rundir.run_dirs(config)]
    common = set.intersection(*steps)  # (a trial has at least one seed)
    return max(common) if common else None


def is_done(config: TrainConfig) -> bool:
    """Every seed has a checkpoint of the final step (--total-steps, or the step at which
    --stop-return ended the run), taken after that step's evaluation, and none of them is an empty file."""
    step = common_checkpoint(config)
    if step is None:
        return False
    paths = [checkpoint.checkpoint_path(d, step) for d in rundir.run_dirs(config)]
    if not all(path.stat().st_size > 0 for path in paths):
        return False
    if step != config.total_steps and config.stop_return is None:
        return False
    try:
        loops = [checkpoint.read(path).get("extra", {}).get("loop", {}) for path in paths]
    except checkpoint.CheckpointError:
        return False
    if any(loop.get("pending_evaluation", False) for loop in loops):  # stopped before its final evaluation
        return False
    return step == config.total_steps or all(loop.get("stopped", False) for loop in loops)  # (ended early: they say so)


def last_eval(config: TrainConfig) -> tuple[int, float | None]:
    """(step, mean eval return over the seeds) of the newest row every seed has logged."""
    last = []
    for d in rundir.run_dirs(config):
        try:
            with open(d / rundir.METRICS, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            return 0, None
        parsed = {}
        for r in rows:  # a row being written may be incomplete: skip it
            try:
                parsed[int(float(r["step"]))] = r["eval_return_mean"]
            except (KeyError, TypeError, ValueError):
                continue
        if not parsed:
            return 0, None
        last.append(parsed)
    common = set.intersection(*[set(rows) for rows in last])
    if not common:
        return 0, None
    step = max(common)
    try:
        return step, sum(float(rows[step]) for rows in last) / len(last)
    except ValueError:
        return step, None


def check_trial_dir(trial: Trial) -> None:
    """Refuse a trial directory that holds a run of a different configuration."""
    path = trial.dir / "trial.json"
    if not path.exists():
        if (trial.dir / rundir.CONFIG).exists():
            raise RunDirError(f"{trial.dir} holds a run that is not this sweep's trial; choose another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is unreadable ({exc}); remove the trial's folder to rerun it") from None
    try:  # a trial.json of an older version: the fields it lacks at their defaults
        old = upgrade(old)
    except ConfigError:
        pass
    new = json.loads(json.dumps(dataclasses.asdict(trial.config)))
    # Where the trial lives is the sweep folder's business, not a setting: the same sweep named by
    # another spelling of --out (absolute, relative, moved) is the same sweep.
    old.pop("run_dir", None)
    new.pop("run_dir", None)
    if old != new:
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if k != "algo" and old.get(k) != new.get(k)]
        oa, na = old.get("algo", {}), new.get("algo", {})
        diff += [f"{k}: {oa.get(k)!r} -> {na.get(k)!r}" for k in sorted(set(oa) | set(na)) if oa.get(k) != na.get(k)]
        raise RunDirError(f"{trial.dir} holds trial {trial.name} with other settings ({'; '.join(diff)}); "
                          "choose another --out or remove that folder")


def trial_environment(environ, concurrent: int) -> dict:
    """The environment of a local trial process when `concurrent` trials run at once. JAX on a
    GPU preallocates 75% of the device's memory per process, so that a second trial on the same
    GPU would fail to start: each trial gets XLA_PYTHON_CLIENT_MEM_FRACTION = 0.9 / concurrent
    instead, unless the user has set it or XLA_PYTHON_CLIENT_PREALLOCATE. (On a CPU it has no
    effect.)"""
    env = dict(environ)
    if concurrent > 1 and not {"XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE"} & set(env):
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / concurrent:.3f}"
    return env


# -- running one trial (in the worker process) ---------------------------------------------------
def run_trial(trial_dir: str) -> str:
    """Train the trial in `trial_dir` (its trial.json) to the end, resuming from the newest
    checkpoint every seed has. Returns "done", or the number of the signal that stopped it first."""
    trial_dir = Path(trial_dir)
    # A worker of an earlier sweep (its driver killed) may still train this trial: wait for it,
    # then go on from where it stopped; never two writers.
    rundir.lock(trial_dir, wait=True, label="trial")
    try:
        config = train_config_from_dict(json.loads((trial_dir / "trial.json").read_text()))
        config = dataclasses.replace(config, run_dir=str(trial_dir), progress=False)
        attempt = 1
        worker = trial_dir / "worker.json"
        if worker.exists():
            try:
                attempt = int(json.loads(worker.read_text()).get("attempt", 0)) + 1
            except (OSError, ValueError, AttributeError):
                pass
        write_json_atomic(worker, {"host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if is_done(config):
            return "done"
        if common_checkpoint(config) is not None:
            trainer = Trainer(config, resume=True)
        else:  # never checkpointed: start afresh, replacing whatever a killed start left behind
            trainer = Trainer(dataclasses.replace(config, overwrite=True))
        trainer.run()
        return "done" if is_done(config) else int(trainer.stop_signal or signal.SIGINT)
    finally:
        rundir.unlock(trial_dir)  # (a Ray worker process lives on to run other trials)


def stop_when_orphaned(parent: int, period: float = 1.0) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM (a checkpoint, then the end) once its
    parent `parent` is gone, so that a sweep driver killed by SIGKILL leaves no worker behind.
    `parent` is the pid the driver passed down, not this process's `os.getppid()` at the time of
    the call: a driver killed while the worker was still importing has already been replaced
    as the parent by then, and the worker must stop all the same."""

    def watch():
        while os.getppid() == parent:
            time.sleep(period)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="iapo-orphan-watch", daemon=True)
    thread.start()
    return thread


# The local backend's child process: signals are deferred before anything heavy is imported.
WORKER = "from iapo import signals; signals.defer_during_startup(); from iapo.trial import worker_main; worker_main()"


def worker_main(argv: list[str] | None = None) -> None:
    """The local backend's child process (`WORKER`, which defers signals first), on TRIAL_DIR
    [DRIVER_PID]."""
    args = sys.argv[1:] if argv is None else argv
    stop_when_orphaned(int(args[1]) if len(args) > 1 else os.getppid())
    try:
        status = run_trial(args[0])
    except IapoError as exc:
        print(f"iapo: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(signals.exit_status(signal.SIGINT))
    sys.exit(0 if status == "done" else signals.exit_status(status))


def _ray_trial(trial_dir: str) -> str:
    """A Ray task: one trial, its output in the trial's log."""
    log = Path(trial_dir) / "trial.log"
    with open(log, "a") as f:
        fd_out, fd_err = os.dup(1), os.dup(2)
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            try:
                return run_trial(trial_dir)
            except IapoError as exc:
                print(f"iapo: error: {exc}", file=sys.stderr, flush=True)
                raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            os.close(fd_out)
            os.close(fd_err)


if __name__ == "__main__":  # (`python -m iapo.trial TRIAL_DIR` runs a trial)
    signals.defer_during_startup()
    worker_main()
