"""Training throughput of iapo against SBX and Stable-Baselines3 SAC, side by side in one process.

    pip install -e ".[bench]"
    python benchmarks/throughput.py [--env Hopper-v5] [--rounds 3] [--seconds 4] [--only iapo] [--match NAME ...]

Contenders, all with batch 256, 2x256 networks, one update per environment step, a replay buffer
of 1M and 5 000 random steps first (timed only afterwards):

- iapo direct (SAC), one seed, and 5 seeds trained together (one vmapped update for all), and
  one seed with the replay buffer sampled on the device (`--replay-sampling device`; the default
  on a GPU, so there that row repeats the first);
- iapo iterative, K = 1, 2 and 5 iterations with N = 10 action samples, and K = 5 with 2 seeds
  trained together, vmapped and one after the other (`--seed-mapping vmap` and `map`);
- the paper's other policy optimizers at their defaults: iapo direct-flow, gradient (Adam on the
  distribution's parameters, 5 steps) and cem (5 iterations of 100 samples);
- SBX SAC (JAX) and SB3 SAC (PyTorch).

iapo's direct agent uses N = 1 action sample here, as SAC (and so SBX and SB3) does; its
default, N = 10, is measured as well. Each contender runs the real training loop (iapo's
`Trainer.step`, SBX's and SB3's `learn`) in chunks of about `--seconds`, interleaved round by
round, so all of them see the same machine load; the median over rounds is reported.

For iapo the script also times the update alone, counts its FLOPs (XLA's cost analysis of the
compiled update), compares the achieved GFLOP/s with a matrix-multiply peak it measures itself,
and splits a step into the environment step, replay sampling, and the one device call that
updates and then acts for the next step. Peak memory: the
process's RSS, and the device's peak on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import datetime
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent
from iapo.seeds import over_seeds
from iapo.update import update
from iapo.config import AgentConfig, TrainConfig
from iapo.replay import batch_width
from iapo.train_step import train_step
from iapo.trainer import Trainer

RANDOM_STEPS = 5_000
WARMUP = 30


@functools.partial(jax.jit, static_argnames="agent", donate_argnames="state")
def update_seeds(agent, state, batch):
    """The update alone (what `train_step` does besides acting), for its time and FLOPs."""
    return over_seeds(agent.seed_mapping, functools.partial(update, agent), state, batch)


def matmul_peak(repeats: int = 3) -> float:
    """GFLOP/s of the best float32 matrix multiply among a few sizes, on the default device."""
    best = 0.0
    for n in (512, 1024, 2048):
        a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
        f = jax.jit(lambda x, y: x @ y)
        f(a, a).block_until_ready()
        reps = max(3, int(4e10 / (2 * n**3)))
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(reps):
                out = f(a, a)
            out.block_until_ready()
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def matmul_rate(m: int, k: int, n: int, batch: int = 1, repeats: int = 3) -> float:
    """GFLOP/s of one float32 (batch x) (m, k) @ (k, n) multiply repeated: the ceiling for the
    update's own shapes (256-unit layers on 256 states, or on 256 x N samples)."""
    a = jnp.ones((batch, m, k), jnp.float32)
    b = jnp.ones((batch, k, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    flops = 2 * m * k * n * batch
    reps = max(10, int(5e9 / flops))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(reps):
            out = f(a, b)
        out.block_until_ready()
        best = max(best, flops * reps / (time.perf_counter() - start) / 1e9)
    return best


def print_peaks() -> float:
    peak = matmul_peak()
    print(f"matrix-multiply peak (float32, best of 512..2048 square): {peak:.1f} GFLOP/s")
    for label, shape in [("256 states x 256 units", (256, 256, 256, 1)),
                         ("5 seeds, batched", (256, 256, 256, 5)),
                         ("256 states x 10 samples x 256 units", (2560, 256, 256, 1)),
                         ("two critics, batched", (2560, 256, 256, 2))]:
        m, k, n, batch = shape
        rate = matmul_rate(m, k, n, batch)
        print(f"  one matmul at the update's shapes, {label} ({batch} x {m}x{k}x{n}): {rate:.1f} GFLOP/s "
              f"({100 * rate / peak:.0f}% of peak)")
    return peak


class Iapo:
    def __init__(self, name: str, env: str, root: Path, seeds: int, replay_sampling: str = "auto", **algo):
        self.name, self.seeds = name, seeds
        algo.setdefault("matmul_precision", "float32")  # rows without "bfloat16" in their name: float32 on any machine
        config = TrainConfig(
            env=env, total_steps=10**9, random_steps=RANDOM_STEPS, eval_every=10**9, checkpoint_every=10**9,
            run_dir=str(root / "".join(ch if ch.isalnum() else "_" for ch in name)), progress=False,
            seeds=tuple(range(seeds)) if seeds > 1 else None, replay_sampling=replay_sampling,
            algo=AgentConfig(**algo),
        )
        self.trainer = Trainer(config)
        for _ in range(RANDOM_STEPS + WARMUP):
            self.trainer.step()
        jax.block_until_ready(self.trainer.state)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.trainer.step()
        jax.block_until_ready(self.trainer.state)

    def _batch(self):
        t = self.trainer
        stacked = jax.tree.map(lambda *x: np.stack(x), *[r.buffer.sample(r.rng, t.config.algo.batch_size) for r in t.runs])
        return t.axis.native(stacked)  # (S, B, ...), or (B, ...) for a lone seed

    def _packed(self) -> np.ndarray:
        """What `Trainer.step` samples for `train_step`: (S, 1, B, width), or (1, B, width) for a lone seed."""
        t = self.trainer
        out = np.empty((len(t.runs), 1, t.config.algo.batch_size, batch_width(t.agent.obs_dim, t.act_dim)), np.float32)
        for r, o in zip(t.runs, out):
            r.buffer.sample_packed(r.rng, o[0])
        return t.axis.native(out)

    def update_analysis(self, repeats: int = 20) -> dict:
        """The update alone: seconds per call, FLOPs per call (XLA's count)."""
        t = self.trainer
        batch = jax.device_put(self._batch())
        # XLA counts a loop's body once, so the FLOPs come from a copy with the K iterations unrolled
        # and the seeds vmapped (the same multiplies as seeds mapped one after the other).
        unrolled = Agent(dataclasses.replace(t.agent.config, unroll_iterations=True, seed_mapping="vmap"),
                         t.agent.obs_dim, t.agent.act_dim)
        cost = update_seeds.lower(unrolled, t.state, batch).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        for _ in range(3):
            t.state, _ = update_seeds(t.agent, t.state, batch)
        jax.block_until_ready(t.state)
        start = time.perf_counter()
        for _ in range(repeats):
            t.state, _ = update_seeds(t.agent, t.state, batch)
        jax.block_until_ready(t.state)
        flops = float(cost.get("flops", float("nan")))
        if t.agent.config.agent in ("gradient", "cem"):  # their loops stay rolled: XLA would count one iteration
            flops = float("nan")
        return {"seconds": (time.perf_counter() - start) / repeats, "flops": flops}

    def breakdown(self, repeats: int = 30) -> dict:
        """Milliseconds per step spent in the environment, replay sampling, and the one device
        call that updates and acts (sending the batch, reading the action back)."""
        t = self.trainer
        obs = t.observations()  # (S, 1, obs_dim), as the sampler takes it
        native_obs = t.axis.native(obs)  # as train_step takes it

        def timed(fn) -> float:
            fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            return (time.perf_counter() - start) / repeats * 1e3

        def do_env():
            for r in t.runs:
                r.env.step(np.zeros(t.act_dim, np.float32))

        def do_step():
            if t.sampler.on_device:  # (adds the newest transition again: the same work)
                t.state, _, action, t.act_key = t.sampler(t.agent, t.state, obs, t.act_key)
            else:
                t.state, _, action, t.act_key = train_step(t.agent, t.state, batches, native_obs, t.act_key)
            np.asarray(action)

        batches = self._packed()
        sample = float("nan") if t.sampler.on_device else timed(self._packed)  # (inside the device call)
        out = {"env": timed(do_env), "sample": sample, "step": timed(do_step)}
        for r in t.runs:  # the env steps above left the episodes mid-way: start them again
            r.loop.obs, _ = r.env.reset()
        return out


class StableBaselines:
    def __init__(self, name: str, env: str, library: str):
        import gymnasium as gym

        self.name, self.seeds = name, 1
        if library == "sbx":
            from sbx import SAC

            kwargs = {}
        else:
            from stable_baselines3 import SAC

            kwargs = {"device": "cpu" if jax.devices()[0].platform == "cpu" else "auto"}
        self.model = SAC("MlpPolicy", gym.make(env), learning_starts=RANDOM_STEPS, batch_size=256, train_freq=1,
                         gradient_steps=1, buffer_size=1_000_000, policy_kwargs={"net_arch": [256, 256]}, seed=0,
                         verbose=0, **kwargs)
        self.model.learn(RANDOM_STEPS + WARMUP)

    def run(self, steps: int) -> None:
        self.model.learn(steps, reset_num_timesteps=False)


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each contender's chunk")
    parser.add_argument("--only", choices=["all", "iapo", "peak"], default="all",
                        help="iapo: skip SBX and SB3; peak: only the matrix-multiply measurements")
    parser.add_argument("--match", nargs="+", metavar="NAME",
                        help="only the contenders whose names are among these (e.g. 'iapo direct' 'SBX SAC')")
    args = parser.parse_args()
    if args.only == "peak":
        print_peaks()
        return

    device = jax.devices()[0]
    print(f"# {datetime.date.today()}  {args.env}  jax {jax.__version__} on {device.platform} ({device.device_kind}), "
          f"{platform.processor() or platform.machine()}")
    root = Path(tempfile.mkdtemp(prefix="iapo-bench-"))
    contenders, rss = [], {}
    try:
        specs = [
            ("iapo direct", lambda: Iapo("iapo direct", args.env, root, 1, agent="direct", action_samples=1)),
            ("iapo direct, device replay", lambda: Iapo("iapo direct, device replay", args.env, root, 1,
                                                        replay_sampling="device", agent="direct", action_samples=1)),
            ("iapo direct, 5 seeds", lambda: Iapo("iapo direct, 5 seeds", args.env, root, 5, agent="direct",
                                                  action_samples=1)),
            ("iapo direct N=10", lambda: Iapo("iapo direct N=10", args.env, root, 1, agent="direct")),
            *[(f"iapo iterative K={k}", lambda k=k: Iapo(f"iapo iterative K={k}", args.env, root, 1,
                                                          agent="iterative", iterations=k)) for k in (1, 2, 5)],
            # bfloat16 multiplies inside J (`--matmul-precision`; the default `auto` picks them on a GPU or a
            # CPU with AMX or AVX-512 BF16). The rows above are float32 on every machine.
            ("iapo direct, bfloat16", lambda: Iapo("iapo direct, bfloat16", args.env, root, 1, agent="direct",
                                                   action_samples=1, matmul_precision="bfloat16")),
            ("iapo direct, 5 seeds, bfloat16", lambda: Iapo("iapo direct, 5 seeds, bfloat16", args.env, root, 5,
                                                            agent="direct", action_samples=1,
                                                            matmul_precision="bfloat16")),
            ("iapo iterative K=5, bfloat16", lambda: Iapo("iapo iterative K=5, bfloat16", args.env, root, 1,
                                                          agent="iterative", matmul_precision="bfloat16")),
            *[(f"iapo iterative K=5, 5 seeds{suffix}",
               lambda suffix=suffix, precision=precision: Iapo(f"iapo iterative K=5, 5 seeds{suffix}", args.env, root, 5,
                                                               agent="iterative", matmul_precision=precision))
              for suffix, precision in (("", "float32"), (", bfloat16", "bfloat16"))],
            # Seeds trained together (`iapo train --seeds 0 1`): one vmapped update for both, or one seed
            # after the other inside the compiled call (`--seed-mapping`; auto: map for this agent on a CPU).
            *[(f"iapo iterative K=5, 2 seeds, {how}{suffix}",
               lambda how=how, mapping=mapping, suffix=suffix, precision=precision: Iapo(
                   f"iapo iterative K=5, 2 seeds, {how}{suffix}", args.env, root, 2, agent="iterative",
                   seed_mapping=mapping, matmul_precision=precision))
              for suffix, precision in (("", "float32"), (", bfloat16", "bfloat16"))
              for how, mapping in (("vmapped", "vmap"), ("mapped", "map"))],
            # The other agents of the paper's comparisons, at their defaults.
            ("iapo direct-flow", lambda: Iapo("iapo direct-flow", args.env, root, 1, agent="direct-flow")),
            ("iapo gradient K=5", lambda: Iapo("iapo gradient K=5", args.env, root, 1, agent="gradient")),
            ("iapo cem K=5", lambda: Iapo("iapo cem K=5", args.env, root, 1, agent="cem")),
        ]
        if args.only == "all":
            specs += [("SBX SAC", lambda: StableBaselines("SBX SAC", args.env, "sbx")),
                      ("SB3 SAC", lambda: StableBaselines("SB3 SAC", args.env, "sb3"))]
        if args.match:
            unknown = set(args.match) - {name for name, _ in specs}
            if unknown:
                parser.error(f"--match: no contender named {', '.join(sorted(unknown))}; "
                             f"the contenders are: {', '.join(name for name, _ in specs)}")
            specs = [(name, make) for name, make in specs if name in args.match]
        for name, make in specs:
            before = rss_gib()
            start = time.perf_counter()
            contenders.append(make())
            rss[name] = rss_gib() - before
            print(f"set up {name} in {time.perf_counter() - start:.0f} s")

        # Chunk sizes from a first short timing, so that every chunk takes about --seconds.
        chunk = {}
        for c in contenders:
            start = time.perf_counter()
            c.run(20)
            chunk[c.name] = max(20, int(args.seconds * 20 / (time.perf_counter() - start)))
        rates = {c.name: [] for c in contenders}
        for _ in range(args.rounds):
            for c in contenders:
                start = time.perf_counter()
                c.run(chunk[c.name])
                rates[c.name].append(chunk[c.name] * c.seeds / (time.perf_counter() - start))

        sps = {name: statistics.median(r) for name, r in rates.items()}
        reference = sps.get("SBX SAC")
        print()
        print("| contender | env-steps/s (seed-steps/s) | ms per step | × SBX | RSS added at set-up |")
        print("| --- | --- | --- | --- | --- |")
        for c in contenders:
            ratio = f"{sps[c.name] / reference:.2f}" if reference else "—"
            print(f"| {c.name} | {sps[c.name]:.1f} | {1e3 * c.seeds / sps[c.name]:.2f} | {ratio} | "
                  f"{rss[c.name]:.2f} GiB |")

        print()
        peak = print_peaks()
        print()
        print("| iapo update | ms per update | GFLOP per update | GFLOP/s | % of peak | step: env / sample / update+act (ms) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for c in contenders:
            if isinstance(c, Iapo):
                u, b = c.update_analysis(), c.breakdown()
                gflops = u["flops"] / u["seconds"] / 1e9
                print(f"| {c.name} | {1e3 * u['seconds']:.2f} | {u['flops'] / 1e9:.3f} | {gflops:.1f} | "
                      f"{100 * gflops / peak:.0f}% | {b['env']:.2f} / {b['sample']:.2f} / {b['step']:.2f} |")
        print()
        print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats:
            print(f"peak device memory: {stats.get('peak_bytes_in_use', 0) / 2**30:.2f} GiB")
    finally:
        for c in contenders:
            if isinstance(c, Iapo):
                c.trainer.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
