"""Learning curves of iapo's SAC against SBX's SAC: same hyperparameters, same evaluation protocol.

    python benchmarks/learning.py run --envs Hopper-v5 HalfCheetah-v5 --seeds 0 1 2 --steps 100000 \
        --out runs/learning
    python benchmarks/learning.py report runs/learning --out docs/results/sac-sbx

Contenders (`--contenders`, default all four):

- `iapo-float32`: `configs/sac.yaml` (the direct agent with one action sample, beta = 1 so J and
  the targets use min(Q1, Q2), the online critics in J as SAC has them) with SB3's and SBX's
  learning rates, 3e-4 for every network and the temperature (the config's own are CleanRL's,
  1e-3 for the critics and the temperature), and SBX's initialization, Flax's lecun normal (the
  config's own is PyTorch's), `--matmul-precision float32`;
- `iapo-auto`: the same with the default precision (`auto`); skipped where `auto` resolves to
  float32 (a CPU without AMX), since it is then the same run;
- `sbx`: SBX's SAC with the same hyperparameters: batch 256, 2x256 networks, Adam 3e-4 for
  every network and the temperature, gamma 0.99, tau 0.005, 5 000 uniformly random steps, one
  update per step, automatic temperature with target entropy -dim(A), initial temperature 1.
- `sb3`: Stable-Baselines3's SAC (PyTorch), the same settings as `sbx`: its layers start from
  PyTorch's initialization where SBX's and iapo's start from Flax's.

All are evaluated by the same code (`iapo.rollout.rollout`): every `--eval-every` steps,
`--eval-episodes` episodes of the deterministic policy (tanh of the mean) in environments of
their own, reset the first time with seeds seed + 10 000 + i and continuing their random
streams afterwards, as `iapo train` evaluates. iapo's seeds train together in one process; SBX's
one after another. `run` skips what is finished and continues an unfinished iapo run exactly
(`--resume`); an unfinished SBX run starts again (SBX has no exact resume), its rows so far
written after every evaluation so that `report` shows them meanwhile.

`report` writes OUT.png (return against steps, mean +- sample std over seeds, one panel per
environment) and OUT.md (a table per environment: each contender's mean +- sample std at every
evaluation, SBX's min-max over seeds, and whether iapo's mean lies inside it, with the chance it
would if both learned alike; then each seed's mean return after the random phase and Welch's
t-test of iapo's seeds against SBX's), and OUT_curves.csv, the plotted means in the format of
`iapo plot`'s curves (mean wall time over seeds), which `benchmarks/overlay_curves.py` draws
beside iapo's own.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats

from iapo.atomic import write_csv_atomic
from iapo.figures import new_figure, save_figure, seed_std, steps_axis
from iapo.trainer import EVAL_SEED_OFFSET

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("iapo-float32", "iapo-auto", "sbx", "sb3")
LABELS = {"iapo-float32": "iapo SAC (float32)", "iapo-auto": "iapo SAC (auto precision)", "sbx": "SBX SAC",
          "sb3": "SB3 SAC (PyTorch)"}
COLUMNS = ("step", "eval_return_mean", "eval_return_std", "wall_time_s")


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(path, list(COLUMNS), [[row[c] for c in COLUMNS] for row in rows])


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _finished(path: Path, steps: int) -> bool:
    rows = _read_rows(path)
    return bool(rows) and rows[-1]["step"] >= steps


def run_iapo(env: str, seeds: list[int], steps: int, out: Path, precision: str, args) -> None:
    import iapo
    from iapo import precision as iapo_precision

    if precision == "auto" and iapo_precision.resolve("auto") == "float32":
        print(f"{env}: iapo-auto skipped: auto resolves to float32 on this machine (the iapo-float32 run)")
        return
    folder = out / env / f"iapo-{precision}"
    if all(_finished(folder / f"seed_{s}.csv", steps) for s in seeds):
        return
    run_dir = folder / "run"
    fields = dict(env=env, seeds=tuple(seeds), total_steps=steps, random_steps=5_000, eval_every=args.eval_every,
                  eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every, snapshot_every=0,
                  matmul_precision=precision, run_dir=str(run_dir), progress=False,
                  critic_lr=3e-4, alpha_lr=3e-4,  # SB3's and SBX's rates, not configs/sac.yaml's
                  weight_init="lecun")  # SBX's initialization (Flax's default), not configs/sac.yaml's
    start = time.perf_counter()
    if (run_dir / "config.json").is_file():
        result = iapo.train(resume=str(run_dir), progress=False)
    else:
        result = iapo.train(ROOT / "configs" / "sac.yaml", **fields)
    for s in seeds:
        _write_rows(folder / f"seed_{s}.csv", [r for r in result.metrics if r["seed"] == s])
    reached = max((r["step"] for r in result.metrics), default=0)
    if reached < steps:  # stopped by a signal: its checkpoint is written, the same command resumes it
        print(f"{env}: iapo-{precision} stopped at step {reached}; run the same command to resume")
        sys.exit(130)
    print(f"{env}: iapo-{precision}, seeds {seeds}, {steps} steps in {time.perf_counter() - start:.0f} s")


def run_sb(family: str, env: str, seed: int, steps: int, out: Path, args) -> None:
    """SBX's SAC (`family` "sbx", JAX) or Stable-Baselines3's (`"sb3"`, PyTorch, with PyTorch's
    initialization of its layers), with the same hyperparameters."""
    import gymnasium as gym

    from iapo.rollout import rollout

    if family == "sbx":
        from sbx import SAC
    else:
        from stable_baselines3 import SAC
    path = out / env / family / f"seed_{seed}.csv"
    if _finished(path, steps):
        return
    model = SAC("MlpPolicy", gym.make(env), learning_rate=3e-4, buffer_size=1_000_000, learning_starts=5_000,
                batch_size=256, tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto_1.0",
                target_entropy="auto", policy_kwargs={"net_arch": [256, 256]}, seed=seed, verbose=0)
    eval_envs = [gym.make(env) for _ in range(args.eval_episodes)]
    seeds: list[int | None] = [seed + EVAL_SEED_OFFSET + i for i in range(args.eval_episodes)]

    def policy(obs, key):
        actions, _ = model.predict(obs, deterministic=True)
        return np.asarray(actions), key, None

    rows, start, done = [], time.perf_counter(), 0
    while done < steps:
        chunk = min(args.eval_every, steps - done)
        model.learn(chunk, reset_num_timesteps=done == 0, progress_bar=False)
        done += chunk
        result = rollout(eval_envs, policy, None, seeds=seeds)
        seeds = [None] * len(eval_envs)  # later evaluations continue each env's random stream
        rows.append({"step": done, "eval_return_mean": float(np.mean(result.returns)),
                     "eval_return_std": float(np.std(result.returns)), "wall_time_s": time.perf_counter() - start})
        print(f"{env}: {family} seed {seed} step {done}: {rows[-1]['eval_return_mean']:.1f}", flush=True)
        _write_rows(path, rows)  # after every evaluation, so that `report` can show an unfinished run


def command_run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "machine.json"
    if not meta.exists():
        import jax

        cpu = platform.processor()
        if Path("/proc/cpuinfo").exists():  # the model name, and the family and model that tell AMD's Zen 3 and 4 apart
            info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                        if ":" in line)
            info = {k.strip(): v.strip() for k, v in info.items()}
            cpu = f"{info.get('model name', cpu)} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
        meta.write_text(json.dumps({"date": str(datetime.date.today()), "cpu": cpu, "jax": jax.__version__,
                                    "backend": jax.default_backend(), "command": " ".join(sys.argv)}, indent=1))
    for env in args.envs:
        for contender in args.contenders:
            if contender in ("sbx", "sb3"):
                for seed in args.seeds:
                    run_sb(contender, env, seed, args.steps, out, args)
            else:
                run_iapo(env, args.seeds, args.steps, out, contender.split("-", 1)[1], args)


def _curves(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, returns (seeds, evaluations)) over the evaluations every seed has."""
    runs = [_read_rows(p) for p in sorted(folder.glob("seed_*.csv"))]
    runs = [r for r in runs if r]
    if not runs:
        return None
    n = min(len(r) for r in runs)
    steps = np.array([row["step"] for row in runs[0][:n]])
    return steps, np.array([[row["eval_return_mean"] for row in r[:n]] for r in runs])


