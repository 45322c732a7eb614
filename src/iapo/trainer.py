"""The training loop: collect with the current policy, update once per step, evaluate, log.

`Trainer` trains one seed, or several together; `train(config)` is `iapo train` (a new run, or
`--resume`)."""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo import checkpoint, machine, resolve, rundir, signals
from iapo.agent import Agent, act_seeds
from iapo.config import TrainConfig
from iapo.envs import check_env_id, check_observation_layout, dims, probe_run_env
from iapo.errors import ConfigError, EnvError, IapoError, NumericError
from iapo.figures import seed_std
from iapo.logger import RunLogger, check_wandb, plot_seed_curves, read_metrics
from iapo.env_state import get_state, set_state
from iapo.rollout import RolloutStopped, rollout, seeds_policy
from iapo.saved import load_run_config
from iapo.rundir import read_config, write_config
from iapo.seed_run import SeedRun
from iapo.seeds import SeedAxis, stack
from iapo.train_step import DeviceSampler, HostSampler
from iapo.update import pretrain_model_seeds


TIMING_COLUMNS = ("env_steps_per_s", "wall_time_s")  # the only columns that differ on a rerun
EVAL_SEED_OFFSET = 10_000


def _mean_infos(infos: list[dict]) -> dict:
    if not infos:
        return {}
    host = jax.device_get(infos)
    return {k: np.mean(np.stack([i[k] for i in host]), axis=0) for k in host[0]}


def _format_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _progress(show: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[sps]:>6.0f} steps/s"),
        TextColumn("eval {task.fields[ret]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not show,
    )


