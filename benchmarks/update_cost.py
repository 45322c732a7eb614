"""The cost of one training update at a task's shapes: XLA's count of its floating-point
operations and its median time.

    python benchmarks/update_cost.py --env Ant-v5 --agent iterative [--precision float32] \
        [--action-samples 10] [--batch 256] [--repeats 20]

The update is the one training compiles (`update.update` for one seed, jitted, the state
donated), on random transitions at the environment's observation and action sizes, with the
library's defaults otherwise (2x256 networks, K = 5 for the iterative agent, N action samples per
state in J for both). `gflop` is XLA's cost analysis of the compiled update with the iterative
optimizer's iterations unrolled (a loop's body would be counted once); `ms` is the median wall
time of `--repeats` updates of the update as training runs it (iterations in a loop). Prints one
JSON line: env, agent, obs_dim, act_dim, precision, action_samples, gflop, ms, machine, jax.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import jax

from iapo.agent import Agent
from iapo.config import AgentConfig
from iapo.update import update

from hopper_batch import random_batch


def machine() -> str:
    """The CPU's model name with its family and model (which tell AMD's Zen generations apart)."""
    cpu = platform.processor() or platform.machine()
    path = Path("/proc/cpuinfo")
    if path.exists():
        info = dict(line.split(":", 1) for line in path.read_text().split("\n\n")[0].splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        cpu = f"{info.get('model name', cpu)} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    devices = jax.devices()
    return cpu if devices[0].platform == "cpu" else f"{devices[0].device_kind} ({cpu})"


def dims(env_id: str) -> tuple[int, int]:
    import gymnasium as gym

    env = gym.make(env_id)
    try:
        return env.observation_space.shape[0], env.action_space.shape[0]
    finally:
        env.close()


def cost(env: str, agent_kind: str, precision: str = "float32", action_samples: int = 10, batch: int = 256,
         repeats: int = 20) -> dict:
    obs_dim, act_dim = dims(env)
    data = random_batch(0, obs_dim, act_dim, batch)
    config = AgentConfig(agent=agent_kind, matmul_precision=precision, action_samples=action_samples,
                         batch_size=batch)
    step = jax.jit(update, static_argnums=0, donate_argnums=1)
    unrolled = Agent(dataclasses.replace(config, unroll_iterations=True), obs_dim, act_dim)
    analysis = jax.jit(update, static_argnums=0).lower(unrolled, unrolled.init(jax.random.PRNGKey(0)), data) \
        .compile().cost_analysis()
    if isinstance(analysis, list):  # (older JAX: one dict per device)
        analysis = analysis[0]
    agent = Agent(config, obs_dim, act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    for _ in range(3):  # compile and warm up
        state, _ = step(agent, state, data)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, _ = step(agent, state, data)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - start) * 1e3)
    return {"env": env, "agent": agent_kind, "obs_dim": obs_dim, "act_dim": act_dim, "precision": agent.matmul_precision,
            "action_samples": action_samples, "gflop": round(float(analysis["flops"]) / 1e9, 2),
            "ms": round(statistics.median(times), 2), "machine": machine(), "jax": jax.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--agent", default="iterative", choices=["direct", "iterative", "direct-flow", "gradient", "cem"])
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--action-samples", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(cost(args.env, args.agent, args.precision, args.action_samples, args.batch, args.repeats)))


if __name__ == "__main__":
    main()