def _mean_wall(folder: Path, n: int) -> np.ndarray:
    """Each of the first n evaluations' training wall time, averaged over the seeds (s)."""
    runs = [r for r in (_read_rows(p) for p in sorted(folder.glob("seed_*.csv"))) if r]
    return np.array([[row["wall_time_s"] for row in r[:n]] for r in runs]).mean(0)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _inside_chance(n_mean: int, n_range: int, draws: int = 200_000) -> float:
    """P(mean of n_mean draws lies within the min-max of n_range other draws), all from one normal
    distribution: what "iapo inside SBX's range" would score if the two learned alike."""
    x = np.random.default_rng(0).normal(size=(draws, n_mean + n_range))
    mean, other = x[:, :n_mean].mean(1), x[:, n_mean:]
    return float(((mean >= other.min(1)) & (mean <= other.max(1))).mean())


def _table(env: str, curves: dict, names: list[str], random_steps: int) -> list[str]:
    """Markdown: each contender's mean +- sample std at every evaluation any of them has, SBX's min-max
    over seeds and whether each iapo mean lies inside it (after the random phase); then, for the
    contenders that reached the last step, each seed's mean return after the random phase."""
    if not curves:
        return [f"### {env}\n", "No evaluations written yet.\n"]
    sbx = curves.get("sbx")
    lines = [f"### {env}\n",
             "| step | " + " | ".join(f"{LABELS[c]} ({_seeds(curves[c][1].shape[0])})" for c in names)
             + (" | SBX min – max | iapo inside |" if sbx else " |"),
             "| --- " * (len(names) + (3 if sbx else 1)) + "|"]
    counts = {c: [0, 0] for c in names if c != "sbx"}
    for step in sorted({int(x) for steps, _ in curves.values() for x in steps}):
        columns = {c: np.flatnonzero(curves[c][0] == step) for c in names}
        cells = [f"{curves[c][1][:, i[0]].mean():.0f} ± {seed_std(curves[c][1][:, i[0]]):.0f}" if i.size else "–"
                 for c, i in columns.items()]
        extra = ""
        if sbx:
            j = columns["sbx"]
            lo, hi = (sbx[1][:, j[0]].min(), sbx[1][:, j[0]].max()) if j.size else (None, None)
            verdicts = []
            for c in counts:
                i = columns[c]
                if lo is None or not i.size or step <= random_steps:
                    verdicts.append("–")
                    continue
                ok = bool(lo <= curves[c][1][:, i[0]].mean() <= hi)
                counts[c][0] += ok
                counts[c][1] += 1
                verdicts.append("yes" if ok else "no")
            extra = (f" | {lo:.0f} – {hi:.0f}" if lo is not None else " | –") + f" | {', '.join(verdicts)}"
        lines.append(f"| {step} | " + " | ".join(cells) + extra + " |")
    lines.append("")
    if sbx:
        lines.append("iapo's mean inside SBX's range after the random phase: "
                     + "; ".join(f"{LABELS[c]}, {k} of {n} evaluations" for c, (k, n) in counts.items() if n) + ".")
        for n_seeds in sorted({curves[c][1].shape[0] for c, (_, n) in counts.items() if n}):
            lines.append(f"Were both contenders' returns draws of one normal distribution, a mean of "
                         f"{_seeds(n_seeds)} would lie inside a range of {_seeds(sbx[1].shape[0])} with "
                         f"probability {_inside_chance(n_seeds, sbx[1].shape[0]):.2f}.")
        lines.append("")
    last = max(int(steps[-1]) for steps, _ in curves.values())
    done = [c for c in names if int(curves[c][0][-1]) == last]  # the unfinished are left out of the summary
    common = set.intersection(*({int(x) for x in curves[c][0] if x > random_steps} for c in done))
    if common:
        lines.append(f"Each seed's mean return over the {len(common)} evaluations after the random phase "
                     f"(steps {min(common)}–{max(common)}):\n")
        lines.append("| contender | mean ± sample std over seeds | each seed |")
        lines.append("| --- | --- | --- |")
        per_seed = {}
        for c in names:
            steps, returns = curves[c]
            if c not in done:
                lines.append(f"| {LABELS[c]} | unfinished (to step {int(steps[-1])}) | |")
                continue
            per_seed[c] = returns[:, np.isin(steps, sorted(common))].mean(1)
            lines.append(f"| {LABELS[c]} | {per_seed[c].mean():.0f} ± {seed_std(per_seed[c]):.0f} | "
                         + ", ".join(f"{v:.0f}" for v in per_seed[c]) + " |")
        lines.append("")
        if "sbx" in per_seed and len(per_seed["sbx"]) > 1:
            tests = [(c, scipy.stats.ttest_ind(v, per_seed["sbx"], equal_var=False)) for c, v in per_seed.items()
                     if c != "sbx" and len(v) > 1]
            if tests:
                lines.append("Welch's t-test of these per-seed means against SBX's: " + "; ".join(
                    f"{LABELS[c]}, t = {t.statistic:.2f}, p = {t.pvalue:.2f}" for c, t in tests) + ".\n")
    return lines


