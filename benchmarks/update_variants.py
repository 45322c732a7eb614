"""The same update compiled in different layouts, timed side by side in one run: what a seed axis
of size 1 costs, and how the twin critics' layout changes the compiled update.

    python benchmarks/update_variants.py [--agent KIND] [--action-samples N] [--rounds 4] [--seeds S]

Variants, all computing the same numbers (the script checks the critics' outputs agree):

- `lone seed`: the update of a state without a seed axis (what `iapo train` runs for one seed),
  with the twin critics as one vmapped ensemble (batched multiplies: `--critic-layout ensemble`);
- `seed axis of 1, vmapped`: the same state with a leading axis of size 1, through `jax.vmap`
  (what a group of one would run);
- `critics one by one`: the twin critics applied one after the other (`--critic-layout
  separate`, the default for the iterative agent on a CPU);
- `critics by einsum`: the ensemble written as einsums with the critic axis leading;
- `critics, unmerged first layer`: the ensemble with a per-critic copy of the input behind an
  optimization barrier, so that XLA cannot merge the two first layers into one multiply.

With `--seeds S` (S > 1) it times instead S seeds' updates three ways: `seeds one by one` (S calls
of the lone update), `seeds vmapped` (one call, `--seed-mapping vmap`) and `seeds mapped` (one
call running the seeds one after the other, `lax.map`: `--seed-mapping map`).

Shapes as in `benchmarks/throughput.py`: Hopper-v5 (11 observation, 3 action dimensions), batch
256, 2x256 networks; direct with N = 1 action sample, the other agents with N = 10 (iterative:
K = 5), float32 multiplies unless `--matmul-precision bfloat16`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent
from iapo.seeds import over_seeds
from iapo.update import update
from iapo.config import AgentConfig

from hopper_batch import ACT_DIM, OBS_DIM, random_batch
from iapo.networks import TwinCritic



def _layers(params):
    mlp = params["params"]["VmapCritic_0"]["MLP_0"]
    return [mlp[name] for name in sorted(mlp, key=lambda n: int(n.split("_")[1]))]


def _inputs(obs, action):
    return jnp.concatenate([jnp.broadcast_to(obs, (*action.shape[:-1], obs.shape[-1])), action], axis=-1)


class Einsum:
    """The twin critic's parameters, applied as einsums with the critic axis leading."""

    barrier = False

    def __init__(self, critic: TwinCritic):
        self.critic = critic

    def init(self, *args):
        return self.critic.init(*args)

    def apply(self, params, obs, action):
        x = _inputs(obs, action)
        h = jnp.broadcast_to(x, (2, *x.shape))
        if self.barrier:
            h = jax.lax.optimization_barrier(h)
        layers = _layers(params)
        for j, layer in enumerate(layers):
            bias = layer["bias"].reshape(2, *([1] * (x.ndim - 1)), -1)
            h = jnp.einsum("e...i,eij->e...j", h, layer["kernel"]) + bias
            h = jax.nn.relu(h) if j < len(layers) - 1 else h
        return h[..., 0]


class Unmerged(Einsum):
    barrier = True


def _agent_with(critic_cls, config: AgentConfig):
    @dataclasses.dataclass(frozen=True)
    class Variant(Agent):
        @functools.cached_property
        def critic(self):
            return critic_cls(TwinCritic(tuple(self.config.critic_hidden_sizes)))

    return Variant(config, OBS_DIM, ACT_DIM)


def _time(variants: dict, states: dict, rounds: int, repeats: int) -> dict:
    """Best milliseconds per call of each variant `name: (agent, fn, batch)`, interleaved rounds."""
    best = {name: float("inf") for name in variants}
    for name, (agent, fn, b) in variants.items():  # compile and warm up
        for _ in range(3):
            states[name], _ = fn(agent, states[name], b)
        jax.block_until_ready(states[name])
    for _ in range(rounds):  # interleaved, so every variant sees the same machine load
        for name, (agent, fn, b) in variants.items():
            start = time.perf_counter()
            for _ in range(repeats):
                states[name], _ = fn(agent, states[name], b)
            jax.block_until_ready(states[name])
            best[name] = min(best[name], (time.perf_counter() - start) / repeats * 1e3)
    return best


