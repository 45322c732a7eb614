"""Experiment sweeps: a grid of environments x agents x settings, each cell a trial whose seeds
train together in one process (`TrainConfig.seeds`).

Two backends write the same layout:

    OUT/sweep.json                   the manifest: the grid, and every trial's status
    OUT/<trial>/trial.json           the trial's TrainConfig
    OUT/<trial>/worker.json          host, pid and attempt of the process running it
    OUT/<trial>/trial.log            its output
    OUT/<trial>/seed_<s>/...         one full run per seed (metrics.csv, checkpoints, ...)

`local` runs trials as child processes of this one, as many at once as the cores allow; `ray`
submits each as a Ray task with declared resources, which Ray places, and retries when its worker
dies. Either way a trial that finds checkpoints resumes from them, so re-running the command, or a
retry, completes only what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from iapo import signals
from iapo.atomic import write_json_atomic
from iapo.config import parse_seeds, show_value
from iapo.envs import check_env_id
from iapo.errors import ConfigError, RunDirError
from iapo.grid import SweepConfig, Trial, build_trials, resolve
from iapo.trial import WORKER, _ray_trial, check_trial_dir, is_done, last_eval, trial_environment, worker_main

MANIFEST = "sweep.json"
MANIFEST_VERSION = 1


# -- the sweep -----------------------------------------------------------------------------------
def _error_line(log: Path) -> str:
    """The line of a failed trial's log that says why."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "failed (no log)"
    for line in reversed(lines):
        if line.startswith("iapo: error:"):
            return line[len("iapo: error:"):].strip()
    return lines[-1] if lines else "failed (empty log)"


