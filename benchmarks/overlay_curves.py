"""Overlay learning curves stored by `iapo plot` (its `<out>_curves.csv`), from runs whose
directories are no longer at hand (another machine, an earlier session), in one figure.

    python benchmarks/overlay_curves.py docs/results/a_curves.csv=LABEL docs/results/b_curves.csv ... \
        --out docs/results/overlay.png [--max-step 30000] [--x wall-time] [--threshold ENV=VALUE ...]

Each argument is a curves file, optionally `:WHICH` to keep only its lines whose label contains
WHICH, and `=LABEL` to rename them (several lines keep their own labels, LABEL in front). One panel per environment; mean +- std over seeds
as the file holds them (the sample std since iapo commit a850f6f, the population std before), against steps or (`--x wall-time`) the runs' mean training wall time in hours.
`benchmarks/learning.py report` writes its curves (SBX's among them) in the same format.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from iapo.figures import new_figure, save_figure, steps_axis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+", metavar="FILE[:WHICH][=LABEL]")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-step", type=int, default=None)
    parser.add_argument("--title", default=None)
    parser.add_argument("--x", choices=["steps", "wall-time"], default="steps",
                        help="horizontal axis: environment steps, or training wall time (the file's wall_time_s)")
    parser.add_argument("--threshold", nargs="+", default=[], metavar="ENV=VALUE",
                        help="a dashed line at VALUE in ENV's panel (e.g. the task's ceiling)")
    parser.add_argument("--legend", default="best", help="where the legend goes in each panel",
                        choices=["best", "upper right", "upper left", "lower left", "lower right", "right",
                                 "center left", "center right", "lower center", "upper center", "center"])
    args = parser.parse_args()
    thresholds = {}
    for item in args.threshold:
        env, _, value = item.partition("=")
        try:
            thresholds[env] = float(value)
        except ValueError:
            sys.exit(f"overlay_curves.py: --threshold {item!r}: expected ENV=VALUE with a number")
    lines: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    for item in args.curves:
        path, _, label = item.partition("=")
        path, _, which = path.partition(":")
        if not Path(path).is_file():
            sys.exit(f"overlay_curves.py: no file {path}")
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if which in r["label"]]
        if not rows:
            sys.exit(f"overlay_curves.py: no line of {path} has a label containing {which!r}")
        names = {r["label"] for r in rows}
        for r in rows:
            step = int(r["step"])
            if args.max_step is not None and step > args.max_step:
                continue
            name = r["label"] if not label else (label if len(names) == 1 else f"{label}: {r['label']}")
            where = step if args.x == "steps" else float(r.get("wall_time_s") or "nan") / 3600
            if where != where:
                sys.exit(f"overlay_curves.py: --x wall-time: {path} has no wall_time_s at step {step}")
            lines.setdefault((r["env"], name), []).append((where, float(r["mean"]), float(r["std"]), int(r["seeds"])))
    envs = sorted({env for env, _ in lines})
    if unknown := sorted(set(thresholds) - set(envs)):
        sys.exit(f"overlay_curves.py: --threshold names {', '.join(unknown)}, which no curve has")
    fig, axes = new_figure(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for i, ((e, name), points) in enumerate((k, v) for k, v in lines.items() if k[0] == env):
            where, mean, std, seeds = zip(*sorted(points))
            low = [m - s for m, s in zip(mean, std)]
            high = [m + s for m, s in zip(mean, std)]
            ax.plot(where, mean, color=f"C{i}", lw=1.8, label=f"{name} ({max(seeds)} seeds)")
            ax.fill_between(where, low, high, color=f"C{i}", alpha=0.2)
        if env in thresholds:
            ax.axhline(thresholds[env], color="grey", ls="--", lw=1, label=f"threshold {thresholds[env]:g}")
        ax.set_title(args.title or env)
        if args.x == "wall-time":
            ax.set_xlabel("training wall time (hours)")
        else:
            steps_axis(ax)
        ax.set_ylabel("evaluation return (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(loc=args.legend, fontsize="small")
    save_figure(fig, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
