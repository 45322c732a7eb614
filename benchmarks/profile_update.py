"""Where one iapo update's time goes, op by op: the JAX profiler's trace of the compiled update,
grouped by the kind of XLA operation.

    python benchmarks/profile_update.py [--agent direct] [--iterations 5] [--action-samples 10]
                                        [--updates 20] [--critic-layout auto]
                                        [--matmul-precision float32]

The update runs at Hopper-v5's shapes (11 observation and 3 action dimensions, batch 256, 2x256
networks) on random transitions, as in `benchmarks/throughput.py`. The table lists, per update,
the time spent in each kind of operation: `ynn_fusion` (matrix multiplies run by XNNPACK), `dot`
(those XLA runs with Eigen), `copy`/`*copy*_fusion` (layout changes), the elementwise fusions,
and so on. XLA's CPU runtime runs independent operations at the same time on the cores, so the
summed operation time can exceed the wall time, which is printed beside it.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
import time
from pathlib import Path

import jax

from iapo.agent import Agent
from iapo.config import AgentConfig
from iapo.update import update

from hopper_batch import ACT_DIM, OBS_DIM, random_batch

# One update of a lone agent, compiled as training compiles it inside its step.
update_seeds = jax.jit(update, static_argnames="agent", donate_argnames="state")

RUNTIME_EVENTS = ("Thunk", "Pjit", "api.py", "profiler", "Execut", "Await", "ParseArguments", "AllocateOutput",
                  "__hash__")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="direct", choices=["direct", "iterative", "direct-flow"])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--action-samples", type=int, default=None, help="default: 1 for direct (as SAC), else 10")
    parser.add_argument("--updates", type=int, default=20, help="updates traced")
    parser.add_argument("--critic-layout", default="auto", choices=["auto", "ensemble", "separate"])
    parser.add_argument("--matmul-precision", default="float32", choices=["float32", "bfloat16"],
                        help="the multiplies inside J (`--matmul-precision`)")
    args = parser.parse_args()
    samples = args.action_samples or (1 if args.agent == "direct" else 10)
    agent = Agent(AgentConfig(agent=args.agent, iterations=args.iterations, action_samples=samples,
                              critic_layout=args.critic_layout, matmul_precision=args.matmul_precision),
                  OBS_DIM, ACT_DIM)
    state = agent.init(jax.random.PRNGKey(0))
    batch = random_batch()
    for _ in range(3):
        state, _ = update_seeds(agent, state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(args.updates):
        state, _ = update_seeds(agent, state, batch)
    jax.block_until_ready(state)
    wall = (time.perf_counter() - start) / args.updates * 1e3

    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(args.updates):
            state, _ = update_seeds(agent, state, batch)
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        trace = next(Path(trace_dir).rglob("*.trace.json.gz"))
        events = json.load(gzip.open(trace))["traceEvents"]
    kinds: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not any(x in e["name"] for x in RUNTIME_EVENTS):
            kinds[re.sub(r"[._]\d+$", "", e["name"])] += e["dur"] / 1e3 / args.updates  # ms per update
    total = sum(kinds.values())
    what = f"K = {args.iterations}, N = {samples}" if args.agent == "iterative" else f"N = {samples}"
    what += f", {args.matmul_precision}"
    print(f"# {args.agent}, {what}: {wall:.2f} ms per update (wall), "
          f"{total:.2f} ms of operations summed")
    print("| operation kind | ms per update | share of the summed time |")
    print("| --- | --- | --- |")
    for name, ms in kinds.most_common(12):
        print(f"| {name} | {ms:.3f} | {100 * ms / total:.1f}% |")
    rest = total - sum(ms for _, ms in kinds.most_common(12))
    print(f"| (all others) | {rest:.3f} | {100 * rest / total:.1f}% |")


if __name__ == "__main__":
    main()
