"""Training throughput of two versions of iapo, side by side: has a change made a step slower?

    git archive <rev> src | tar -x -C /tmp/before     # the version to compare against
    python benchmarks/compare_revisions.py /tmp/before/src src [--rounds 5] [--seconds 5]

Each source tree (a folder holding the `iapo` package) gets one worker process, which builds
the contenders' `Trainer`s (through the random phase and a warm-up, so compilation is not
timed) and then times chunks of real training steps (`Trainer.step`) on request. The two
workers take turns, chunk by chunk, round by round, so both see the same machine load; the
median env-steps/s over rounds is reported for each, with their ratio. Contenders: the direct
agent (N = 1 action sample, as SAC) with one seed and with 5 seeds trained together, and the
iterative agent (K = 5, N = 10) with one seed, on Hopper-v5 with the library's defaults.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CONTENDERS = {
    "direct, 1 seed": {"seeds": 1, "algo": {"agent": "direct", "action_samples": 1}},
    "direct, 5 seeds": {"seeds": 5, "algo": {"agent": "direct", "action_samples": 1}},
    "iterative K=5, 1 seed": {"seeds": 1, "algo": {"agent": "iterative"}},
}
RANDOM_STEPS = 5_000
WARMUP = 30

WORKER = r"""
import json, sys, time, tempfile
import jax
from iapo.config import AgentConfig, TrainConfig
try:
    from iapo.trainer import Trainer
except ImportError:  # (iapo 0.2 and before)
    from iapo.train import Trainer

env, contenders, random_steps, warmup = json.loads(sys.argv[1])
root = tempfile.mkdtemp()
trainers = {}
for name, spec in contenders.items():
    seeds = spec["seeds"]
    config = TrainConfig(env=env, total_steps=10**9, random_steps=random_steps, eval_every=10**9,
                         checkpoint_every=10**9, snapshot_every=0, progress=False,
                         run_dir=f"{root}/{len(trainers)}", seeds=tuple(range(seeds)) if seeds > 1 else None,
                         algo=AgentConfig(**spec["algo"]))
    t = Trainer(config)
    for _ in range(random_steps + warmup):
        t.step()
    jax.block_until_ready(t.state)
    trainers[name] = t
print("ready", flush=True)
for line in sys.stdin:
    name, seconds = json.loads(line)
    t, steps, start = trainers[name], 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            t.step()
        steps += 10
    jax.block_until_ready(t.state)
    print(json.dumps(steps * len(t.runs) / (time.perf_counter() - start)), flush=True)
"""


def start_worker(src: str, env: str) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    arg = json.dumps([env, CONTENDERS, RANDOM_STEPS, WARMUP])
    proc = subprocess.Popen([sys.executable, "-c", WORKER, arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=environ, cwd=tempfile.gettempdir())
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="source folder holding the iapo package to compare against")
    parser.add_argument("after", help="source folder holding the iapo package under test")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    workers = {"before": start_worker(args.before, args.env), "after": start_worker(args.after, args.env)}
    for name, proc in workers.items():  # (built one after the other: the first is ready before the second starts timing)
        line = proc.stdout.readline().strip()
        if line != "ready":
            sys.exit(f"the {name} worker failed to start (exit code {proc.wait()})")
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for contender in CONTENDERS:
            for name, proc in workers.items():
                proc.stdin.write(json.dumps([contender, args.seconds]) + "\n")
                proc.stdin.flush()
                rates.setdefault((contender, name), []).append(json.loads(proc.stdout.readline()))
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"{datetime.date.today()}, {cpu}, {os.cpu_count()} cores; {args.env}; median of {args.rounds} rounds "
          f"of {args.seconds:g} s chunks, env-steps/s (all seeds)")
    print("| contender | before | after | after / before |")
    print("| --- | --- | --- | --- |")
    for contender in CONTENDERS:
        before = statistics.median(rates[(contender, "before")])
        after = statistics.median(rates[(contender, "after")])
        print(f"| {contender} | {before:.1f} | {after:.1f} | {after / before:.3f} |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