def command_report(args) -> None:
    root = Path(args.runs)
    envs = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not envs:
        sys.exit(f"learning.py report: no environment folders in {root}")
    fig, axes = new_figure(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    lines, curve_rows = [], []
    meta = root / "machine.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        lines.append(f"Measured {m['date']} on {m['cpu']} (JAX {m['jax']}, {m['backend']}): `{m['command']}`\n")
    for ax, env in zip(axes[0], envs):
        curves = {c: _curves(root / env / c) for c in CONTENDERS}
        curves = {c: v for c, v in curves.items() if v is not None}
        for c, (steps, returns) in curves.items():
            mean, std = returns.mean(0), seed_std(returns)
            ax.plot(steps, mean, label=f"{LABELS[c]} ({_seeds(returns.shape[0])})")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
            wall = _mean_wall(root / env / c, len(steps))
            curve_rows += [[env, LABELS[c], returns.shape[0], int(x), w, m, s, m, m - s, m + s]
                           for x, w, m, s in zip(steps, wall, mean, std)]
        ax.axvline(args.random_steps, color="grey", linestyle=":", linewidth=1)  # the random phase ends
        ax.set_title(env)
        steps_axis(ax)
        ax.set_ylabel("evaluation return (mean ± sample std over seeds)")
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8)
        lines += _table(env, curves, list(curves), args.random_steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out.with_suffix(".png"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    curves_csv = out.with_name(out.stem + "_curves.csv")
    write_csv_atomic(curves_csv, ["env", "label", "seeds", "step", "wall_time_s", "mean", "std", "center", "low", "high"],
                     curve_rows)
    print("\n".join(lines))
    print(f"wrote {out.with_suffix('.png')}, {out.with_suffix('.md')} and {curves_csv}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the contenders (skips what is finished)")
    run.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--steps", type=int, default=100_000)
    run.add_argument("--eval-every", type=int, default=5_000)
    run.add_argument("--eval-episodes", type=int, default=10)
    run.add_argument("--checkpoint-every", type=int, default=10_000)
    run.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    run.add_argument("--out", default="runs/learning")
    report = sub.add_parser("report", help="figure and tables of finished or partial runs")
    report.add_argument("runs")
    report.add_argument("--out", default="docs/results/sac-sbx")
    report.add_argument("--random-steps", type=int, default=5_000,
                        help="the random phase: evaluations up to this step are not compared")
    args = parser.parse_args()
    if args.command == "run":
        if args.steps < 1 or args.eval_every < 1 or args.eval_episodes < 1:
            parser.error("--steps, --eval-every and --eval-episodes must be positive")
        command_run(args)
    else:
        command_report(args)


if __name__ == "__main__":
    main()