def seeds_together(config: AgentConfig, seeds: int, rounds: int, repeats: int) -> dict:
    """S seeds' updates: S lone calls, one vmapped call, one lax.map call (each seed its own batch)."""
    agents = {how: Agent(dataclasses.replace(config, seed_mapping=how), OBS_DIM, ACT_DIM) for how in ("vmap", "map")}
    batches = [random_batch(seed) for seed in range(seeds)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    inits = [agents["vmap"].init(jax.random.PRNGKey(seed)) for seed in range(seeds)]
    stack = functools.partial(jax.tree.map, lambda *xs: jnp.stack(xs))
    lone = jax.jit(update, static_argnums=0, donate_argnums=1)
    together = jax.jit(update_seeds, static_argnums=0, donate_argnums=1)

    def one_by_one(agent, states, _):
        return [lone(agent, state, batch)[0] for state, batch in zip(states, batches)], None

    variants = {"seeds one by one": (agents["vmap"], one_by_one, None),
                "seeds vmapped": (agents["vmap"], together, stacked),
                "seeds mapped": (agents["map"], together, stacked)}
    states = {"seeds one by one": inits, "seeds vmapped": stack(*inits), "seeds mapped": stack(*inits)}
    return _time(variants, states, rounds, repeats)


def update_seeds(agent, state, batch):
    return over_seeds(agent.seed_mapping, functools.partial(update, agent), state, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="direct", choices=["direct", "iterative", "direct-flow", "gradient", "cem"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--action-samples", type=int, default=None, help="default: 1 for direct (as SAC), else 10")
    parser.add_argument("--seeds", type=int, default=1, help="above 1: time the seeds' updates together")
    parser.add_argument("--matmul-precision", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    samples = args.action_samples or (1 if args.agent == "direct" else 10)
    if args.seeds == 1 and args.matmul_precision != "float32":
        parser.error("--matmul-precision bfloat16 needs --seeds above 1 (the critic variants are float32 only)")
    if args.seeds > 1:
        config = AgentConfig(agent=args.agent, action_samples=samples, matmul_precision=args.matmul_precision)
        repeats = max(6, 100 // samples) if args.agent == "direct" else 6
        best = seeds_together(config, args.seeds, args.rounds, repeats)
        print(f"# {args.agent} update, N = {samples}, {args.matmul_precision}, {args.seeds} seeds, "
              f"best of {args.rounds} interleaved rounds of {repeats}")
        print("| variant | ms per update of all seeds | × one by one |")
        print("| --- | --- | --- |")
        for name, ms in best.items():
            print(f"| {name} | {ms:.2f} | {ms / best['seeds one by one']:.2f} |")
        return
    config = AgentConfig(agent=args.agent, action_samples=samples, critic_layout="ensemble",
                         matmul_precision=args.matmul_precision)
    base = Agent(config, OBS_DIM, ACT_DIM)
    batch = random_batch()
    lone = jax.jit(update, static_argnums=0, donate_argnums=1)
    vmapped = jax.jit(lambda agent, state, batch: jax.vmap(functools.partial(update, agent))(state, batch),
                      static_argnums=0, donate_argnums=1)
    add_axis = functools.partial(jax.tree.map, lambda x: x[None])
    variants = {
        "lone seed": (base, lone, lambda s: s, batch),
        "seed axis of 1, vmapped": (base, vmapped, add_axis, add_axis(batch)),
        "critics one by one": (Agent(dataclasses.replace(config, critic_layout="separate"), OBS_DIM, ACT_DIM), lone,
                               lambda s: s, batch),
        "critics by einsum": (_agent_with(Einsum, config), lone, lambda s: s, batch),
        "critics, unmerged first layer": (_agent_with(Unmerged, config), lone, lambda s: s, batch),
    }
    state0 = base.init(jax.random.PRNGKey(0))
    q = base.critic.apply(state0.critic_params, batch.obs, batch.action)
    for name, (agent, *_rest) in variants.items():
        np.testing.assert_allclose(agent.critic.apply(state0.critic_params, batch.obs, batch.action), q,
                                   rtol=1e-4, atol=1e-4, err_msg=name)
    states = {name: shape(agent.init(jax.random.PRNGKey(0))) for name, (agent, _, shape, _) in variants.items()}
    repeats = max(6, 100 // samples) if args.agent == "direct" else 6
    best = _time({name: (agent, fn, b) for name, (agent, fn, _, b) in variants.items()}, states, args.rounds, repeats)
    print(f"# {args.agent} update, N = {samples}, best of {args.rounds} interleaved rounds of {repeats}")
    print("| variant | ms per update | × lone seed |")
    print("| --- | --- | --- |")
    for name, ms in best.items():
        print(f"| {name} | {ms:.2f} | {ms / best['lone seed']:.2f} |")


if __name__ == "__main__":
    main()
