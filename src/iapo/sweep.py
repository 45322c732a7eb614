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

import csv
import dataclasses
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import tyro

from iapo import checkpoint, rundir, signals
from iapo.config import (AgentConfig, TrainConfig, parse_seeds, read_config_file, show_value, to_dict,
                         train_config_from_dict, upgrade)
from iapo.envs import check_env_id
from iapo.errors import ConfigError, IapoError, RunDirError
from iapo.atomic import write_json_atomic
from iapo.kinds import KINDS, AgentKind
from iapo.trainer import Trainer

MANIFEST = "sweep.json"
MANIFEST_VERSION = 1
# TrainConfig fields that a sweep sets itself, so `--set` may not.
RESERVED = {"env", "seed", "seeds", "total_steps", "run_dir", "overwrite", "resume", "progress", "algo", "agent"}


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A grid of trials (environments x agents x --set values); the seeds of each trial train
    together in one process. Re-running the same command completes only the missing or
    unfinished trials; Ctrl-C stops every trial at a checkpoint."""

    envs: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="ENV [ENV ...]")] = None
    """Gymnasium environment ids. Unset: the --config file's env, or Hopper-v5."""

    agents: Annotated[tuple[AgentKind, ...] | None, tyro.conf.arg(metavar="AGENT [AGENT ...]")] = None
    """Agents: any of `direct`, `iterative`, `direct-flow`, `gradient`, `cem`. Unset: the --config
    file's agent, or direct and iterative."""

    seeds: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="SEEDS [SEEDS ...]")] = None
    """Seeds of every trial: numbers and inclusive ranges, e.g. `0-4` or `0 1 7`. Unset: the
    --config file's seeds (or seed), or 0-4."""

    total_steps: Annotated[int | None, tyro.conf.arg(metavar="INT")] = None
    """Environment steps of every trial. Unset: the --config file's total_steps, or 1000000."""

    out: str = "sweeps/study"
    """The sweep's directory."""

    config: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """A YAML or JSON file of `iapo train` settings (as `iapo train --config` reads, e.g.
    configs/iterative.yaml): every trial starts from it; --set and the flags above override it.
    Its run_dir is not used (each trial's is OUT/<trial>)."""

    set: tuple[str, ...] = ()
    """Settings as KEY=V1,V2,...: any field of `iapo train` (dashes or underscores). A key with
    several values is an axis of the grid; one with one value applies to every trial.
    Widths are written 256x256."""

    backend: Literal["local", "ray"] = "local"
    """`local`: child processes on this machine; `ray`: Ray tasks on a cluster."""

    address: Annotated[str | None, tyro.conf.arg(metavar="ADDRESS")] = None
    """Ray: the cluster to join (e.g. `auto` or `ray://host:10001`); unset starts a local one.
    Every node must see --out at the same path (a shared filesystem)."""

    cpus_per_trial: int = 1
    """CPU cores one trial uses: local runs cores // this many trials at once; Ray reserves them."""

    gpus_per_trial: float = 0.0
    """Ray: GPUs reserved per trial (fractions share a GPU)."""

    workers: Annotated[int | None, tyro.conf.arg(metavar="N")] = None
    """Local: trials at once; unset means the cores available // --cpus-per-trial."""

    max_retries: int = 3
    """Ray: retries of a trial whose worker process or node dies (each resumes from its checkpoint)."""

    progress: bool = True
    """Show the live table of trials; otherwise print a line when a trial's status changes."""


@dataclasses.dataclass
class Trial:
    name: str
    config: TrainConfig
    settings: dict  # the grid axes' values of this trial
    status: str = "pending"  # pending | running | done | failed | stopped
    steps: int = 0
    last_return: float | None = None
    error: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.config.run_dir)


# -- the grid ------------------------------------------------------------------------------------
def _field_types() -> dict[str, tuple[str, object]]:
    """Field name -> ("train" or "algo", its type) for every field `--set` may name."""
    train = typing.get_type_hints(TrainConfig)
    algo = typing.get_type_hints(AgentConfig)
    fields = {name: ("algo", tp) for name, tp in algo.items() if name not in RESERVED}
    fields.update({name: ("train", tp) for name, tp in train.items() if name not in RESERVED})
    return fields


