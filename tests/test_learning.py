"""Each agent learns: Pendulum-v1 evaluation return at least -250 (random play: about -1200).

Small networks, a few fewer samples and iterations, and a larger learning rate keep these under a
minute each on 2 CPU cores; the algorithm is the one of the defaults. Seeds are fixed.
"""


import numpy as np
import pytest

from iapo.config import AgentConfig, TrainConfig
from iapo.logger import read_metrics
from iapo.trainer import train

FAST = dict(hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64), batch_size=128,
            policy_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo",
    [AgentConfig(agent="direct", **FAST), AgentConfig(agent="iterative", iterations=2, action_samples=4, **FAST),
     AgentConfig(agent="iterative", iterations=2, action_samples=4, matmul_precision="bfloat16", **FAST)],
    ids=["direct", "iterative", "iterative-bfloat16"],
)
def test_agent_solves_pendulum(algo, tmp_path):
    config = TrainConfig(env="Pendulum-v1", seed=0, total_steps=10_000, random_steps=1_000,
                         eval_every=1_000, eval_episodes=10, run_dir=str(tmp_path / "run"),
                         progress=False, algo=algo)
    train(config)
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    returns = m["eval_return_mean"]
    assert returns[0] < -700  # the random phase's policy does not swing up
    # It learns to swing the pendulum up and hold it (about -150; a policy that never swings it up
    # stays below -700) and mostly keeps it: the median of the last five evaluations (6k-10k). These
    # short runs at learning rate 1e-3 can lose it again for a few evaluations (a direct agent whose
    # float rounding changed reached -109 at 5k steps, then -831 at 9k), so that median is held to a
    # bound above what never swinging up gives, not to the best level.
    assert max(returns[3:]) >= -200, returns
    assert float(np.median(returns[-5:])) >= -400, returns
