"""How the ascent to lambda* changes the amortization gap: the reference's SGD against Adam.

    python benchmarks/gap_ascent.py RUN_DIR[:STEP] ... [--states 100] [--out docs/results/gap-ascent.md]

The gap J(lambda*) - J(lambda_agent) is only as large as the ascent that finds lambda* lets it be.
For each run's snapshot (every snapshot, or the one at STEP), the same 100 visited states and the
same keys, this measures the gap with each ascent below, the steps it took and whether it stopped
by itself (J no longer improving for `patience` steps) or at `max_steps`:

- the reference's: SGD at lr 1e-4, patience 100, at most 5 000 steps (iapo's default before
  2026-12-07; the reference code stops at the first step that does not improve);
- the same SGD with ten times the steps;
- Adam at 1e-3 and at 1e-2, patience 500, at most 20 000 steps (1e-2 is iapo's default).

Two Adam step sizes that agree say the optimum was reached. Writes a markdown table (with the
command, the machine and the date) to --out and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo.analysis.common import agent_states
from iapo.analysis.gap import _gap_at
from iapo.machine import cpu_name
from iapo.saved import load_agent, load_state, snapshots

ASCENTS = {  # label -> ascend_to_optimum's keyword arguments
    "SGD 1e-4 (reference)": dict(optimizer="sgd", lr=1e-4, patience=100, max_steps=5_000),
    "SGD 1e-4, 50 000 steps": dict(optimizer="sgd", lr=1e-4, patience=100, max_steps=50_000),
    "Adam 1e-3": dict(optimizer="adam", lr=1e-3, patience=500, max_steps=20_000),
    "Adam 1e-2 (default)": dict(optimizer="adam", lr=1e-2, patience=500, max_steps=20_000),
}


def measure(run_dir: Path, step: int | None, states: int, seed: int = 0) -> list[dict]:
    """One row per snapshot and ascent, as `iapo analyze gap` computes it (the same states and keys)."""
    config, agent, _, _ = load_agent(run_dir)
    rows = []
    for at, path in snapshots(run_dir).items():
        if step is not None and at != step:
            continue
        state = load_state(path, agent)
        obs = jnp.asarray(agent_states(config, agent, state, states, seed + at))
        for label, ascent in ASCENTS.items():
            started = time.perf_counter()
            out = _gap_at(agent, state, obs, jax.random.PRNGKey(seed), None, 100, tuple(sorted(ascent.items())))
            gap = np.asarray(out["gap"])
            rows.append({"run": f"{config.env} {config.algo.agent} seed {config.seed}", "step": at, "ascent": label,
                         "gap": float(gap.mean()), "gap_std": float(gap.std()), "J": float(np.mean(out["j_agent"])),
                         "steps": int(out["steps"]), "converged": int(out["steps"]) < ascent["max_steps"],
                         "seconds": time.perf_counter() - started})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR:STEP (a run of one seed, with snapshots)")
    parser.add_argument("--states", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        path, _, step = spec.partition(":")
        if not (Path(path) / "snapshots").is_dir():
            sys.exit(f"gap_ascent.py: error: {path} has no snapshots folder")
        rows += measure(Path(path), int(step) if step else None, args.states)
        if not rows:
            sys.exit(f"gap_ascent.py: error: {path} has no snapshot at step {step}")
    lines = [f"`python benchmarks/gap_ascent.py {' '.join(args.runs)}` ({datetime.date.today()}, {cpu_name()}, "
             f"{args.states} states)", "",
             "| run | step | J | ascent | gap (mean ± std over states) | ascent steps | stopped by itself | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['run']} | {r['step']} | {r['J']:.2f} | {r['ascent']} | {r['gap']:.3f} ± {r['gap_std']:.3f} | "
              f"{r['steps']} | {'yes' if r['converged'] else 'no: a lower bound'} | {r['seconds']:.0f} |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
