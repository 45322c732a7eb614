"""Learning curves and results tables over runs (`iapo plot`), as in the paper's Fig. 5.

Runs are found under the given directories (a single run, a group of seeds, a sweep), grouped
by environment and by their configuration apart from the seed, and summarised per group over
seeds at the evaluation steps every seed has reached:

- curves: mean +- sample std over seeds (ddof = 1; 0 for a single seed), or with `iqm`, the interquartile mean with
  a percentile-bootstrap confidence interval over seeds, computed by rliable (the `rliable` extra);
- table: final return (mean +- sample std over seeds at the last common step, each seed's, and with
  `iqm` their IQM with its bootstrap interval), area under the mean curve (trapezoid over steps,
  return x steps) and that area over the steps spanned (the mean return over training), the first
  step at which the mean curve reaches a threshold, and at which each seed's curve does, the
  training wall time to the last common step (mean over the seeds' runs), and the CPUs (or
  accelerators) the seeds trained on, from their machine.json, without which a wall time says little;
  with `against`, each setting's Welch's t-test against a reference setting of its environment, at
  the last step both have evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from iapo import machine
from iapo.config import at_least_one
from iapo.errors import ConfigError, IapoError
from iapo.atomic import write_csv_atomic, write_text_atomic
from iapo.logger import read_metrics
from iapo.figures import new_figure, save_figure, seed_std, steps_axis
from iapo.rundir import CONFIG, METRICS
from iapo.saved import Setting, settings_of


@dataclasses.dataclass(frozen=True)
class Config:
    """Learning curves over seeds (Fig. 5) and a results table from run directories, groups of
    seeds or sweeps: one panel per environment, one line per agent or setting. Writes the figure,
    its arrays (<out>_curves.csv) and the table (<out>.md, <out>.csv)."""

    dirs: tyro.conf.Positional[tuple[str, ...]]
    """Run, seed-group or sweep directories (searched for runs)."""

    out: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """The figure (.png, .pdf or .svg); unset means DIR/results.png for one DIR, else results.png."""

    iqm: bool = False
    """Plot the interquartile mean over seeds with a bootstrap 95% interval instead of mean +- std
    (computed by rliable: `pip install 'iapo[rliable]'`)."""

    bootstrap: int = 2000
    """Bootstrap resamples of the IQM's interval."""

    threshold: tuple[str, ...] = ()
    """Return thresholds for 'steps to threshold': VALUE for every env, or ENV=VALUE; unset uses
    each env's registered reward_threshold."""

    max_step: Annotated[int | None, tyro.conf.arg(metavar="STEP")] = None
    """Only the evaluations up to this step (to compare runs of different budgets at one step)."""

    x: Literal["steps", "wall-time"] = "steps"
    """The horizontal axis: environment steps (a run's steps times its --action-repeat), or
    training wall time in hours (each run's
    `wall_time_s`, which goes on across resumes; mean over a group's seeds), for agents whose
    steps cost different amounts of time."""

    against: Annotated[str | None, tyro.conf.arg(metavar="LABEL")] = None
    """A setting to test the others against, in each environment: the one whose label is this
    text, or else contains it (e.g. `direct`). Each other setting's row gets Welch's t-test of its
    seeds' returns against that setting's seeds' at the last step both have evaluated (a run still
    training is compared at its last evaluation)."""

    def validate(self) -> None:
        at_least_one(self, "bootstrap")
        if self.against is not None and not self.against.strip():
            raise ConfigError("--against must name a setting (its label or part of it), got an empty text")
        if not self.dirs:
            raise ConfigError("iapo plot needs at least one directory")
        if self.max_step is not None:
            at_least_one(self, "max_step")


def plot(cfg: Config) -> tuple[Path, str]:
    """`iapo plot`: the figure and its tables; returns (figure path, Markdown table)."""
    cfg.validate()
    out = Path(cfg.out) if cfg.out else (Path(cfg.dirs[0]) if len(cfg.dirs) == 1 else Path(".")) / "results.png"
    return plot_runs([Path(d) for d in cfg.dirs], out, cfg.iqm, cfg.threshold, cfg.bootstrap, cfg.max_step, cfg.x,
                     cfg.against)