class Trainer:
    """Trains one seed, or several together (`config.seeds`): the agent states of all seeds are
    stacked on a leading seed axis (S, ...) and one call updates, or acts for, all of them
    (vmapped or one after the other: `seeds.over_seeds`), while each seed has its own
    environments, replay buffer, RNGs, metrics and checkpoints. The loop builds and reads per-seed arrays with the seed axis; `self.axis`
    (`seeds.SeedAxis`) is the one place that gives a lone seed's device arrays without it.
    `run()` trains to the end."""

    def __init__(self, config: TrainConfig, resume: bool = False, on_evaluation=None):
        """`on_evaluation(rows)`, if given, is called after every evaluation with its rows (one
        per seed, as metrics.csv gets them)."""
        config.validate()
        self.on_evaluation = on_evaluation
        self._clock: tuple[float, float] | None = None  # (wall seconds before this process, its start)
        check_env_id(config.env)
        # Every "auto" setting is decided here, once, before anything is written, and recorded in
        # config.json; a resumed run takes what it recorded (older versions': what its checkpoint
        # names, `_restore`).
        recorded = read_config(config.run_dir)[1] if resume else {}
        self.resolved = {**resolve.resolve(config), **recorded}
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.group = config.seeds is not None
        seeds = list(config.seeds) if self.group else [config.seed]
        self.runs: list[SeedRun] = []
        for seed in seeds:  # the environments are made (and checked) before any file is written
            if self.group:
                seed_dir = rundir.seed_dir(self.run_dir, seed)
                seed_config = dataclasses.replace(config, seed=seed, seeds=None, run_dir=str(seed_dir))
            else:
                seed_dir, seed_config = self.run_dir, config
            self.runs.append(SeedRun(seed_config, seed_dir, self.group))
        if config.wandb_project:
            check_wandb()  # (before anything is written)
        # One writer per run directory (a group's: its root) while this run lasts.
        if resume:
            rundir.lock(self.run_dir)
        else:
            probe_run_env(config)
            rundir.prepare(config)
            if config.total_steps <= config.random_steps:
                warnings.warn(f"--total-steps {config.total_steps} is not above --random-steps {config.random_steps}: "
                              "the run acts at random throughout and does no update", stacklevel=2)
            if config.algo.batch_size > config.buffer_capacity:
                warnings.warn(f"--batch-size {config.algo.batch_size} exceeds --buffer-capacity "
                              f"{config.buffer_capacity}: every batch repeats transitions", stacklevel=2)
            for run in self.runs:
                run.run_dir.mkdir(exist_ok=True)
        obs_dim, self.act_dim = dims(self.runs[0].env)
        # recorded beside the resolved settings: the order of the flat observation (a resumed run's
        # environment must lay it out as the run recorded)
        layout = check_observation_layout(self.runs[0].env, recorded.get(rundir.OBSERVATION_LAYOUT), config.env)
        if layout is not None:
            self.resolved[rundir.OBSERVATION_LAYOUT] = layout
        self.agent = Agent(resolve.apply(config, self.resolved).algo, obs_dim, self.act_dim)
        roots = [jax.random.PRNGKey(seed) for seed in seeds]
        self.templates = [self.agent.init(jax.random.fold_in(root, 0)) for root in roots]
        self.axis = SeedAxis(len(seeds))
        self.state = self.axis.stack(self.templates)  # ([S,] ...) every leaf
        self.act_key = self.axis.stack([jax.random.fold_in(root, 1) for root in roots])
        self.eval_key = self.axis.stack([jax.random.fold_in(root, 2) for root in roots])
        self.action = None  # ([S,] 1, d): the next training action, from the last step's device call
        replay_on_device = self.resolved["replay_sampling"] == "device"
        replay_key = self.axis.stack([jax.random.fold_in(root, 3) for root in roots])  # device sampling's keys
        self.infos: list[dict] = []  # update infos ([S,] U, ...) of the steps since the last evaluation
        self.info_steps: list[int | None] = []  # the step of each
        self.checked = 0  # infos[:checked] were found finite
        if resume:
            replay_on_device, replay_key = self._restore(replay_on_device, replay_key, recorded)
        buffers = [run.buffer for run in self.runs]
        if replay_on_device:
            self.sampler = DeviceSampler(buffers, config.updates_per_step, replay_key, self.axis)
        else:
            self.sampler = HostSampler(buffers, [run.rng for run in self.runs], config.algo.batch_size,
                                       config.updates_per_step, replay_key, self.axis)
        for run in self.runs:
            run.resolved = self.resolved
        if not resume:
            if self.group:
                write_config(self.run_dir, config, self.resolved)
            for run in self.runs:
                run.start()
        elif not recorded:  # a run of a version that did not record them: from now on it does
            for path in ([self.run_dir] if self.group else []) + [run.run_dir for run in self.runs]:
                write_config(path, read_config(path)[0], self.resolved)
        machine.record([run.run_dir for run in self.runs], self.runs[0].loop.step)  # where it trains, from which step
        label = f"seeds {' '.join(map(str, seeds))}" if self.group else f"seed {config.seed}"
        self.title = f"{config.env} · {config.algo.agent} · {label}"
        for run in self.runs:
            wandb = None
            if config.wandb_project:
                wandb = {"project": config.wandb_project, "name": f"{self.run_dir.name}/{rundir.seed_dir('', run.config.seed)}",
                         "group": self.run_dir.name, "config": dataclasses.asdict(run.config)}
            run.logger = RunLogger(run.run_dir, f"{config.env} · {config.algo.agent} · seed {run.config.seed}",
                                   resume_after=run.loop.step if resume else None, wandb=wandb)
        self.logged = 0  # infos[:logged] were written by `log_updates`
        if resume:  # of the updates restored (one info each), those up to the last `log_updates` were written
            step = self.step_count
            after = config.updates_per_step * max(0, step - max(step - step % config.log_every, config.random_steps))
            self.logged = max(0, len(self.infos) - after)
        self.stop_signal: int | None = None
        self.checkpointed = resume  # a checkpoint of this run exists (before the first one: none)

    @property
    def step_count(self) -> int:
        return self.runs[0].loop.step

    @property
    def finished(self) -> bool:
        """At --total-steps, or ended early by --stop-return."""
        return self.step_count >= self.config.total_steps or self.runs[0].loop.stopped

    def reached_stop_return(self, rows: list[dict]) -> bool:
        """Whether every seed's evaluation (`rows`, one per seed) is at or above --stop-return."""
        target = self.config.stop_return
        return target is not None and all(row["eval_return_mean"] >= target for row in rows)

    def _seed(self, tree, i: int):
        """Seed i's part of a pytree held for the compiled calls."""
        return self.axis.take(tree, i)

    def _host_updates(self) -> list[dict]:
        """The update infos since the last evaluation on the host: one dict per update, every
        array with a leading seed axis (S, ...)."""
        out = []
        for info in map(self.axis.with_axis, jax.device_get(self.infos)):
            out += [{k: v[:, u] for k, v in info.items()} for u in range(info["finite"].shape[1])]
        return out

    def check_finite(self) -> None:
        """Stop with a NumericError naming the first update since the last check whose losses,
        temperature or parameters were not finite. The flags are read here (before every
        evaluation and checkpoint) rather than after each update, so no step waits on the device."""
        start = self.checked
        self.checked = len(self.infos)
        if start == len(self.infos):
            return
        flags = jax.device_get([info["finite"] for info in self.infos[start:]])  # each ([S,] U)
        finite = np.stack([np.reshape(f, (len(self.runs), -1)).all(axis=1) for f in flags])  # (steps, S)
        if finite.all():
            return
        n, i = np.argwhere(~finite)[0]
        info = jax.device_get(self._seed(self.infos[start + n], i))  # (U, ...)
        u = int(np.argmin(info["finite"]))
        info = {k: v[u] for k, v in info.items()}
        raise NumericError(f"non-finite {_first_nonfinite(info)} at step {self.info_steps[start + n]}{self.runs[i].which}")

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, pending_evaluation: bool = False) -> list[Path]:
        """A checkpoint of every seed, each in its own run directory, all at the same step; with
        `pending_evaluation`, taken before this step's evaluation, which a resumed run does first."""
        self.check_finite()
        self.checkpointed = True
        for run in self.runs:
            run.loop.pending_evaluation = pending_evaluation
        host_infos = self._host_updates()
        action = None if self.action is None else np.asarray(self.action)
        paths = []
        for i, run in enumerate(self.runs):
            infos = [jax.tree.map(lambda x: x[i], info) for info in host_infos]
            if self._clock is not None:
                run.loop.wall_seconds = self.elapsed()
            extra = run.extra(self._seed(self.act_key, i), infos, None if action is None else self._seed(action, i))
            extra["replay_key"] = np.asarray(self._seed(self.sampler.keys(), i))
            extra["replay_on_device"] = self.sampler.on_device
            extra["matmul_precision"] = self.agent.matmul_precision
            extra["seed_mapping"] = self.agent.seed_mapping
            state = self._seed(self.state, i)
            paths.append(checkpoint.save(run.run_dir, run.loop.step, state, extra, run.replay_parts))
        return paths

    def save_snapshots(self) -> None:
        """A snapshot of every seed's agent, kept for the analyses over training."""
        self.check_finite()
        for i, run in enumerate(self.runs):
            checkpoint.save_snapshot(run.run_dir, run.loop.step, self._seed(self.state, i))

    def _restore(self, replay_on_device: bool, replay_key: jax.Array, recorded: dict) -> tuple[bool, jax.Array]:
        """Restore every seed from the newest step at which all of them have a usable checkpoint.
        Returns where to sample the replay and the sampling keys (S, 2): as the run did, where its
        configuration leaves it to `auto` (`recorded`: what config.json says the run's "auto"
        settings resolved to; none for a run of an older version)."""
        steps = set.intersection(*[{s for s, _ in checkpoint.list_checkpoints(r.run_dir)} for r in self.runs])
        if not steps:
            where = ", ".join(str(r.run_dir / rundir.CHECKPOINTS) for r in self.runs)
            raise checkpoint.CheckpointError(
                f"no checkpoint in {where}: the run stopped before its first one; start it again with the same "
                "command and --overwrite")
        problems = []
        for step in sorted(steps, reverse=True):
            try:
                loaded = [checkpoint.load(checkpoint.checkpoint_path(r.run_dir, step), t, with_parts=True)
                          for r, t in zip(self.runs, self.templates)]
            except (checkpoint.NewerFormatError, checkpoint.MismatchError):
                raise
            except checkpoint.CheckpointError as exc:
                problems.append(str(exc))
                warnings.warn(f"{exc}; trying the one before", stacklevel=2)
                continue
            break
        else:
            raise checkpoint.CheckpointError("no usable checkpoint: " + "; ".join(problems))
        for run, (state, extra) in zip(self.runs, loaded):
            run.restore(step, extra)
        self.state = self.axis.stack([state for state, _ in loaded])
        self.act_key = self.axis.stack([jnp.asarray(extra["act_key"]) for _, extra in loaded])
        if all("replay_key" in extra for _, extra in loaded):  # (checkpoints of older versions have none)
            replay_key = self.axis.stack([jnp.asarray(extra["replay_key"]) for _, extra in loaded])
        if not recorded:
            # A run of a version that did not record its "auto" settings in config.json: keep
            # sampling where it sampled (older versions: on the host), the precision it began
            # with (older: float32) and how its seeds were mapped (older: vmap), as its checkpoint
            # names them.
            extra = loaded[0][1]
            named = {"replay_sampling": "device" if extra.get("replay_on_device", False) else "host",
                     "matmul_precision": str(extra.get("matmul_precision", "float32")),
                     "seed_mapping": str(extra.get("seed_mapping", "vmap"))}
            asked = dataclasses.asdict(self.config)
            self.resolved.update({k: v for k, v in named.items() if asked.get(k, asked["algo"].get(k)) == "auto"})
            replay_on_device = self.resolved["replay_sampling"] == "device"
            began = resolve.apply(self.config, self.resolved).algo
            if began != self.agent.config:
                self.agent = Agent(began, self.agent.obs_dim, self.act_dim)
        actions = [run.loop.action for run in self.runs]  # absent from checkpoints of older versions
        self.action = None if any(a is None for a in actions) else self.axis.stack([jnp.asarray(a) for a in actions])
        infos = [extra["loop"]["infos"] for _, extra in loaded]
        # One update per entry, in the layout of a step's infos: ([S,] U = 1, ...).
        self.infos = [self.axis.native(jax.tree.map(lambda x: x[:, None], stack(per_update)))
                      for per_update in zip(*infos)]
        self.info_steps = [None] * len(self.infos)
        self.checked = len(self.infos)  # checked before they were saved
        for run in self.runs:
            run.loop.infos, run.loop.action = [], None
        return replay_on_device, replay_key

    # -- one step ----------------------------------------------------------------------------
    def observations(self) -> np.ndarray:
        """The seeds' current observations, (S, 1, obs_dim)."""
        return np.stack([run.loop.obs for run in self.runs])[:, None].astype(np.float32)

    def step(self) -> None:
        """One environment step of every seed, then its updates. The updates and the next step's
        action are one device call (`self.sampler`): the host sends the sampled batches (or the
        new transitions) and the new observations and reads back one action per seed."""
        cfg = self.config
        step = self.step_count + 1
        for run in self.runs:
            run.loop.step = step
        if step <= cfg.random_steps:
            actions = [run.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32) for run in self.runs]
        else:
            if self.action is None:  # the first policy step (or updates_per_step = 0)
                self.action, self.act_key = act_seeds(self.agent, self.state, self.axis.native(self.observations()),
                                                      self.act_key)
            actions = np.asarray(self.action).reshape(len(self.runs), self.act_dim)
            self.action = None
            bad = ~np.all(np.isfinite(actions), axis=-1)
            if bad.any():
                self.check_finite()  # a non-finite update would be the cause: name it
                raise NumericError(f"non-finite action at step {step}{self.runs[int(np.argmax(bad))].which}")
        for run, action in zip(self.runs, actions):
            run.env_step(action)
        if step == cfg.random_steps + 1 and self.agent.model_based and cfg.algo.model_pretrain_updates:
            self.pretrain_model()
        if step > cfg.random_steps and cfg.updates_per_step:
            self.state, info, self.action, self.act_key = self.sampler(self.agent, self.state, self.observations(), self.act_key)
            self.infos.append(info)
            self.info_steps.append(step)
        for run in self.runs:
            run.loop.window_steps += 1

    def pretrain_model(self) -> None:
        """A model-based agent's model updates on the random phase's data before the first agent
        update, in chunks of at most 100 updates (batches sampled for all of them at once)."""
        cfg = self.config
        left = cfg.algo.model_pretrain_updates
        while left:
            n = min(left, 100)
            batches = self.axis.stack([stack([run.buffer.sample(run.rng, cfg.algo.batch_size) for _ in range(n)])
                                       for run in self.runs])  # ([S,] n, B, ...)
            self.state, loss = pretrain_model_seeds(self.agent, self.state, batches)
            left -= n
        if not np.all(np.isfinite(np.asarray(loss))):
            raise NumericError(f"non-finite model loss while pretraining the model at step {self.step_count}")

    def evaluate_and_log(self, train_seconds: float, wall_seconds: float) -> list[dict]:
        self.check_finite()
        cfg, first = self.config, self.runs[0].loop
        seeds = [[None] * cfg.eval_episodes if run.loop.eval_seeded
                 else [run.config.seed + EVAL_SEED_OFFSET + i for i in range(cfg.eval_episodes)] for run in self.runs]
        policy = seeds_policy(self.agent, self.state, self.axis, deterministic=True,
                              iterations=cfg.algo.acting_iterations)
        before = [[get_state(env) for env in run.eval_envs] for run in self.runs]
        try:
            out = rollout([env for run in self.runs for env in run.eval_envs], policy, self.eval_key,
                          seeds=[s for run_seeds in seeds for s in run_seeds], stop=lambda: self.stop_signal is not None)
        except EnvError as exc:
            raise EnvError(f"{exc}, in the evaluation at step {first.step}") from None
        except RolloutStopped:  # the evaluation environments as they were before it, for the checkpoint
            for run, states in zip(self.runs, before):
                for env, env_state in zip(run.eval_envs, states):
                    set_state(env, env_state)
            raise
        returns, lengths = (x.reshape(len(self.runs), -1) for x in (out.returns, out.lengths))
        for i, run in enumerate(self.runs):  # (each reward was finite; their sum can still overflow)
            if not np.all(np.isfinite(returns[i])):
                raise NumericError(f"the evaluation at step {first.step} returned a non-finite return "
                                   f"({returns[i][~np.isfinite(returns[i])][0]}){run.which}")
        all_stats = _mean_infos(self._host_updates())  # each (S, ...): the mean over the updates since the last evaluation
        alpha = np.exp(self.axis.with_axis(np.asarray(self.state.log_alpha)))
        updates = self.axis.with_axis(np.asarray(self.state.updates))
        rows = []
        for i, run in enumerate(self.runs):
            loop = run.loop
            loop.eval_seeded = True  # seeded once; later evaluations continue each env's RNG
            stats = {k: v[i] for k, v in all_stats.items()}
            row = {
                "step": loop.step,
                "episodes": loop.episodes,
                "eval_return_mean": float(np.mean(returns[i])),
                "eval_return_std": float(np.std(returns[i])),
                "eval_length_mean": float(np.mean(lengths[i])),
                "train_episode_return": float(np.mean(loop.finished_returns)) if loop.finished_returns else math.nan,
                "updates": int(updates[i]),
                "env_steps_per_s": first.window_steps * self.config.action_repeat / max(train_seconds, 1e-9),
                "wall_time_s": wall_seconds,
            }
            row.update({k: float(v) for k, v in stats.items() if np.ndim(v) == 0 and k != "finite"})
            if all_stats:
                row["alpha"] = float(alpha[i])
            run.logger.log(row, stats.get("objective_per_iteration"))
            loop.finished_returns, loop.window_steps = [], 0
            rows.append(row)
        self.infos, self.info_steps, self.checked, self.logged = [], [], 0, 0
        if self.group:
            plot_seed_curves([r.run_dir / rundir.METRICS for r in self.runs],
                             [f"seed {r.config.seed}" for r in self.runs], self.run_dir / rundir.CURVE, self.title)
        return rows

    def log_updates(self) -> None:
        """The means of the updates' statistics since the last time (or evaluation), written to
        each seed's TensorBoard (and W&B) under `updates/` at the current step."""
        self.check_finite()
        host = self._host_updates()[self.logged:]  # one dict per update, each value (S, ...)
        self.logged += len(host)
        stats = _mean_infos(host)
        for i, run in enumerate(self.runs):
            run.logger.scalars(self.step_count, {k: v[i] for k, v in stats.items() if k != "finite"})

    # -- the whole run -----------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training wall time in seconds: this process's since `run()` began, after what the
        checkpoint it resumed from had counted (so that `wall_time_s` goes on across resumes)."""
        before, start = self._clock
        return before + time.perf_counter() - start

    def run(self) -> Path:
        cfg = self.config
        previous = {}
        if threading.current_thread() is threading.main_thread():  # (a Ray task may run elsewhere)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in signals.STOP_SIGNALS}
        window_start = time.perf_counter()
        self._clock = (self.runs[0].loop.wall_seconds, window_start)
        for run in self.runs:  # a window's rate counts this process's steps over this process's time
            run.loop.window_steps = 0
        bar = cfg.progress and not cfg.quiet and sys.stdout.isatty()
        lines = not cfg.quiet and not bar  # (a cluster job, `| tee`, --no-progress: one line per evaluation)
        try:
            pending = signals.take_pending()
            if pending is not None:  # interrupted while starting: stop before the first step
                if pending != signal.SIGINT:
                    self.stop_signal = pending
                raise KeyboardInterrupt
            with _progress(bar) as progress:
                task = progress.add_task(self.title, total=cfg.total_steps, completed=self.step_count, sps=0.0,
                                         ret="—")
                resumed_before_evaluation = any(run.loop.pending_evaluation for run in self.runs)
                while resumed_before_evaluation or not self.finished:
                    resuming, resumed_before_evaluation = resumed_before_evaluation, False
                    if not resuming:  # (resumed before this step's evaluation: the step itself is done)
                        self.step()
                    step = self.step_count
                    rewrite = False  # the newest checkpoint was taken before this step's evaluation
                    if step % cfg.log_every == 0 and step > cfg.random_steps and cfg.updates_per_step and not resuming:
                        self.log_updates()
                    if step % cfg.eval_every == 0 or step == cfg.total_steps:
                        jax.block_until_ready(self.state)
                        if not self.checkpointed:  # before the first evaluation: a checkpoint to resume from
                            self.save(pending_evaluation=True)
                        try:
                            # (resumed before it, the window's training time is another process's: unknown)
                            rows = self.evaluate_and_log(math.nan if resuming else time.perf_counter() - window_start,
                                                         self.elapsed())
                        except RolloutStopped:  # a signal during the evaluation: a resumed run does it first
                            if not self.runs[0].loop.pending_evaluation:
                                self.save(pending_evaluation=True)  # (its evaluation envs as they were before it)
                            name = signal.Signals(self.stop_signal).name
                            print(f"{name} during the evaluation at step {step}: checkpoint written; resume with: "
                                  f"iapo train --resume {self.run_dir}")
                            break
                        # a checkpoint marked as taken before this evaluation would make a resumed run
                        # evaluate again, writing this step's rows twice: it is written again below
                        rewrite = self.runs[0].loop.pending_evaluation
                        for run in self.runs:
                            run.loop.pending_evaluation = False
                        if self.on_evaluation is not None:
                            self.on_evaluation(rows)
                        ret = np.mean([r["eval_return_mean"] for r in rows])
                        progress.update(task, sps=rows[0]["env_steps_per_s"], ret=f"{ret:.1f}")
                        if lines:
                            print(self.evaluation_line(rows), flush=True)
                        if self.reached_stop_return(rows) and step < cfg.total_steps:
                            for run in self.runs:
                                run.loop.stopped = True
                            line = (f"{self.title}: every seed's return reached --stop-return {cfg.stop_return:g} "
                                    f"at step {step}: the run ends here")
                            if lines:
                                print(line, flush=True)
                            elif bar:
                                progress.console.print(line)
                        window_start = time.perf_counter()
                    end = step == cfg.total_steps or self.runs[0].loop.stopped
                    if cfg.snapshot_every and (step % cfg.snapshot_every == 0 or end):
                        self.save_snapshots()
                    saved = step % cfg.checkpoint_every == 0 or end or rewrite
                    if saved:
                        self.save()
                    if step % 100 == 0 or end:
                        progress.update(task, completed=step)
                    if self.stop_signal is not None:
                        if not saved:
                            self.save()
                        name = signal.Signals(self.stop_signal).name
                        print(f"{name} at step {step}: checkpoint written; resume with: iapo train --resume {self.run_dir}")
                        break
        except BaseException:
            self.close(quiet=True)  # a failure while closing must not hide the one that stopped the run
            raise
        else:
            self.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.wall_seconds = self.elapsed()
        return self.run_dir

    def evaluation_line(self, rows: list[dict]) -> str:
        """One plain line for an evaluation: step, return (mean +- std over the episodes of one
        seed, or mean +- sample std over the seeds' means), env-steps/s and the time left at that rate."""
        step, total = rows[0]["step"], self.config.total_steps
        if len(rows) == 1:
            mean, std, over = rows[0]["eval_return_mean"], rows[0]["eval_return_std"], "episodes"
        else:
            means = [r["eval_return_mean"] for r in rows]
            mean, std, over = float(np.mean(means)), float(seed_std(means)), f"{len(rows)} seeds"
        rate = rows[0]["env_steps_per_s"]  # (environment steps; `step` counts actions of --action-repeat of them)
        eta = _format_time((total - step) * self.config.action_repeat / rate) if rate > 0 and step < total else "0:00:00"
        return (f"{self.title}  step {step}/{total}  return {mean:.1f} ± {std:.1f} ({over})  "
                f"{rate:.0f} env-steps/s  ETA {eta}")

    def summary(self) -> str:
        """One line for the end of a run: final and best evaluation return (mean over seeds),
        steps, wall time of this process, run directory."""
        curves = [read_metrics(run.run_dir / rundir.METRICS) for run in self.runs]
        if not all(curves) or not all(len(c.get("step", ())) for c in curves):
            return f"{self.title}: no evaluation yet; run written to {self.run_dir}"
        n = min(len(c["step"]) for c in curves)
        mean = np.mean([c["eval_return_mean"][:n] for c in curves], axis=0)  # (evaluations,)
        best = int(np.argmax(mean))
        return (f"{self.title}: final return {mean[-1]:.1f} at step {int(curves[0]['step'][n - 1])}, best "
                f"{mean[best]:.1f} at step {int(curves[0]['step'][best])}; {self.step_count} steps, "
                f"{_format_time(getattr(self, 'wall_seconds', 0.0))} wall time; run written to {self.run_dir} "
                f"(learning curve: {self.run_dir / rundir.CURVE})")

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum

    def close(self, quiet: bool = False) -> None:
        errors = []
        for run in self.runs:
            try:
                run.close(quiet)
            except IapoError as exc:
                errors.append(exc)
        rundir.unlock(self.run_dir)
        if errors:
            raise errors[0]


def _first_nonfinite(info: dict) -> str:
    for name in ("critic_loss", "policy_loss", "alpha", "q_mean", "kl"):
        if not np.isfinite(float(info[name])):
            return name.replace("_", " ")
    return "network parameter"


def resume(run_dir: Path, progress: bool = True, quiet: bool = False) -> Path:
    """Continue the run in `run_dir` from its newest usable checkpoint."""
    config = dataclasses.replace(load_run_config(Path(run_dir)), run_dir=str(run_dir), progress=progress, quiet=quiet)
    return Trainer(config, resume=True).run()


# How a resumed run is shown and logged, which --resume may change (what it computes it may not).
RESUME_FLAGS = ("progress", "quiet", "log_every", "wandb_project")


def check_resume(config: TrainConfig) -> None:
    """--resume takes every setting from the run's config.json: refuse other settings given with it."""
    defaults = TrainConfig()
    given = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("resume", "algo", *RESUME_FLAGS)
             and getattr(config, f.name) != getattr(defaults, f.name)]
    given += [f.name for f in dataclasses.fields(config.algo)
              if getattr(config.algo, f.name) != getattr(defaults.algo, f.name)]
    refuse_with_resume(config, given)


