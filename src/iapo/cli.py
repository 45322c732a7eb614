"""The `iapo` command line: `iapo train ...`, `iapo evaluate RUN_DIR ...`."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Literal

import tyro

from iapo import signals
from iapo.config import TrainConfig, train_config_from_dict
from iapo.errors import ConfigError, IapoError


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a saved agent: mean +- std return of the deterministic policy."""

    run_dir: tyro.conf.Positional[str]
    """Run directory written by `iapo train`."""

    episodes: int = 10
    """Number of evaluation episodes."""

    iterations: int | None = None
    """Iterations of the iterative optimizer when acting; unset means the run's own setting."""

    seed: int = 12345
    """Seed of the evaluation environments."""

    video: str | None = None
    """Also record one episode, rendered offscreen, to this .mp4 file."""

    step: int | None = None
    """Evaluate the agent of this step (a snapshot or checkpoint) instead of the newest."""


def _at_least_one(cfg, *names: str) -> None:
    """A one-line error for the first of the fields `names` of `cfg` below 1."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")


@dataclasses.dataclass(frozen=True)
class GapConfig:
    """Amortization gap over training (Fig. 6): at every snapshot of each run, for states the
    agent visits, gradient ascent on J from the agent's lambda until J stops improving; the
    gap J(lambda*) - J(lambda_agent), mean +- std over states. Writes gap.csv, gap.json, gap.png."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run directories written by `iapo train` (direct and iterative runs plot together)."""

    out: str = "analysis/gap"
    """Folder for the figure and its numbers."""

    states: int = 100
    """States per snapshot, visited by that snapshot's agent."""

    extra_iterations: int = 0
    """For iterative runs, also the gap after this many more iterations than trained with."""

    lr: float = 1e-4
    """Step size of the ascent (reference: SGD, 1e-4)."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    """The ascent's optimizer."""

    max_steps: int = 5_000
    """Most ascent steps."""

    patience: int = 100
    """Stop the ascent once the mean estimated J has not improved for this many steps."""

    samples: int = 100
    """Action samples of the estimates of J(lambda*) and J(lambda_agent)."""

    seed: int = 0
    """Seed of the states' rollouts and of the estimates."""