@dataclasses.dataclass
class Group(Setting):
    """A setting's seeds with their evaluation curves."""
    steps: np.ndarray | None = None  # (T,) the evaluation steps every seed has reached
    returns: np.ndarray | None = None  # (S, T) evaluation return of each seed
    wall: np.ndarray | None = None  # (S, T) each seed's training wall time in seconds at those steps (NaN: not logged)


def find_runs(dirs: list[Path]) -> list[Path]:
    """Every run directory (one holding metrics.csv and config.json) at or under `dirs`."""
    runs: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise IapoError(f"{d} is not a directory")
        found = sorted(p.parent for p in d.rglob(METRICS) if (p.parent / CONFIG).exists())
        if not found:
            raise IapoError(f"{d} holds no runs (no metrics.csv with a config.json under it)")
        runs += [r for r in found if r not in runs]
    return runs


def group_runs(runs: list[Path], max_step: int | None = None) -> list[Group]:
    """Runs with the same configuration apart from the seed form a group (`saved.settings_of`,
    which also labels them); each group gets its seeds' evaluation curves."""
    result = [Group(**dataclasses.asdict(s)) for s in settings_of(runs)]
    for g in result:
        _align(g, max_step)
    return sorted(result, key=lambda g: (g.env, g.label))


def _align(group: Group, max_step: int | None = None) -> None:
    """The evaluation returns of the group's seeds at the steps all of them logged (up to
    `max_step`), in environment steps: a run's steps times its `action_repeat`."""
    repeat = group.identity.get("action_repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise IapoError(f"{group.runs[0] / CONFIG}: action_repeat = {repeat!r} is not a whole number >= 1")
    curves = []
    for run in group.runs:
        try:
            m = read_metrics(run / METRICS)
        except (OSError, ValueError, KeyError) as exc:
            raise IapoError(f"{run / METRICS} is unreadable: {exc}") from None
        if not m or "step" not in m or "eval_return_mean" not in m:
            curves.append({})
            continue
        wall = m.get("wall_time_s", np.full(len(m["step"]), np.nan))
        steps = (m["step"].astype(np.int64) * repeat).tolist()
        curves.append({step: (ret, w) for step, ret, w in zip(steps, m["eval_return_mean"], wall)})
    common = sorted(set.intersection(*[set(c) for c in curves]))  # (a group has at least one run)
    common = [step for step in common if max_step is None or step <= max_step]
    group.steps = np.array(common, dtype=np.int64)
    values = np.array([[c[s] for s in common] for c in curves], dtype=np.float64).reshape(len(curves), len(common), 2)
    group.returns, group.wall = values[..., 0], values[..., 1]


# -- statistics ----------------------------------------------------------------------------------
def iqm_interval(returns: np.ndarray, reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interquartile mean over seeds at every step of `returns` (S, T), with rliable's
    percentile-bootstrap interval over seeds: (iqm, low, high), each (T,). Needs the `rliable`
    extra."""
    try:
        from rliable import library
        from scipy import stats  # (a dependency of rliable)
    except ImportError:
        raise IapoError("--iqm needs rliable: pip install 'iapo[rliable]'") from None

    def per_step(scores):  # scores (S, 1 task, T) -> IQM at each step (T,), as rliable's aggregate_iqm
        return stats.trim_mean(scores[:, 0, :], proportiontocut=0.25, axis=0)

    with warnings.catch_warnings():  # (arch's notice about RandomState, which rliable passes)
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = library.get_interval_estimates(
            {"runs": returns[:, None, :]}, per_step, reps=reps, confidence_interval_size=confidence,
            random_state=np.random.RandomState(seed))
    return point["runs"], interval["runs"][0], interval["runs"][1]


def summarize(group: Group, threshold: float | None, final_iqm: tuple[float, float, float] | None = None) -> dict:
    """The group's row of the results table; `final_iqm` is (IQM, low, high) at the last common
    step, as the curve drew it (`iapo plot --iqm`)."""
    steps, returns = group.steps, group.returns
    shown = steps is not None and len(steps) > 0
    # (the sessions that trained up to the last step shown: `steps` counts environment steps)
    before = int(steps[-1]) // group.identity.get("action_repeat", 1) if shown else None
    row = {"env": group.env, "label": group.label, "seeds": len(group.runs), "final_step": None,
           "final_mean": math.nan, "final_std": math.nan, "seed_finals": None, "final_iqm": math.nan,
           "final_iqm_low": math.nan, "final_iqm_high": math.nan, "auc": math.nan, "mean_over_training": math.nan,
           "threshold": threshold, "steps_to_threshold": None, "seed_steps_to_threshold": None,
           "final_wall_s": math.nan, "trained_on": trained_on(group.runs, before), "against": None,
           "against_step": None, "against_p": math.nan}
    if not shown:
        return row
    mean = returns.mean(axis=0)
    final = returns[:, -1]  # (S,)
    row.update(final_step=int(steps[-1]), final_mean=float(final.mean()), final_std=float(seed_std(final)),
               seed_finals=[(seed, float(value)) for seed, value in zip(group.seeds, final)])
    if final_iqm is not None:
        row.update(final_iqm=float(final_iqm[0]), final_iqm_low=float(final_iqm[1]), final_iqm_high=float(final_iqm[2]))
    wall = group.wall[:, -1]
    if not np.isnan(wall).any():  # (runs that predate wall_time_s have none)
        row["final_wall_s"] = float(wall.mean())
    if len(steps) > 1:
        auc = float(np.sum((mean[1:] + mean[:-1]) / 2 * np.diff(steps)))
        row.update(auc=auc, mean_over_training=auc / float(steps[-1] - steps[0]))
    if threshold is not None:

        def first(curve):  # the first evaluation step at or above the threshold; None if none is
            reached = np.flatnonzero(curve >= threshold)
            return int(steps[reached[0]]) if len(reached) else None

        row["steps_to_threshold"] = first(mean)
        row["seed_steps_to_threshold"] = [(seed, first(curve)) for seed, curve in zip(group.seeds, returns)]
    return row


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t-test (unequal variances) of two samples' means: its two-sided p; NaN with fewer
    than two values on a side, or none of spread on both."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    import scipy.stats  # (a dependency of JAX)

    return float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)


def compare_against(groups: list[Group], against: str) -> dict[tuple[str, str], tuple[str, int | None, float]]:
    """(env, label) -> (the reference's label, the step compared, Welch's p) for every group of an
    env that has a reference: the group whose label is `against`, or else the one that contains it;
    the reference itself maps to (its label, None, NaN). Errors when `against` names two groups of
    an env, or a group of none."""
    result = {}
    for env in sorted({g.env for g in groups}):
        mine = [g for g in groups if g.env == env]
        refs = [g for g in mine if g.label == against] or [g for g in mine if against in g.label]
        if len(refs) > 1:
            raise ConfigError(f"--against {against!r} matches {len(refs)} settings of {env} ("
                              + "; ".join(g.label for g in refs) + "): give text that matches one")
        if not refs:
            continue
        ref = refs[0]
        result[env, ref.label] = (ref.label, None, math.nan)
        for g in mine:
            if g is ref:
                continue
            common = np.intersect1d(g.steps, ref.steps)
            if not len(common):
                result[env, g.label] = (ref.label, None, math.nan)
                continue
            step = common[-1]
            result[env, g.label] = (ref.label, int(step), welch_p(g.returns[:, g.steps == step][:, 0],
                                                                  ref.returns[:, ref.steps == step][:, 0]))
    if not result:
        labels = sorted({g.label for g in groups})
        raise ConfigError(f"--against {against!r} matches no setting; the settings are: " + "; ".join(labels))
    return result


def thresholds_for(envs: list[str], given: tuple[str, ...]) -> dict[str, float | None]:
    """Each env's threshold: `ENV=VALUE` or a bare VALUE for all from `given`, otherwise the
    env's registered `reward_threshold` (None if it has none)."""
    import gymnasium as gym

    default: float | None = None
    chosen: dict[str, float] = {}
    for item in given:
        env, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item!r}: expected VALUE or ENV=VALUE") from None
        if sep:
            chosen[env] = number
        else:
            default = number
    result = {}
    for env in envs:
        if env in chosen:
            result[env] = chosen[env]
        elif default is not None:
            result[env] = default
        else:
            try:
                result[env] = gym.spec(env).reward_threshold
            except gym.error.Error:
                result[env] = None
    return result


# -- outputs -------------------------------------------------------------------------------------
TABLE_COLUMNS = ("env", "label", "seeds", "final_step", "final_mean", "final_std", "seed_finals", "final_iqm",
                 "final_iqm_low", "final_iqm_high", "auc", "mean_over_training", "threshold", "steps_to_threshold",
                 "seed_steps_to_threshold", "final_wall_s", "trained_on", "against", "against_step", "against_p")


def trained_on(runs: list[Path], before: int | None = None) -> list[str]:
    """The machines the runs trained on (each start and resume, from machine.json; `iapo.machine`):
    the CPU, or for an accelerator backend its devices, in order of first use; with `before`, only
    the sessions that started before that step (a resume at or after it trained none of the steps
    before it); [] for runs of a version that did not record them."""
    names: list[str] = []
    for run in runs:
        try:
            sessions = machine.read(run)
        except ValueError:
            continue
        for s in sessions:
            if before is not None and isinstance(s.get("from_step"), int) and s["from_step"] >= before:
                continue
            devices = s.get("devices") or []
            name = str(s.get("cpu")) if s.get("backend", "cpu") == "cpu" else " + ".join(map(str, devices))
            if name not in names:
                names.append(name)
    return names


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list) and all(isinstance(v, tuple) for v in value):
        # (seed, steps to threshold or return) pairs, a pair per run (two runs may share a seed):
        # "0:3000 1:2000 2:-" ("-": not reached)
        return " ".join(f"{seed}:{'-' if v is None else _cell(v) or 'nan'}" for seed, v in value)
    if isinstance(value, list):  # machine names
        return "; ".join(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_table(rows: list[dict], csv_path: Path, md_path: Path, with_iqm: bool = False,
                against: str | None = None) -> str:
    """The results table as CSV (every column) and Markdown, with the IQM column if `with_iqm` and
    Welch's p against the reference setting if `against`; returns the Markdown."""
    write_csv_atomic(csv_path, list(TABLE_COLUMNS), [[_cell(row[c]) for c in TABLE_COLUMNS] for row in rows])
    lines = ["| env | agent / setting | seeds | final return (mean ± sample std) | at step | each seed's final "
             + ("| final IQM [95% CI] " if with_iqm else "")
             + (f"| Welch's p against `{against}` (at step) " if against else "") + "| AUC (return × steps) "
             "| mean return over training | steps to threshold: mean curve (each seed) | training wall time (s) | trained on |",
             "|" + " --- |" * (11 + with_iqm + bool(against))]
    for row in rows:
        final = "—" if math.isnan(row["final_mean"]) else f"{row['final_mean']:.1f} ± {row['final_std']:.1f}"
        finals = ", ".join(f"{v:.1f}" for _, v in row["seed_finals"] or []) or "—"
        iqm = ("—" if math.isnan(row["final_iqm"]) else
               f"{row['final_iqm']:.1f} [{row['final_iqm_low']:.1f}, {row['final_iqm_high']:.1f}]")
        wall = "—" if math.isnan(row["final_wall_s"]) else f"{row['final_wall_s']:.0f}"
        auc = "—" if math.isnan(row["auc"]) else f"{row['auc']:.4g}"
        over = "—" if math.isnan(row["mean_over_training"]) else f"{row['mean_over_training']:.1f}"
        if row["threshold"] is None:
            reach = "—"
        else:
            where = "not reached" if row["steps_to_threshold"] is None else str(row["steps_to_threshold"])
            each = ", ".join("–" if step is None else str(step) for _, step in (row["seed_steps_to_threshold"] or []))
            reach = f"{where} (≥ {row['threshold']:g}; {each})"
        if row["against"] is None:
            test = "—"
        elif row["against"] == row["label"]:
            test = "(the reference)"
        elif row["against_step"] is None:
            test = "no common step"
        else:
            test = ("—" if math.isnan(row["against_p"]) else f"{row['against_p']:.2g}") + f" ({row['against_step']})"
        lines.append(f"| {row['env']} | {row['label']} | {row['seeds']} | {final} | {_cell(row['final_step']) or '—'} "
                     f"| {finals} " + (f"| {iqm} " if with_iqm else "") + (f"| {test} " if against else "")
                     + f"| {auc} | {over} | {reach} | {wall} "
                     f"| {'; '.join(row['trained_on']) or '—'} |")
    md = "\n".join(lines) + "\n"
    write_text_atomic(md_path, md)
    return md


def plot_runs(dirs: list[Path], out: Path, use_iqm: bool = False, thresholds: tuple[str, ...] = (),
         reps: int = 2000, max_step: int | None = None, x: str = "steps",
         against: str | None = None) -> tuple[Path, str]:
    """Curves (one panel per env, one line per group), the table beside them; returns
    (figure path, Markdown table). The plotted arrays are in `<out stem>_curves.csv`."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"--out {out} must end in .png, .pdf or .svg")
    groups = group_runs(find_runs(dirs), max_step)
    envs = sorted({g.env for g in groups})
    limits = thresholds_for(envs, thresholds)
    tests = compare_against(groups, against) if against else {}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IapoError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    curve_rows, final_iqms = [], {}  # (final_iqms: the group's label and env -> its curve's last IQM and interval)
    for ax, env in zip(axes.flat, envs):
        for i, g in enumerate([g for g in groups if g.env == env]):
            if not len(g.steps):
                continue
            mean, std = g.returns.mean(axis=0), seed_std(g.returns)
            hours = g.wall.mean(axis=0) / 3600
            if x == "wall-time" and np.isnan(hours).any():
                raise IapoError(f"--x wall-time: {g.runs[0]}'s metrics.csv has no wall_time_s at some evaluations")
            if use_iqm:
                center, low, high = iqm_interval(g.returns, reps)
                final_iqms[g.env, g.label] = (center[-1], low[-1], high[-1])
            else:
                center, low, high = mean, mean - std, mean + std
            where = hours if x == "wall-time" else g.steps
            # (a curve of one evaluation so far, a run just started, is a point with its interval as a bar)
            ax.plot(where, center, color=f"C{i}", lw=1.8, marker="o" if len(where) == 1 else None,
                    label=f"{g.label} ({len(g.runs)} seeds)")
            if len(where) == 1:
                ax.errorbar(where, center, yerr=[center - low, high - center], color=f"C{i}", capsize=4)
            else:
                ax.fill_between(where, low, high, color=f"C{i}", alpha=0.2)
            for j, step in enumerate(g.steps):
                curve_rows.append([env, g.label, len(g.runs), int(step), hours[j] * 3600, mean[j], std[j], center[j],
                                   low[j], high[j]])
        if limits[env] is not None and thresholds:  # drawn when asked for; a registered one may be far off the curves
            ax.axhline(limits[env], color="gray", ls=":", lw=1, label=f"threshold {limits[env]:g}")
        ax.set_title(env)
        if x == "wall-time":
            ax.set_xlabel("training wall time (hours)")
        else:
            steps_axis(ax)
        ax.set_ylabel("evaluation return" + (" (IQM, 95% CI)" if use_iqm else " (mean ± sample std over seeds)"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    save_figure(fig, out)
    curves = out.with_name(out.stem + "_curves.csv")
    write_csv_atomic(curves, ["env", "label", "seeds", "step", "wall_time_s", "mean", "std", "center", "low", "high"],
                     [[_cell(v) if isinstance(v, float) else v for v in row] for row in curve_rows])
    rows = [summarize(g, limits[g.env], final_iqms.get((g.env, g.label))) for g in groups]
    for row in rows:
        if (row["env"], row["label"]) in tests:
            row["against"], row["against_step"], row["against_p"] = tests[row["env"], row["label"]]
    md = write_table(rows, out.with_suffix(".csv"), out.with_suffix(".md"), use_iqm, against)
    return out, md
