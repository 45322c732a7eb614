"""Checkpoint cost and replay-buffer memory with Humanoid-sized observations (348 floats).

    python benchmarks/checkpoint.py [--capacity 1000000] [--interval 10000] [--dir DIR]

A real `Trainer` on Humanoid-v5 (default settings, buffer of `--capacity`) has its buffer filled
with synthetic transitions (episodes of 100 steps). Three checkpoints are timed when the buffer
holds 1 to 3 intervals of transitions, and three more when it is full (`--capacity`), each with
`--interval` transitions added since the checkpoint before. For comparison, the script also times writing
the whole filled buffer at once (what a checkpoint without incremental parts would write) and
reading the newest checkpoint back with all its parts (what a resume does). Memory: the
buffer's arrays against the raw bytes of (observation, action, reward, flags) per transition
and against a layout that stores next observations separately; the process's peak RSS.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from iapo import checkpoint
from iapo.config import TrainConfig
from iapo.trainer import Trainer

EPISODE = 100
REPEATS = 3


def _rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def fill(trainer: Trainer, n: int, rng: np.random.Generator) -> None:
    buffer = trainer.runs[0].buffer
    obs_dim, act_dim = buffer.obs.shape[1], buffer.action.shape[1]
    noise = rng.normal(size=(1024, obs_dim)).astype(np.float32)
    action = np.zeros(act_dim, np.float32)
    obs = noise[buffer.added % 1024]
    for _ in range(n):
        t = buffer.added
        next_obs = noise[(t + 1) % 1024] + np.float32(t % 7)
        end = t % EPISODE == EPISODE - 1
        buffer.add(obs, action, 1.0, next_obs, False, episode_end=end)
        obs = noise[(t + 3) % 1024] if end else next_obs
    trainer.runs[0].loop.step = buffer.added


def timed_save(trainer: Trainer) -> float:
    start = time.perf_counter()
    trainer.save()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--interval", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="iapo-ckpt-bench-"))
    config = TrainConfig(env="Humanoid-v5", total_steps=args.capacity, buffer_capacity=args.capacity,
                         run_dir=str(root / "run"), overwrite=True, progress=False)
    trainer = Trainer(config)
    buffer = trainer.runs[0].buffer
    obs_dim, act_dim = buffer.obs.shape[1], buffer.action.shape[1]
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, {platform.python_version()}; Humanoid-v5: "
          f"obs {obs_dim}, action {act_dim}; capacity {args.capacity:,}; interval {args.interval:,}")

    try:
        small = []
        for _ in range(REPEATS):
            fill(trainer, args.interval, rng)
            small.append(timed_save(trainer))
        print(f"checkpoints with {args.interval:,} to {buffer.size:,} transitions in the buffer: "
              f"median {np.median(small):.3f} s ({', '.join(f'{t:.3f}' for t in small)})")

        fill(trainer, args.capacity - REPEATS * args.interval - buffer.added, rng)
        trainer.save()  # the bulk, untimed: the run's earlier checkpoints would have written it
        full = []
        for _ in range(REPEATS):
            fill(trainer, args.interval, rng)
            full.append(timed_save(trainer))
        print(f"checkpoints with {buffer.size - (REPEATS - 1) * args.interval:,} to {buffer.size:,} transitions "
              f"in the buffer: median {np.median(full):.3f} s ({', '.join(f'{t:.3f}' for t in full)}); "
              f"{np.median(full) / np.median(small):.2f}x")
        print(f"RSS while training (buffer full): {_rss_gib():.2f} GiB")

        start = time.perf_counter()
        step, _, extra = checkpoint.load_latest(trainer.run_dir, trainer.templates[0], with_parts=True)
        load = time.perf_counter() - start
        print(f"reading checkpoint {step} back with its {len(extra['parts'])} parts (a resume): {load:.3f} s")

        start = time.perf_counter()
        checkpoint.write_part(trainer.run_dir, "whole_buffer", buffer.export(buffer.first, buffer.added))
        whole = time.perf_counter() - start
        print(f"writing the whole buffer at once (no incremental parts): {whole:.3f} s "
              f"({whole / np.median(full):.0f}x)")
    finally:
        trainer.close()
        shutil.rmtree(root, ignore_errors=True)

    raw = args.capacity * (4 * obs_dim + 4 * act_dim + 4 + 1)
    separate = args.capacity * (8 * obs_dim + 4 * act_dim + 4 + 1)
    print(f"buffer memory: {buffer.nbytes / 2**20:,.0f} MiB; raw (obs, action, reward, flags) "
          f"{raw / 2**20:,.0f} MiB: {buffer.nbytes / raw:.3f}x; with next_obs stored separately "
          f"{separate / 2**20:,.0f} MiB")
    print(f"final observations kept apart: {buffer.finals_live:,} rows "
          f"({buffer.final_obs.nbytes / 2**20:.1f} MiB allocated)")
    print(f"peak RSS of this process (with the whole-buffer write and the read back): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