def refuse_with_resume(config: TrainConfig, given: list[str]) -> None:
    """The one-line error for setting fields `given` with --resume (none: nothing to refuse)."""
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"--resume takes every setting from {Path(config.resume) / rundir.CONFIG}; drop {flags} "
                          "(other settings make a new run: start one with --run-dir)")


def make_trainer(config: TrainConfig, on_evaluation=None) -> Trainer:
    """A Trainer for a new run as `config` says, or, with `config.resume`, for the run it names,
    continued with its own config.json (no setting but `RESUME_FLAGS` may be given with it)."""
    if not config.resume:
        return Trainer(config, on_evaluation=on_evaluation)
    check_resume(config)
    defaults = TrainConfig()
    changed = {name: getattr(config, name) for name in RESUME_FLAGS
               if getattr(config, name) != getattr(defaults, name) or name in ("progress", "quiet")}
    resumed = dataclasses.replace(load_run_config(Path(config.resume)), run_dir=config.resume, **changed)
    return Trainer(resumed, resume=True, on_evaluation=on_evaluation)


def train(config: TrainConfig) -> int:
    """`iapo train`: a new run as `config` says, or, with `config.resume`, the run it names
    continued; ends with a summary line (unless `quiet`). Returns the exit status: 0, or 128 +
    the signal that stopped it (at a checkpoint)."""
    trainer = make_trainer(config)
    trainer.run()
    if not config.quiet:
        print(trainer.summary(), flush=True)
    return 0 if trainer.stop_signal is None else signals.exit_status(trainer.stop_signal)
