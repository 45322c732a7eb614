"""iapo's runs beside published SAC learning curves, like with like where the protocols allow.

    python benchmarks/published_sac.py RUN_OR_SWEEP_DIR ... --out docs/results/sac-published \
        [--published docs/results/published-sac/sac-mujoco-v4.csv] [--steps 50000 100000]

The published file holds each seed's evaluation return at the steps where it was evaluated
(columns env or task, step, seed, return; docs/results/published-sac/README.md says where each comes
from: `sac-mujoco-v4.csv`, SimbaV2's Gym MuJoCo curves, and `sac-dmc-tdmpc2.csv`, TD-MPC2's dm_control
ones, whose tasks `dm_control/cheetah-run-v0` is matched with).
iapo's runs are grouped into settings as `iapo plot` groups them (same configuration apart from
the seed). A run's task is matched with the published curves of the same task name whatever the
version (`Hopper-v5` with `Hopper-v4`: `benchmarks/env_versions.py` tells which versions simulate
the same thing). Steps are environment steps on both sides (as `iapo plot` counts them, a run with
`--action-repeat N` has its steps multiplied by N; `--published-steps-per-step N` does the same to
the published file's, where its runs counted actions of N environment steps). At each of
`--steps`, each side's evaluation nearest to it (within 1% of the step) is compared:

- mean ± sample std over seeds, and each side's number of seeds;
- Welch's t-test of iapo's seeds against the published seeds;
- whether iapo's mean lies inside the published mean ± one std ("within their seed spread").

Curves of other SAC implementations written by `benchmarks/learning.py run` (its `--out` folder:
`<env>/<contender>/seed_*.csv`, e.g. Stable-Baselines3's SAC) join the comparison with
`--learning FOLDER ...`, one setting per contender and task.

Writes OUT.md (that table, with the command, the machine and the date) and OUT.png (one panel per
task: each iapo setting's mean ± std over seeds, and the published mean ± std at its evaluations).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import math
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np

from iapo.errors import IapoError
from iapo.figures import new_figure, save_figure, seed_std, steps_axis
from iapo.plot import find_runs, group_runs, welch_p

from update_cost import machine


@dataclasses.dataclass
class Curves:
    """One setting's evaluations: `returns` (seeds, evaluations) at `steps` (environment steps)."""

    env: str
    label: str  # in the table
    name: str  # in the figure's legend
    steps: np.ndarray
    returns: np.ndarray


def iapo_curves(groups) -> list[Curves]:
    """`iapo plot`'s groups of runs (one per configuration apart from the seed) as Curves."""
    return [Curves(g.env, g.label, f"iapo {g.label}", g.steps, g.returns)
            for g in groups if g.steps is not None and len(g.steps)]