def run_gap(cfg: GapConfig) -> str:
    from iapo.analysis import gap

    _at_least_one(cfg, "states", "max_steps", "patience", "samples")
    if cfg.extra_iterations < 0:
        raise ConfigError(f"--extra-iterations must be >= 0, got {cfg.extra_iterations}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"--lr must be a finite number > 0, got {cfg.lr}")
    figure = gap.run([Path(d) for d in cfg.run_dirs], Path(cfg.out), cfg.extra_iterations, states=cfg.states,
                     samples=cfg.samples, seed=cfg.seed, lr=cfg.lr, optimizer=cfg.optimizer,
                     max_steps=cfg.max_steps, patience=cfg.patience)
    return f"amortization gap written to {figure} (numbers: {figure.with_suffix('.csv')})"


@dataclasses.dataclass(frozen=True)
class OptimizersConfig:
    """Optimizer efficiency (Fig. 4c): improvement of J against iterations for the run's iterative
    optimizer, Adam on lambda and CEM, from the same lambda_0 at the same states, with their
    wall-clock cost per iteration. Writes optimizers.csv, optimizers.json, optimizers.png."""

    run_dir: tyro.conf.Positional[str]
    """Run directory of an iterative agent."""

    out: str = "analysis/optimizers"
    """Folder for the figure and its numbers."""

    step: int | None = None
    """The snapshot (or checkpoint) to analyse; unset means the newest checkpoint."""

    states: int = 100
    """States, visited by the agent."""

    iterations: int = 250
    """Iterations of each optimizer."""

    adam_lr: float = 1e-2
    """Adam's step size (reference 1e-2)."""

    cem_samples: int = 100
    """CEM's samples per iteration (reference 100)."""

    cem_elites: int = 10
    """CEM's elites refitted to (reference 10)."""

    cem_smoothing: float = 0.01
    """CEM's step toward the refit (reference 0.01)."""

    seed: int = 0
    """Seed of the states' rollouts and of the samples."""


def run_optimizers(cfg: OptimizersConfig) -> str:
    from iapo.analysis import optimizers

    _at_least_one(cfg, "states", "iterations", "cem_samples", "cem_elites")
    if cfg.cem_elites > cfg.cem_samples:
        raise ConfigError(f"--cem-elites ({cfg.cem_elites}) must not exceed --cem-samples ({cfg.cem_samples})")
    if not (cfg.adam_lr > 0 and math.isfinite(cfg.adam_lr)):
        raise ConfigError(f"--adam-lr must be a finite number > 0, got {cfg.adam_lr}")
    if not 0 < cfg.cem_smoothing <= 1:
        raise ConfigError(f"--cem-smoothing must be in (0, 1], got {cfg.cem_smoothing}")
    figure = optimizers.run(Path(cfg.run_dir), Path(cfg.out), cfg.step, cfg.states, cfg.iterations, cfg.adam_lr,
                            cfg.cem_samples, cfg.cem_elites, cfg.cem_smoothing, cfg.seed)
    return f"optimizer efficiency written to {figure} (numbers: {figure.with_suffix('.json')})"


@dataclasses.dataclass(frozen=True)
class IterationsConfig:
    """Evaluation beyond the training horizon: an iterative agent's return and objective J when it
    acts with 1 .. --max-iterations iterations, more than it was trained with included. Writes
    iterations.csv, iterations.json, iterations.png."""

    run_dir: tyro.conf.Positional[str]
    """Run directory of an iterative agent."""

    out: str = "analysis/iterations"
    """Folder for the figure and its numbers."""

    max_iterations: int = 10
    """Evaluate with 1 .. this many iterations."""

    episodes: int = 5
    """Evaluation episodes per iteration count."""

    states: int = 100
    """States, visited by the agent, at which J is estimated."""

    step: int | None = None
    """The snapshot (or checkpoint) to analyse; unset means the newest checkpoint."""

    seed: int = 12345
    """Seed of the evaluation environments and of the states' rollouts."""


def run_iterations(cfg: IterationsConfig) -> str:
    from iapo.analysis import iterations

    _at_least_one(cfg, "max_iterations", "episodes", "states")
    figure = iterations.run(Path(cfg.run_dir), Path(cfg.out), cfg.max_iterations, cfg.episodes, cfg.states, cfg.step,
                            cfg.seed)
    return f"evaluation over iterations written to {figure} (numbers: {figure.with_suffix('.csv')})"


@dataclasses.dataclass(frozen=True)
class LandscapeConfig:
    """Objective landscape (Fig. 1, 19): J over a grid of two dimensions of the policy mean at one
    state visited by an iterative agent, with the iterative path, the gradient-ascent optimum and,
    with --direct, a direct agent's estimate. Writes landscape.json and landscape.png."""

    run_dir: tyro.conf.Positional[str]
    """Run directory of an iterative agent (its critics define J)."""

    out: str = "analysis/landscape"
    """Folder for the figure and its numbers."""

    state: int = 0
    """Which of the visited states (0 .. --states - 1)."""

    dims: tuple[int, int] = (0, 1)
    """The two action dimensions whose means span the grid."""

    direct: str | None = None
    """A direct run on the same environment whose estimate to mark."""

    grid_size: int = 41
    """Grid points per dimension."""

    extent: float = 3.0
    """The grid covers means in [-extent, extent] (before the tanh)."""

    samples: int = 100
    """Action samples per grid point (the same at every point)."""

    states: int = 100
    """States collected by the agent, to choose --state from."""

    step: int | None = None
    """The snapshot (or checkpoint) to analyse; unset means the newest checkpoint."""

    seed: int = 0
    """Seed of the states' rollouts and of the samples."""


def run_landscape(cfg: LandscapeConfig) -> str:
    from iapo.analysis import landscape

    _at_least_one(cfg, "grid_size", "samples", "states")
    if not (cfg.extent > 0 and math.isfinite(cfg.extent)):
        raise ConfigError(f"--extent must be a finite number > 0, got {cfg.extent}")
    figure = landscape.run(Path(cfg.run_dir), Path(cfg.out), cfg.state, tuple(cfg.dims),
                           None if cfg.direct is None else Path(cfg.direct), cfg.grid_size, cfg.extent, cfg.samples,
                           cfg.states, cfg.step, cfg.seed)
    return f"objective landscape written to {figure} (numbers: {figure.with_suffix('.json')})"


@dataclasses.dataclass(frozen=True)
class ModesConfig:
    """Multiple policy modes (Fig. 2, 7): several independent runs of an iterative agent's
    optimizer at each of many visited states; a histogram of the distances between the runs'
    mean actions, and for the state where they differ most, J over pairs of action dimensions and
    the runs' policy densities. Writes modes.json and modes.png."""

    run_dir: tyro.conf.Positional[str]
    """Run directory of an iterative agent."""

    out: str = "analysis/modes"
    """Folder for the figure and its numbers."""

    states: int = 100
    """States, visited by the agent."""

    runs: int = 10
    """Independent optimization runs per state (different random samples)."""

    init_spread: float = 0.0
    """Also perturb each run's initial mean by Gaussian noise of this scale (0: the fixed lambda_0)."""

    grid_size: int = 41
    """Grid points per dimension of the J projections."""

    extent: float = 3.0
    """The projections cover means in [-extent, extent] (before the tanh)."""

    samples: int = 100
    """Action samples per grid point."""

    step: int | None = None
    """The snapshot (or checkpoint) to analyse; unset means the newest checkpoint."""

    seed: int = 0
    """Seed of the states' rollouts and of the runs."""


def run_modes(cfg: ModesConfig) -> str:
    from iapo.analysis import modes

    _at_least_one(cfg, "states", "grid_size", "samples")
    if cfg.runs < 2:
        raise ConfigError(f"--runs must be >= 2, got {cfg.runs}")
    if not (cfg.init_spread >= 0 and math.isfinite(cfg.init_spread)):
        raise ConfigError(f"--init-spread must be a finite number >= 0, got {cfg.init_spread}")
    if not (cfg.extent > 0 and math.isfinite(cfg.extent)):
        raise ConfigError(f"--extent must be a finite number > 0, got {cfg.extent}")
    figure = modes.run(Path(cfg.run_dir), Path(cfg.out), cfg.states, cfg.runs, cfg.init_spread, cfg.grid_size,
                       cfg.extent, cfg.samples, cfg.step, cfg.seed)
    return f"policy modes written to {figure} (numbers: {figure.with_suffix('.json')})"


@dataclasses.dataclass(frozen=True)
class OverestimationConfig:
    """Value overestimation and policy change (Fig. 3), over snapshots: the critics' estimate
    Q(s, a) minus the discounted Monte Carlo soft return of the same action from the restored
    simulator state, and KL(pi_previous || pi) between successive snapshots. Compare runs with
    --pessimism 1 and 2.5. Writes overestimation.csv, .json and .png."""

    run_dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run directories written by `iapo train`."""

    out: str = "analysis/overestimation"
    """Folder for the figure and its numbers."""

    states: int = 50
    """Visited states per snapshot; their rollouts run side by side."""

    horizon: int = 1000
    """Steps of each Monte Carlo rollout (gamma^horizon is what is left out)."""

    seed: int = 0
    """Seed of the states' rollouts and of the policies' samples."""


def run_overestimation(cfg: OverestimationConfig) -> str:
    from iapo.analysis import overestimation

    _at_least_one(cfg, "states", "horizon")
    figure = overestimation.run([Path(d) for d in cfg.run_dirs], Path(cfg.out), cfg.states, cfg.horizon, cfg.seed)
    return f"value bias and policy change written to {figure} (numbers: {figure.with_suffix('.csv')})"


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Zero-shot transfer (Fig. 9): at every step both runs have a snapshot of, the policy
    optimizer of SOURCE (e.g. an iterative agent trained with the model-free value) acts, unchanged,
    with the objective of HOST (e.g. a model-based agent: its critics, temperature and model); its
    return beside HOST's own optimizer's, SOURCE's as trained and a DIRECT run's. With a
    model-free HOST, it is the generalization of an optimizer to another run's critics. Writes
    transfer.csv, transfer.json and transfer.png."""

    source: tyro.conf.Positional[str]
    """Run whose policy optimizer is transferred."""

    host: tyro.conf.Positional[str]
    """Run whose objective it acts with (same environment and policy network)."""

    direct: tyro.conf.Positional[str | None] = None
    """Optionally, a direct run evaluated at the same steps."""

    out: str = "analysis/transfer"
    """Folder for the figure and its numbers."""

    episodes: int = 5
    """Evaluation episodes per agent and step."""

    seed: int = 12345
    """Seed of the evaluation environments."""


def run_transfer(cfg: TransferConfig) -> str:
    from iapo.analysis import transfer

    _at_least_one(cfg, "episodes")
    figure = transfer.run(Path(cfg.source), Path(cfg.host), None if cfg.direct is None else Path(cfg.direct),
                          Path(cfg.out), cfg.episodes, cfg.seed)
    return f"zero-shot transfer written to {figure} (numbers: {figure.with_suffix('.csv')})"


ANALYSES = {
    "gap": (GapConfig, run_gap),
    "overestimation": (OverestimationConfig, run_overestimation),
    "modes": (ModesConfig, run_modes),
    "landscape": (LandscapeConfig, run_landscape),
    "optimizers": (OptimizersConfig, run_optimizers),
    "iterations": (IterationsConfig, run_iterations),
    "transfer": (TransferConfig, run_transfer),
}


@dataclasses.dataclass(frozen=True)
class PlotConfig:
    """Learning curves over seeds (Fig. 5) and a results table from run directories, groups of
    seeds or sweeps: one panel per environment, one line per agent or setting. Writes the figure,
    its arrays (<out>_curves.csv) and the table (<out>.md, <out>.csv)."""

    dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run, seed-group or sweep directories (searched for runs)."""

    out: str | None = None
    """The figure (.png, .pdf or .svg); unset means DIR/results.png for one DIR, else results.png."""

    iqm: bool = False
    """Plot the interquartile mean over seeds with a bootstrap 95% interval instead of mean +- std."""

    bootstrap: int = 2000
    """Bootstrap resamples of the IQM's interval."""

    threshold: tuple[str, ...] = ()
    """Return thresholds for 'steps to threshold': VALUE for every env, or ENV=VALUE; unset uses
    each env's registered reward_threshold."""

    max_step: int | None = None
    """Only the evaluations up to this step (to compare runs of different budgets at one step)."""


def run_plot(cfg: PlotConfig) -> str:
    from iapo import report

    _at_least_one(cfg, "bootstrap")
    if not cfg.dirs:
        raise ConfigError("iapo plot needs at least one directory")
    out = Path(cfg.out) if cfg.out else (Path(cfg.dirs[0]) if len(cfg.dirs) == 1 else Path(".")) / "results.png"
    if cfg.max_step is not None and cfg.max_step < 1:
        raise ConfigError(f"--max-step must be >= 1, got {cfg.max_step}")
    figure, table = report.plot([Path(d) for d in cfg.dirs], out, cfg.iqm, cfg.threshold, cfg.bootstrap,
                                cfg.max_step)
    return f"{table}\ncurves written to {figure} (table: {figure.with_suffix('.md')}, {figure.with_suffix('.csv')})"


def run_sweep(cfg) -> int:
    """Run the sweep; returns the exit code: 0 all finished, 130 stopped by a signal, 1 otherwise."""
    from iapo.sweep import Sweep

    sweep = Sweep(cfg)
    unfinished = sweep.run()
    if unfinished:
        print(f"{unfinished} trial(s) did not finish; rerun the same command to complete them", file=sys.stderr)
    return 0 if not unfinished else 130 if sweep.stop_requested else 1


def run_evaluate(cfg: EvaluateConfig) -> str:
    from iapo.evaluate import evaluate_run

    mean, std, n = evaluate_run(
        Path(cfg.run_dir), cfg.episodes, cfg.iterations, cfg.seed, None if cfg.video is None else Path(cfg.video),
        cfg.step,
    )
    return f"return {mean:.2f} ± {std:.2f} over {n} episodes"


def _check_common(cfg) -> None:
    """One-line errors for what every analysis and `evaluate` take: at least one run directory,
    a seed that seeds an environment, an --out that is not a file."""
    run_dirs = getattr(cfg, "run_dirs", None)
    if run_dirs == ():
        raise ConfigError("name at least one run directory")
    if run_dirs:  # one figure compares runs of one environment
        envs = {d: load_run_config(Path(d)).env for d in run_dirs}
        if len(set(envs.values())) > 1:
            shown = ", ".join(f"{d} ({env})" for d, env in envs.items())
            raise ConfigError(f"the runs are of different environments: {shown}; analyze one environment at a time")
    seed = getattr(cfg, "seed", 0)
    if not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be in [0, 2**32), got {seed}")
    out = getattr(cfg, "out", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one plain line, like the errors (not Python's `file:line: UserWarning` form)."""
    return f"iapo: warning: {message}\n"


def _check_resume(cfg: TrainConfig) -> None:
    """--resume takes every setting from the run's config.json: refuse other settings given with it."""
    defaults = TrainConfig()
    given = [f.name for f in dataclasses.fields(TrainConfig)
             if f.name not in ("resume", "progress", "algo") and getattr(cfg, f.name) != getattr(defaults, f.name)]
    given += [f.name for f in dataclasses.fields(cfg.algo) if getattr(cfg.algo, f.name) != getattr(defaults.algo, f.name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"--resume takes every setting from {Path(cfg.resume) / 'config.json'}; drop {flags} "
                          "(other settings make a new run: start one with --run-dir)")


def main(argv: list[str] | None = None) -> None:
    handlers = None
    if (sys.argv[1:] if argv is None else argv)[:1] == ["train"]:
        handlers = signals.defer_during_startup()  # until the training loop can stop cleanly
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        _main(argv)
    finally:
        warnings.formatwarning = previous
        if handlers:  # (for a caller that runs main in its own process)
            signals.restore(handlers)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["analyze"]:
            cfg = tyro.extras.subcommand_cli_from_dict(
                {name: config for name, (config, _) in ANALYSES.items()}, args=args[1:], prog="iapo analyze",
                description="The paper's analyses: each reads run directories and writes a figure and its numbers.",
                config=(tyro.conf.OmitArgPrefixes,),
            )
            _check_common(cfg)
            print(next(fn for config, fn in ANALYSES.values() if isinstance(cfg, config))(cfg))
            return
        from iapo.sweep import SweepConfig

        cfg = tyro.extras.subcommand_cli_from_dict(
            {"train": TrainConfig, "evaluate": EvaluateConfig, "sweep": SweepConfig, "plot": PlotConfig},
            args=args,
            prog="iapo",
            description="Iterative amortized policy optimization (Marino et al., NeurIPS 2021). "
            "The paper's analyses: `iapo analyze --help`.",
            config=(tyro.conf.OmitArgPrefixes,),
        )
        if isinstance(cfg, TrainConfig):
            from iapo.train import resume, train

            if cfg.resume:
                _check_resume(cfg)
            run_dir = resume(Path(cfg.resume), cfg.progress) if cfg.resume else train(cfg)
            print(f"run written to {run_dir}  (learning curve: {run_dir / 'learning_curve.png'})")
        elif isinstance(cfg, SweepConfig):
            code = run_sweep(cfg)
            if code:
                sys.exit(code)
        elif isinstance(cfg, PlotConfig):
            print(run_plot(cfg))
        else:
            _check_common(cfg)
            print(run_evaluate(cfg))
    except IapoError as exc:
        print(f"iapo: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("iapo: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 (only XLA's out-of-memory is translated; the rest propagate)
        if type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(exc):
            print("iapo: error: out of memory on the device (RESOURCE_EXHAUSTED): reduce --hidden-sizes, "
                  "--critic-hidden-sizes, --batch-size, --action-samples or --seeds", file=sys.stderr)
            sys.exit(2)
        raise


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise IapoError(f"{run_dir} is not a run directory")
    try:
        return train_config_from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise IapoError(f"{run_dir} holds no config.json: not a run directory") from None
    except IsADirectoryError:
        raise IapoError(f"{path} is a folder, not a run configuration") from None
    except OSError as exc:
        raise IapoError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{path} is not a valid run configuration: {exc}") from None


if __name__ == "__main__":
    main()