def _convert(text: str, tp) -> object:
    """One `--set` value as the field's type (raises ValueError)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(text, inner)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"one of {', '.join(map(str, args))}")
        return text
    if origin is tuple:
        return tuple(_convert(part, args[0]) for part in text.split("x"))
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("true or false")
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    return text


def parse_settings(items: tuple[str, ...]) -> dict[str, list]:
    """`("iterations=1,2,5", "batch-size=128")` -> {"iterations": [1, 2, 5], "batch_size": [128]}."""
    fields = _field_types()
    settings: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if name in RESERVED:
            raise ConfigError(f"--set {key}: set by the sweep itself (use its own flag)")
        if name not in fields:
            raise ConfigError(f"--set {key}: no such field of `iapo train`")
        if name in settings:
            raise ConfigError(f"--set {key} is given twice")
        converted = []
        for value in values.split(","):
            try:
                converted.append(_convert(value.strip(), fields[name][1]))
            except ValueError as exc:
                expected = f" (expected {exc})" if str(exc) and "invalid literal" not in str(exc) else ""
                raise ConfigError(f"--set {key}: {value!r} is not a valid value{expected}") from None
        settings[name] = converted
    return settings


def resolve(cfg: SweepConfig) -> tuple[SweepConfig, TrainConfig]:
    """`cfg` with its unset grid flags filled in, and the TrainConfig every trial starts from:
    both from the --config file where one is given, otherwise iapo sweep's defaults (Hopper-v5;
    direct and iterative; seeds 0-4; 1M steps) and `iapo train`'s."""
    if cfg.config is None:
        base = TrainConfig()
        unset = dict(envs=("Hopper-v5",), agents=("direct", "iterative"), seeds=("0-4",), total_steps=1_000_000)
    else:
        base = read_config_file(cfg.config)
        seeds = base.seeds if base.seeds is not None else (base.seed,)
        unset = dict(envs=(base.env,), agents=(base.algo.agent,), seeds=tuple(map(str, seeds)),
                     total_steps=base.total_steps)
    given = {name: getattr(cfg, name) for name in unset if getattr(cfg, name) is not None}
    return dataclasses.replace(cfg, **{**unset, **given}), base


def build_trials(cfg: SweepConfig) -> list[Trial]:
    """The grid's cells, each a validated TrainConfig whose run directory is OUT/<name>."""
    cfg, base = resolve(cfg)
    if not cfg.envs:
        raise ConfigError("--envs must name at least one environment")
    if not cfg.agents:
        raise ConfigError("--agents must name at least one agent")
    agents = tuple(KINDS)
    for agent in cfg.agents:
        if agent not in agents:
            raise ConfigError(f"--agents: unknown agent {agent!r} (choose from {', '.join(agents)})")
    seeds = parse_seeds(cfg.seeds)
    settings = parse_settings(cfg.set)
    fields = _field_types()
    axes = [name for name, values in settings.items() if len(values) > 1]
    trials = []
    for env, agent, *values in itertools.product(cfg.envs, cfg.agents, *settings.values()):
        chosen = dict(zip(settings, values))
        algo = {k: v for k, v in chosen.items() if fields[k][0] == "algo"}
        train = {k: v for k, v in chosen.items() if fields[k][0] == "train"}
        name = "_".join([env, agent] + [f"{k}={show_value(chosen[k])}" for k in axes])
        config = dataclasses.replace(base, env=env, seeds=seeds, total_steps=cfg.total_steps,
                                     run_dir=str(Path(cfg.out) / name), overwrite=False, resume=None, progress=False,
                                     algo=dataclasses.replace(base.algo, agent=agent, **algo), **train)
        try:
            config.validate()
        except ConfigError as exc:
            raise ConfigError(f"trial {name}: {exc}") from None
        trials.append(Trial(name, config, {k: chosen[k] for k in axes}))
    return trials


