"""Model-based values: the model learns a known system, H = 0 is the model-free value, the
rollout weights, and the transfer command end to end."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from iapo.agent import Agent
from iapo.config import AgentConfig
from iapo.dynamics import DynamicsModel, lambda_return_weights, model_loss
from test_cli import run_cli


def test_model_learns_a_linear_system():
    obs_dim, act_dim = 3, 2
    rng = np.random.default_rng(0)
    a_mat = 0.1 * rng.normal(size=(obs_dim, obs_dim))
    b_mat = 0.2 * rng.normal(size=(act_dim, obs_dim))
    w = rng.normal(size=obs_dim + act_dim)

    def data(n, seed):
        r = np.random.default_rng(seed)
        s, a = r.uniform(-1, 1, (n, obs_dim)), r.uniform(-1, 1, (n, act_dim))
        return [jnp.asarray(x, jnp.float32) for x in (s, a, np.concatenate([s, a], 1) @ w, s + s @ a_mat + a @ b_mat)]

    model = DynamicsModel((64, 64), obs_dim)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
    adam = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, batch):
        (loss, _), grads = jax.value_and_grad(model_loss, has_aux=True)(params, model, *batch)
        updates, opt_state = adam.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = adam.init(params)
    for i in range(1500):
        params, opt_state, _ = step(params, opt_state, data(128, i))
    s, a, r, s_next = data(1000, 10**6)
    _, info = model_loss(params, model, s, a, r, s_next)
    change = float(jnp.mean(jnp.sum((s_next - s) ** 2, -1)))
    assert float(info["model_state_loss"]) < 0.02 * change  # under 2% of the change's own variance
    assert float(info["model_reward_loss"]) < 0.02 * float(jnp.var(r))


def test_weights_sum_to_one():
    for h in range(4):
        assert sum(lambda_return_weights(h, 0.9)) == pytest.approx(1.0)
    assert lambda_return_weights(0, 0.9) == [1.0]
    assert lambda_return_weights(2, 0.9) == pytest.approx([0.0, 0.1, 0.9])
    assert lambda_return_weights(3, 0.9) == pytest.approx([0.0, 0.1, 0.09, 0.81])


def test_weights_are_retrace_with_on_policy_traces():
    # Q_0 + sum_t (gamma l)^t delta_t, with delta_t the TD errors between successive n-step returns
    rng = np.random.default_rng(0)
    horizon, trace, gamma = 4, 0.9, 0.99
    rewards, q = rng.normal(size=horizon), rng.normal(size=horizon + 1)
    returns = [sum(gamma**t * rewards[t] for t in range(n)) + gamma**n * q[n] for n in range(horizon + 1)]
    retrace = q[0] + sum((gamma * trace) ** t * (rewards[t] + gamma * q[t + 1] - q[t]) for t in range(horizon))
    weighted = sum(w * g for w, g in zip(lambda_return_weights(horizon, trace), returns))
    assert weighted == pytest.approx(retrace)


@pytest.mark.parametrize("agent_kind", ["direct", "iterative"])
def test_horizon_zero_is_the_model_free_value(agent_kind):
    config = AgentConfig(agent=agent_kind, hidden_sizes=(16,), critic_hidden_sizes=(16,), model_hidden_sizes=(16,),
                         iterations=2, action_samples=4)
    free = Agent(config, 5, 2)
    based = Agent(dataclasses.replace(config, value="model-based", horizon=0), 5, 2)
    state = based.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
    lam = jax.random.normal(jax.random.PRNGKey(2), (8, 4))
    key = jax.random.PRNGKey(3)
    j_free, _ = free.objective(state, obs)(lam, key)
    j_based, _ = based.objective(state, obs, jax.random.PRNGKey(4))(lam, key)
    np.testing.assert_array_equal(j_free, j_based)
    # and with a horizon, the rollouts change the value
    longer = Agent(dataclasses.replace(based.config, horizon=2), 5, 2)
    j_longer, _ = longer.objective(state, obs, jax.random.PRNGKey(4))(lam, key)
    assert not np.allclose(j_free, j_longer)


def tiny_run(run_dir, tiny_args, *extra):
    return ["train", "--env", "Pendulum-v1", "--agent", "iterative", "--iterations", "2", "--action-samples", "3",
            "--total-steps", "300", "--random-steps", "100", "--eval-every", "100", "--eval-episodes", "1",
            "--snapshot-every", "100", "--run-dir", str(run_dir), *tiny_args, *extra]


def test_transfer_end_to_end(tmp_path, tiny_args, capsys):
    mf, mb, direct = tmp_path / "mf", tmp_path / "mb", tmp_path / "direct"
    assert run_cli(tiny_run(mf, tiny_args), capsys)[0] == 0
    # the host acts with 1 iteration; the source's optimizer keeps its own 2 in the host
    code, _, err = run_cli(tiny_run(mb, tiny_args, "--iterations", "1", "--value", "model-based", "--horizon", "1",
                                    "--model-hidden-sizes", "16", "--model-pretrain-updates", "20"), capsys)
    assert code == 0, err
    assert run_cli(tiny_run(direct, tiny_args, "--agent", "direct"), capsys)[0] == 0
    out = tmp_path / "transfer"
    code, stdout, err = run_cli(["analyze", "transfer", str(mf), str(mb), str(direct), "--out", str(out),
                                 "--episodes", "2"], capsys)
    assert code == 0, err
    assert (out / "transfer.png").stat().st_size > 0
    import csv
    import json

    rows = list(csv.DictReader(open(out / "transfer.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    summary = json.loads((out / "transfer.json").read_text())
    assert summary["transferred_optimizer"]["iterations"] == 2
    for row, saved in zip(rows, summary["rows"]):
        for name in ("host", "transferred", "source", "direct"):
            assert float(row[f"{name}_return_mean"]) == pytest.approx(saved[f"{name}_return_mean"])
    # a direct run cannot lend its optimizer to an iterative host
    code, _, err = run_cli(["analyze", "transfer", str(direct), str(mb), "--out", str(out)], capsys)
    assert code == 2 and "differ in agent" in err
