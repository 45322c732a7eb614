"""Environment steps per second of both agents on a MuJoCo task, after the random phase.

    python benchmarks/throughput.py [--env Hopper-v5] [--steps 300] [--agents direct iterative]

Each agent is trained with the default (paper) settings: the replay buffer is first filled with
`--random-steps` uniformly random transitions, then `--steps` steps with one act and one update
each are timed (after a warm-up that compiles both). The agents run one after the other in one
process, so their ratio is measured under the same machine load.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from iapo.agent import Agent, act, update
from iapo.config import AgentConfig
from iapo.envs import dims, make_env
from iapo.replay import ReplayBuffer


def measure(env_id: str, kind: str, random_steps: int, steps: int, warmup: int = 20) -> float:
    env = make_env(env_id)
    obs_dim, act_dim = dims(env)
    agent = Agent(AgentConfig(agent=kind), obs_dim, act_dim)
    state = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(random_steps + warmup + steps, obs_dim, act_dim)
    obs, _ = env.reset(seed=0)

    def env_step(action):
        nonlocal obs
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, episode_end=terminated or truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs

    for _ in range(random_steps):
        env_step(rng.uniform(-1, 1, act_dim).astype(np.float32))

    def train_step():
        nonlocal state, key
        action, key = act(agent, state, jnp.asarray(obs[None], jnp.float32), key)
        env_step(np.asarray(action[0]))
        state, _ = update(agent, state, buffer.sample(rng, agent.config.batch_size))

    for _ in range(warmup):
        train_step()
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--random-steps", type=int, default=5000)
    parser.add_argument("--agents", nargs="+", default=["direct", "iterative"])
    args = parser.parse_args()
    print(f"# {args.env}, default settings, {args.steps} timed steps after {args.random_steps} random")
    print(f"# jax {jax.__version__} on {jax.devices()[0].platform}, {platform.processor() or platform.machine()}")
    for kind in args.agents:
        sps = measure(args.env, kind, args.random_steps, args.steps)
        print(f"{kind:10s} {sps:8.1f} env-steps/s   {1000 / sps:8.1f} ms/step")


if __name__ == "__main__":
    main()