def learning_curves(folder: Path) -> list[Curves]:
    """Each contender's seeds in a `benchmarks/learning.py run` folder (`<env>/<contender>/seed_*.csv`,
    where a namespaced env, `dm_control/cheetah-run-v0`, is two folders), at the evaluations every
    seed has."""
    from learning import LABELS

    if not folder.is_dir():
        raise ValueError(f"--learning {folder}: no such folder")
    by_dir: dict[Path, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(folder.rglob("seed_*.csv")):
        for _, row in _csv_rows(path, {"step": int, "eval_return_mean": float}):
            by_dir[path.parent][row["step"]][path.name] = row["eval_return_mean"]
    found = []
    for family_dir, by_step in sorted(by_dir.items()):
        env = family_dir.parent.relative_to(folder).as_posix()
        if env == ".":
            raise ValueError(f"--learning {folder}: seed files straight in it; expected <env>/<contender>/seed_*.csv")
        steps, returns = _aligned(by_step, f"{family_dir}")
        label = LABELS.get(family_dir.name, family_dir.name)
        found.append(Curves(env, label, label, steps, returns))
    if not found:
        raise ValueError(f"--learning {folder}: no <env>/<contender>/seed_*.csv of benchmarks/learning.py there")
    return found


def _csv_rows(path: Path, columns: dict):
    """(line, row) of a CSV file, each of `columns` converted by its type (int or float) and
    finite; a ValueError naming the file, the line and the column otherwise."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} in its header "
                             f"({', '.join(reader.fieldnames or []) or 'empty'})")
        for row in reader:
            line, out = reader.line_num, dict(row)
            for column, kind in columns.items():
                text = row.get(column)
                if not text:
                    raise ValueError(f"{path}, line {line}: no {column}")
                if kind is str:
                    continue
                try:
                    value = float(text)
                except (TypeError, ValueError):
                    raise ValueError(f"{path}, line {line}: {column} = {text!r} is not a number") from None
                if not math.isfinite(value) or (kind is int and value != int(value)):
                    raise ValueError(f"{path}, line {line}: {column} = {text!r} is not "
                                     + ("finite" if not math.isfinite(value) else "a whole number"))
                out[column] = kind(value)
            yield line, out


def _aligned(by_step: dict[int, dict], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), returns (S, T)) at the steps where every one of the S seeds has an evaluation."""
    seeds = sorted(set().union(*by_step.values()))
    steps = sorted(step for step, values in by_step.items() if len(values) == len(seeds))
    if not steps:
        raise ValueError(f"{where}: no step at which all {len(seeds)} seeds have an evaluation")
    return np.array(steps), np.array([[by_step[step][seed] for step in steps] for seed in seeds])


def task_of(env: str) -> str:
    """`Hopper-v5` -> `Hopper`; an id without a version is its own task."""
    name = env.split(":")[-1].split("/")[-1]
    head, sep, version = name.rpartition("-v")
    return head if sep and version.isdigit() else name


def read_published(path: Path) -> dict[str, dict]:
    """{task: {"env": published id, "steps": (T,), "returns": (S, T)}} from the published file, at
    the steps where all its seeds have an evaluation."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    name = "env" if "env" in header else "task"  # (TD-MPC2's dm_control file names tasks)
    if name not in header:
        raise ValueError(f"{path}: no column 'env' (or 'task') in its header ({', '.join(header) or 'empty'})")
    by_env: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for _, row in _csv_rows(path, {name: str, "step": int, "seed": int, "return": float}):
        by_env[row[name]][row["step"]][row["seed"]] = row["return"]
    if not by_env:
        raise ValueError(f"{path}: no evaluations in it")
    result = {}
    for env, steps in by_env.items():
        order, returns = _aligned(steps, f"{path}, {env}")
        result[task_of(env)] = {"env": env, "steps": order, "returns": returns}
    return result


def nearest(steps: np.ndarray, step: int) -> int | None:
    """The index of the evaluation nearest to `step`, if within 1% of it."""
    if not len(steps):
        return None
    i = int(np.argmin(np.abs(steps - step)))
    return i if abs(int(steps[i]) - step) <= 0.01 * step else None


def stats(x: np.ndarray) -> str:
    return f"{x.mean():.0f} ± {x.std(ddof=1):.0f}" if len(x) > 1 else f"{x.mean():.0f}"


def table(groups, published, at_steps: list[int]) -> list[str]:
    lines = []
    for step in at_steps:
        lines += [
            f"### At {step:,} steps".replace(",", " "),
            "",
            "| task | setting | mean ± sample std (seeds) | each seed | published | published, mean ± sample std (seeds) "
            "| Welch's p | inside published mean ± std |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for g in groups:
            ref = published.get(task_of(g.env))
            if ref is None:
                continue
            i, j = nearest(g.steps, step), nearest(ref["steps"], step)
            if i is None or j is None:
                missing = "the run (not there yet?)" if i is None else "the published curves"
                lines.append(f"| {g.env} | {g.label} | no evaluation within 1% of this step in {missing} "
                             f"| | {ref['env']} | | | |")
                continue
            ours, theirs = g.returns[:, i], ref["returns"][:, j]
            inside = "—"  # (one published seed: no spread to be inside)
            if len(theirs) > 1:
                lo, hi = theirs.mean() - theirs.std(ddof=1), theirs.mean() + theirs.std(ddof=1)
                inside = "yes" if lo <= ours.mean() <= hi else "no"
            lines.append(
                f"| {g.env} | {g.label} | {stats(ours)} ({len(ours)}) | {', '.join(f'{v:.0f}' for v in ours)} "
                f"| {ref['env']} at {int(ref['steps'][j])} | {stats(theirs)} ({len(theirs)}) | {welch_p(ours, theirs):.2g} "
                f"| {inside} |"
            )
        lines.append("")
    return lines


def figure(groups, published, out: Path, max_step: int) -> None:
    tasks = sorted({task_of(g.env) for g in groups})
    # the legend goes below each panel, its long setting names wrapped: the figure grows with it
    entries = max(sum(1 for g in groups if task_of(g.env) == t) for t in tasks) + 1
    fig, axes = new_figure(1, len(tasks), figsize=(5 * len(tasks), 3.4 + 0.28 * entries), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [g for g in groups if task_of(g.env) == task]
        versions = len({g.env for g in mine}) > 1  # (e.g. Walker2d-v4 and -v5 in one panel: name each)
        for i, g in enumerate(mine):  # settings are categories, not a sequence: the default qualitative cycle
            color = f"C{i % 10}"
            seeds = g.returns.shape[0]
            mean, std = g.returns.mean(axis=0), seed_std(g.returns)
            name = f"{g.name}, {g.env}" if versions else g.name
            ax.plot(g.steps, mean, color=color, label=textwrap.fill(f"{name} ({seeds} seeds)", 75))
            ax.fill_between(g.steps, mean - std, mean + std, color=color, alpha=0.2)
        ref = published.get(task)
        if ref is not None:
            keep = ref["steps"] <= max_step
            r = ref["returns"][:, keep]
            ax.errorbar(ref["steps"][keep], r.mean(axis=0), yerr=r.std(axis=0, ddof=1) if len(r) > 1 else None,
                        color="black", marker="o",
                        capsize=3, linestyle="--", label=f"published SAC, {ref['env']} ({r.shape[0]} seeds)")
        ax.set_title(task)
        ax.set_ylabel("evaluation return")
        steps_axis(ax)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="iapo's run directories, or folders holding them (sweeps)")
    parser.add_argument("--learning", nargs="+", default=[], metavar="FOLDER",
                        help="folders written by `benchmarks/learning.py run` (other SAC implementations)")
    parser.add_argument("--published", default="docs/results/published-sac/sac-mujoco-v4.csv")
    parser.add_argument("--published-steps-per-step", type=int, default=1, metavar="N",
                        help="read the published file's steps as N environment steps each (its runs held each "
                             "action for N steps and counted actions)")
    parser.add_argument("--steps", nargs="+", type=int, default=[50_000, 100_000])
    parser.add_argument("--out", required=True, help="OUT.md and OUT.png are written")
    args = parser.parse_args()
    if not args.runs and not args.learning:
        parser.error("give iapo's runs, --learning folders, or both")
    if min(args.steps) < 1 or args.published_steps_per_step < 1:
        parser.error("--steps and --published-steps-per-step must be at least 1")
    out = Path(args.out)
    if not out.name or out.name in (".", ".."):
        parser.error(f"--out {args.out!r} names no file")
    try:
        published = read_published(Path(args.published))
        for ref in published.values():
            ref["steps"] = ref["steps"] * args.published_steps_per_step
        groups = iapo_curves(group_runs(find_runs([Path(r) for r in args.runs]))) if args.runs else []
        for folder in args.learning:
            groups += learning_curves(Path(folder))
        compared = [g for g in groups if task_of(g.env) in published]
        if not compared:
            raise ValueError(f"none of the runs' tasks ({', '.join(sorted({task_of(g.env) for g in groups}))}) is in "
                             f"{args.published} (its tasks: {', '.join(sorted(published))})")
    except (OSError, KeyError, ValueError, IapoError) as exc:
        sys.exit(f"published_sac: {exc}")
    command = "python benchmarks/published_sac.py " + " ".join(sys.argv[1:])
    lines = [
        f"Written {datetime.date.today()} on {machine()} by `{command}`; published curves: "
        f"`{args.published}`.",
        "",
    ] + table(compared, published, args.steps)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text("\n".join(lines))
        figure(compared, published, out.with_suffix(".png"), max(args.steps))
    except OSError as exc:
        sys.exit(f"published_sac: cannot write {out}.md and .png: {exc.strerror or exc}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