# -- a trial's state on disk ---------------------------------------------------------------------
def common_checkpoint(config: TrainConfig) -> int | None:
    """The newest step at which every seed of the trial has a checkpoint, or None."""
    steps = [{s for s, _ in checkpoint.list_checkpoints(d)} for d in rundir.run_dirs(config)]
    common = set.intersection(*steps)  # (a trial has at least one seed)
    return max(common) if common else None


def is_done(config: TrainConfig) -> bool:
    """Every seed has a checkpoint of the final step (--total-steps, or the step at which
    --stop-return ended the run), and none of them is an empty file."""
    step = common_checkpoint(config)
    if step is None:
        return False
    paths = [checkpoint.checkpoint_path(d, step) for d in rundir.run_dirs(config)]
    if not all(path.stat().st_size > 0 for path in paths):
        return False
    if step == config.total_steps:
        return True
    if config.stop_return is None:
        return False
    try:  # ended early: its checkpoints say so
        return all(checkpoint.read(path).get("extra", {}).get("loop", {}).get("stopped", False) for path in paths)
    except checkpoint.CheckpointError:
        return False


def _last_eval(config: TrainConfig) -> tuple[int, float | None]:
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
    new = json.loads(json.dumps(to_dict(trial.config)))
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
    checkpoint every seed has. Returns "done", or "stopped" when a signal stopped it first."""
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
            Trainer(config, resume=True).run()
        else:  # never checkpointed: start afresh, replacing whatever a killed start left behind
            Trainer(dataclasses.replace(config, overwrite=True)).run()
        return "done" if is_done(config) else "stopped"
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
WORKER = "from iapo import signals; signals.defer_during_startup(); from iapo.sweep import worker_main; worker_main()"


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
        sys.exit(130)
    sys.exit(0 if status == "done" else 130)


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
        for env in cfg.envs:
            check_env_id(env)
        if self.out.exists() and not self.out.is_dir():
            raise RunDirError(f"--out {self.out} is a file, not a directory")
        for trial in self.trials:
            check_trial_dir(trial)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for trial in self.trials:
                trial.dir.mkdir(exist_ok=True)
                if not (trial.dir / "trial.json").exists():  # (its run_dir relative to the sweep folder)
                    write_json_atomic(trial.dir / "trial.json", to_dict(dataclasses.replace(trial.config,
                                                                                          run_dir=trial.name)))
        except OSError as exc:
            raise RunDirError(f"--out {self.out} is not writable: {exc.strerror or exc}") from None
        self.lock = threading.Lock()
        self.stop_requested = 0

    # -- bookkeeping -------------------------------------------------------------------------
    def refresh(self) -> None:
        for trial in self.trials:
            trial.steps, trial.last_return = _last_eval(trial.config)

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
            trial.steps, trial.last_return = _last_eval(trial.config)
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
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
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
                elif proc.returncode in (130, -signal.SIGINT, -signal.SIGTERM):
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
                    status = ray.get(ref)
                    self.set_status(trial, status)
                except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
                    self.set_status(trial, "stopped")
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    self.set_status(trial, "failed", str(cause).strip().splitlines()[-1])
                except ray.exceptions.RayError as exc:  # the worker or node died more often than retried
                    self.set_status(trial, "failed", str(exc).strip().splitlines()[0])


def run(cfg: SweepConfig) -> int:
    """`iapo sweep`: run the sweep; returns the exit code: 0 all finished, 130 stopped by a
    signal, 1 otherwise."""
    sweep = Sweep(cfg)
    unfinished = sweep.run()
    if unfinished:
        print(f"{unfinished} trial(s) did not finish; rerun the same command to complete them", file=sys.stderr)
    return 0 if not unfinished else 130 if sweep.stop_requested else 1


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


if __name__ == "__main__":  # (`python -m iapo.sweep TRIAL_DIR` also runs a trial)
    signals.defer_during_startup()
    worker_main()