class Sweep:
    """Runs the trials on a backend, keeps the manifest and shows progress."""

    def __init__(self, cfg: SweepConfig):
        if cfg.cpus_per_trial < 1:
            raise ConfigError(f"--cpus-per-trial must be >= 1, got {cfg.cpus_per_trial}")
        if cfg.gpus_per_trial < 0:
            raise ConfigError(f"--gpus-per-trial must be >= 0, got {cfg.gpus_per_trial}")
        if cfg.workers is not None and cfg.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {cfg.workers}")
        if cfg.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {cfg.max_retries}")
        self.cfg = cfg = resolve(cfg)[0]
        self.seeds = parse_seeds(cfg.seeds)
        self.out = Path(cfg.out)
        self.trials = build_trials(cfg)
        for env, options in dict.fromkeys((t.config.env, t.config.env_kwargs) for t in self.trials):
            check_env_id(env, options)  # (an unknown id or a misspelt option: before any trial starts)
        if self.out.exists() and not self.out.is_dir():
            raise RunDirError(f"--out {self.out} is a file, not a directory")
        for trial in self.trials:
            check_trial_dir(trial)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for trial in self.trials:
                trial.dir.mkdir(exist_ok=True)
                if not (trial.dir / "trial.json").exists():  # (its run_dir relative to the sweep folder)
                    write_json_atomic(trial.dir / "trial.json", dataclasses.asdict(dataclasses.replace(trial.config,
                                                                                          run_dir=trial.name)))
        except OSError as exc:
            raise RunDirError(f"--out {self.out} is not writable: {exc.strerror or exc}") from None
        self.lock = threading.Lock()
        self.stop_requested = 0
        self.stop_signal = 0  # the first signal that stopped the sweep

    # -- bookkeeping -------------------------------------------------------------------------
    def refresh(self) -> None:
        for trial in self.trials:
            trial.steps, trial.last_return = last_eval(trial.config)

    def write_manifest(self) -> None:
        grid = {"envs": list(self.cfg.envs), "agents": list(self.cfg.agents),
                "seeds": list(self.seeds), "total_steps": self.cfg.total_steps,
                "config": self.cfg.config, "set": list(self.cfg.set), "backend": self.cfg.backend}
        trials = [{"name": t.name, "dir": t.name, "env": t.config.env, "agent": t.config.algo.agent,
                   "settings": {k: show_value(v) for k, v in t.settings.items()}, "status": t.status, "steps": t.steps,
                   "last_return": t.last_return, "error": t.error} for t in self.trials]
        with self.lock:
            write_json_atomic(self.out / MANIFEST, {"version": MANIFEST_VERSION, "grid": grid, "trials": trials,
                                              "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def table(self):
        from rich.table import Table

        table = Table(title=f"sweep {self.out} ({self.cfg.backend})")
        for column in ("trial", "status", "steps", "last return"):
            table.add_column(column, justify="right" if column in ("steps", "last return") else "left")
        colors = {"done": "green", "running": "cyan", "failed": "red", "stopped": "yellow", "pending": "dim"}
        for t in self.trials:
            ret = "—" if t.last_return is None else f"{t.last_return:.1f}"
            status = t.status if t.error is None else f"{t.status}: {t.error}"
            table.add_row(t.name, f"[{colors[t.status]}]{status}", f"{t.steps}/{t.config.total_steps}", ret)
        return table

    def set_status(self, trial: Trial, status: str, error: str | None = None) -> None:
        trial.status, trial.error = status, error
        if status == "done":
            trial.steps, trial.last_return = last_eval(trial.config)
        if not self.cfg.progress:
            ret = "" if trial.last_return is None else f", last return {trial.last_return:.1f}"
            print(f"{trial.name}: {status}{f' ({error})' if error else ''} at step {trial.steps}{ret}", flush=True)
        self.write_manifest()

    # -- running -----------------------------------------------------------------------------
    def run(self) -> int:
        """Run every unfinished trial; returns the number that did not finish."""
        for trial in self.trials:
            if is_done(trial.config):
                trial.status = "done"
        self.refresh()
        self.write_manifest()
        todo = [t for t in self.trials if t.status != "done"]
        skipped = len(self.trials) - len(todo)
        if skipped:
            print(f"{skipped} of {len(self.trials)} trials already finished: skipped", flush=True)
        backend = self._run_local if self.cfg.backend == "local" else self._run_ray
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {}
        if main_thread:
            previous = {sig: signal.signal(sig, self._on_signal) for sig in signals.STOP_SIGNALS}
        try:
            if todo:
                self._with_progress(lambda: backend(todo))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.refresh()
            self.write_manifest()
        unfinished = [t for t in self.trials if t.status != "done"]
        if not self.cfg.progress or unfinished or not todo:
            from rich.console import Console

            Console().print(self.table())
        return len(unfinished)

    def _with_progress(self, body) -> None:
        if not self.cfg.progress:
            body()
            return
        from rich.live import Live

        with Live(self.table(), refresh_per_second=1) as live:
            done = threading.Event()

            def poll():
                while not done.wait(2.0):
                    self.refresh()
                    live.update(self.table())

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                body()
            finally:
                done.set()
                poller.join()
                self.refresh()
                live.update(self.table())

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested += 1
        self.stop_signal = self.stop_signal or signum
        if self.stop_requested == 1:
            print(f"\n{signal.Signals(signum).name}: stopping every trial at a checkpoint "
                  "(again to stop at once); rerun the same command to resume", file=sys.stderr, flush=True)

    def _run_local(self, todo: list[Trial]) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        slots = self.cfg.workers or max(1, cores // self.cfg.cpus_per_trial)
        pending = list(todo)
        running: dict[subprocess.Popen, Trial] = {}
        signalled = 0
        while pending or running:
            if self.stop_requested > signalled:  # forward each Ctrl-C once to every child
                for proc in running:
                    proc.send_signal(signal.SIGINT)
                signalled = self.stop_requested
            while pending and len(running) < slots and not self.stop_requested:
                trial = pending.pop(0)
                log = open(trial.dir / "trial.log", "ab")
                proc = subprocess.Popen([sys.executable, "-c", WORKER, str(trial.dir), str(os.getpid())], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env=trial_environment(os.environ, min(slots, len(todo))))
                log.close()
                running[proc] = trial
                self.set_status(trial, "running")
            if self.stop_requested:
                for trial in pending:
                    trial.status = "stopped" if trial.steps else "pending"
                pending = []
            for proc in [p for p in running if p.poll() is not None]:
                trial = running.pop(proc)
                if proc.returncode == 0:
                    self.set_status(trial, "done")
                elif signals.is_stop_status(proc.returncode):
                    self.set_status(trial, "stopped")
                else:
                    self.set_status(trial, "failed", _error_line(trial.dir / "trial.log"))
            time.sleep(0.2)

    def _run_ray(self, todo: list[Trial]) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'iapo[ray]'") from None
        if not ray.is_initialized():
            if self.cfg.address:
                ray.init(address=self.cfg.address, log_to_driver=False)
            else:
                ray.init(log_to_driver=False, include_dashboard=False)
        options = dict(num_cpus=self.cfg.cpus_per_trial, num_gpus=self.cfg.gpus_per_trial,
                       max_retries=self.cfg.max_retries, retry_exceptions=False)
        if 0 < self.cfg.gpus_per_trial < 1:  # trials sharing a GPU each take their share of its memory
            share = {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * self.cfg.gpus_per_trial:.3f}"}
            options["runtime_env"] = {"env_vars": share}
        task = ray.remote(_ray_trial).options(**options)
        refs = {}
        for trial in todo:
            refs[task.remote(str(trial.dir.resolve()))] = trial
            self.set_status(trial, "running")
        cancelled = False
        while refs:
            if self.stop_requested and not cancelled:
                for ref in refs:
                    ray.cancel(ref, force=self.stop_requested > 1)
                cancelled = True
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                trial = refs.pop(ref)
                try:
                    status = ray.get(ref)  # "done", or the number of the signal that stopped it
                    self.set_status(trial, "done" if status == "done" else "stopped")
                except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
                    self.set_status(trial, "stopped")
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    self.set_status(trial, "failed", str(cause).strip().splitlines()[-1])
                except ray.exceptions.RayError as exc:  # the worker or node died more often than retried
                    self.set_status(trial, "failed", str(exc).strip().splitlines()[0])


def sweep(cfg: SweepConfig) -> int:
    """`iapo sweep`: run the sweep; returns the exit code: 0 all finished, 128 + the signal that
    stopped it (130 for Ctrl-C), 1 otherwise."""
    runner = Sweep(cfg)
    unfinished = runner.run()
    failed = sum(t.status == "failed" for t in runner.trials)
    if failed:
        print(f"{failed} trial(s) failed (the table and {runner.out / MANIFEST} say why); after fixing the cause, "
              "rerun the same command: it runs them again and skips the finished ones", file=sys.stderr)
    if unfinished > failed:
        print(f"{unfinished - failed} trial(s) did not finish; rerun the same command to complete them", file=sys.stderr)
    return 0 if not unfinished else signals.exit_status(runner.stop_signal) if runner.stop_requested else 1


if __name__ == "__main__":  # (`python -m iapo.sweep TRIAL_DIR` also runs a trial)
    signals.defer_during_startup()
    worker_main()
