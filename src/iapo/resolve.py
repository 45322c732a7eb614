"""The "auto" settings, decided once, on the machine where a run starts.

Four settings may be left to `auto`: how the critics inside J multiply (`matmul_precision`), how
seeds trained together are mapped (`seed_mapping`), how the twin critics are laid out
(`critic_layout`) and where the replay buffer is sampled (`replay_sampling`). A new run decides
them here when it starts and writes what they resolved to into its config.json, under
`"resolved"`, beside the settings as they were asked for; every later command on the run
(resume, `iapo evaluate`, `iapo.load`, the analyses) computes with those values, whatever this
machine's `auto` would mean (`apply`).
"""

from __future__ import annotations

import dataclasses

import jax

from iapo import precision
from iapo.config import AgentConfig, TrainConfig
from iapo.kinds import kind

ALGO_FIELDS = ("matmul_precision", "seed_mapping", "critic_layout")
TRAIN_FIELDS = ("replay_sampling",)


def seed_mapping(algo: AgentConfig) -> str:
    """`seed_mapping` on this backend: `auto` is the kind's CPU mapping on a CPU
    (`kinds.Kind.cpu_seed_mapping`), `vmap` on an accelerator."""
    if algo.seed_mapping != "auto":
        return algo.seed_mapping
    return kind(algo.agent).cpu_seed_mapping if jax.default_backend() == "cpu" else "vmap"


def critic_layout(algo: AgentConfig) -> str:
    """`critic_layout` on this backend: `auto` is the kind's CPU layout on a CPU, `ensemble` on an
    accelerator."""
    if algo.critic_layout != "auto":
        return algo.critic_layout
    return kind(algo.agent).cpu_critic_layout if jax.default_backend() == "cpu" else "ensemble"


def replay_sampling(config: TrainConfig) -> str:
    """`replay_sampling` on this backend: `auto` samples on the host on a CPU (host and device
    share memory), on the device elsewhere."""
    if config.replay_sampling != "auto":
        return config.replay_sampling
    return "host" if jax.default_backend() == "cpu" else "device"


def resolve(config: TrainConfig) -> dict[str, str]:
    """What each "auto" setting of `config` means on this machine, by field name."""
    algo = config.algo
    return {
        "matmul_precision": precision.resolve(algo.matmul_precision),
        "seed_mapping": seed_mapping(algo),
        "critic_layout": critic_layout(algo),
        "replay_sampling": replay_sampling(config),
    }


def apply(config: TrainConfig, resolved: dict[str, str]) -> TrainConfig:
    """`config` with the settings it left to `auto` at the values in `resolved` (those a run
    recorded; a field `resolved` lacks stays as it is)."""
    algo = {name: resolved[name] for name in ALGO_FIELDS
            if name in resolved and getattr(config.algo, name) == "auto"}
    train = {name: resolved[name] for name in TRAIN_FIELDS if name in resolved and getattr(config, name) == "auto"}
    return dataclasses.replace(config, algo=dataclasses.replace(config.algo, **algo), **train)
