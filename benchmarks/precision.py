"""bfloat16 multiplies with float32 accumulation against float32, side by side in one process.

    python benchmarks/precision.py [--rounds 3]

1. One matrix multiply at the agents' shapes (GFLOP/s): float32; bfloat16 operands with a float32
   result (what `--matmul-precision bfloat16` runs); bfloat16 operands and result (what
   `flax.linen.Dense(dtype=bfloat16)` runs).
2. The whole update (ms), float32 against bfloat16 multiplies inside J, for the direct agent
   (N = 1, as SAC, and N = 10) and the iterative agent (K = 5, N = 10), at Hopper-v5's shapes
   (batch 256, 2x256 networks). Interleaved rounds, best of each.

The CPU's flags say whether it has AMX (`amx_bf16`) or AVX-512 BF16 (`avx512_bf16`); both are
printed. Whole training steps are rows of `benchmarks/throughput.py` ("..., bfloat16").
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import jax
import jax.numpy as jnp

from hopper_batch import ACT_DIM, OBS_DIM, random_batch
from iapo import precision
from iapo.agent import Agent
from iapo.update import update
from iapo.config import AgentConfig


def _best(fn, *args, repeats: int, rounds: int = 5) -> float:
    """Best seconds per call of a jitted fn over `rounds` of `repeats` calls."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def matmuls() -> None:
    forms = {
        "float32": lambda x, w: x @ w,
        "bfloat16 -> float32": lambda x, w: jnp.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                                                       preferred_element_type=jnp.float32),
        "bfloat16 -> bfloat16": lambda x, w: x.astype(jnp.bfloat16) @ w.astype(jnp.bfloat16),
    }
    print("| shape (m × k × n) | " + " | ".join(forms) + " |")
    print("| --- |" + " --- |" * len(forms))
    for m, k, n in [(2560, 256, 256), (256, 256, 256), (2560, 256, 1)]:
        x = jax.random.normal(jax.random.PRNGKey(0), (m, k))
        w = jax.random.normal(jax.random.PRNGKey(1), (k, n))
        cells = []
        for fn in forms.values():
            try:
                seconds = _best(jax.jit(fn), x, w, repeats=20)
                cells.append(f"{2 * m * k * n / seconds / 1e9:.0f}")
            except Exception as exc:  # noqa: BLE001 (XLA:CPU rejects some forms at some shapes)
                cells.append(f"fails ({type(exc).__name__})")
        print(f"| {m} × {k} × {n} | " + " | ".join(cells) + " |", flush=True)


def updates(rounds: int) -> None:
    batch = random_batch()
    step = jax.jit(update, static_argnums=0, donate_argnums=1)
    cases = {
        "direct, N = 1": dict(agent="direct", action_samples=1),
        "direct, N = 10": dict(agent="direct"),
        "iterative, K = 5, N = 10": dict(agent="iterative"),
    }
    agents = {(name, p): Agent(AgentConfig(**kw, matmul_precision=p), OBS_DIM, ACT_DIM)
              for name, kw in cases.items() for p in ("float32", "bfloat16")}
    states = {key: agent.init(jax.random.PRNGKey(0)) for key, agent in agents.items()}
    best = {key: float("inf") for key in agents}
    for key, agent in agents.items():  # compile and warm up
        for _ in range(3):
            states[key], _ = step(agent, states[key], batch)
        jax.block_until_ready(states[key])
    for _ in range(rounds):
        for key, agent in agents.items():
            repeats = 5 if key[0].startswith("iterative") else 40
            start = time.perf_counter()
            for _ in range(repeats):
                states[key], _ = step(agent, states[key], batch)
            jax.block_until_ready(states[key])
            best[key] = min(best[key], (time.perf_counter() - start) / repeats * 1e3)
    print("| update | float32 (ms) | bfloat16 in J (ms) | speed-up |")
    print("| --- | --- | --- | --- |")
    for name in cases:
        f32, bf16 = best[(name, "float32")], best[(name, "bfloat16")]
        print(f"| {name} | {f32:.2f} | {bf16:.2f} | {f32 / bf16:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    flags = precision.cpu_flags()
    device = jax.devices()[0]
    print(f"# {datetime.date.today()}  jax {jax.__version__} on {device.platform} ({device.device_kind}), "
          f"{platform.processor() or platform.machine()}; amx_bf16: {'amx_bf16' in flags}, "
          f"avx512_bf16: {'avx512_bf16' in flags}; auto resolves to {precision.resolve('auto')}")
    matmuls()
    print()
    updates(args.rounds)


if __name__ == "__main__":
    main()
