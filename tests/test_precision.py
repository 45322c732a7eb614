"""bfloat16 multiplies with float32 accumulation: the same gradients as float32 where it matters,
the parameters untouched, and a run that keeps the precision it began with."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from iapo import checkpoint, precision
from iapo.agent import Agent
from iapo.config import AgentConfig, TrainConfig
from iapo.errors import ConfigError
from iapo.objective import value_and_grad
from iapo.precision import bf16_matmul

OBS, ACT = 11, 3


def test_bf16_matmul_gradients_are_float32_and_close_to_the_float32_ones():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 64))
    w = jax.random.normal(jax.random.PRNGKey(1), (64, 32)) / 8

    def loss(mm):
        return lambda x, w: jnp.sum(jnp.tanh(mm(x, w)))

    got = jax.grad(loss(bf16_matmul), (0, 1))(x, w)
    want = jax.grad(loss(jnp.matmul), (0, 1))(x, w)
    for g, h in zip(got, want):
        assert g.dtype == jnp.float32 and g.shape == h.shape
        np.testing.assert_allclose(g, h, atol=0.02 * float(jnp.max(jnp.abs(h))))
    # The backward multiplies get bfloat16 operands too (no float32 dot in the gradient).
    hlo = jax.jit(jax.grad(loss(bf16_matmul), (0, 1))).lower(x, w).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert dots and all("bf16" in line for line in dots), dots


def _trained_agent(matmul_precision):
    """An iterative agent whose critics were fitted (300 Adam steps) to a smooth Q with a
    state-dependent optimum, so that grad_lambda J has structure."""
    agent = Agent(AgentConfig(agent="iterative", critic_hidden_sizes=(256, 256), matmul_precision=matmul_precision),
                  OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    proj = jax.random.normal(jax.random.PRNGKey(1), (OBS, ACT)) / np.sqrt(OBS)

    def q_true(s, a):
        return 10.0 - 5.0 * jnp.sum((a - 0.8 * jnp.tanh(s @ proj)) ** 2, axis=-1)

    adam = optax.adam(1e-3)

    @jax.jit
    def fit(params, opt_state, key):
        k_s, k_a = jax.random.split(key)
        s = jax.random.normal(k_s, (256, OBS))
        a = jax.random.uniform(k_a, (256, ACT), minval=-1, maxval=1)
        loss = lambda p: jnp.mean((agent.critic.apply(p, s, a) - q_true(s, a)) ** 2)
        updates, opt_state = adam.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = state.critic_params, adam.init(state.critic_params)
    for key in jax.random.split(jax.random.PRNGKey(2), 300):
        params, opt_state = fit(params, opt_state, key)
    return agent, state.replace(critic_params=params, target_critic_params=params)


def test_objective_gradient_in_bfloat16_points_where_the_float32_one_does():
    agent16, state = _trained_agent("bfloat16")
    agent32 = Agent(dataclasses.replace(agent16.config, matmul_precision="float32"), OBS, ACT)
    assert agent16.objective_critic.bf16_hidden and not agent32.objective_critic.bf16_hidden
    obs = jax.random.normal(jax.random.PRNGKey(3), (128, OBS))
    lam = jnp.concatenate([0.3 * jax.random.normal(jax.random.PRNGKey(4), (128, ACT)), jnp.full((128, ACT), -1.0)], -1)
    key = jax.random.PRNGKey(5)
    j16, _, g16 = jax.jit(lambda s: value_and_grad(agent16.objective(s, obs), lam, key))(state)
    j32, _, g32 = jax.jit(lambda s: value_and_grad(agent32.objective(s, obs), lam, key))(state)
    cosine = jnp.sum(g16 * g32, -1) / (jnp.linalg.norm(g16, axis=-1) * jnp.linalg.norm(g32, axis=-1))
    assert float(jnp.min(cosine)) >= 0.99, np.sort(np.asarray(cosine))[:5]
    # J (between -7 and 10 here) within 1% of its largest magnitude at every state, and within 1%
    # of its mean magnitude on average (measured: 0.7% and 0.5%).
    error = jnp.abs(j16 - j32)
    assert float(jnp.max(error)) <= 0.01 * float(jnp.max(jnp.abs(j32))), error
    assert float(jnp.mean(error)) <= 0.01 * float(jnp.mean(jnp.abs(j32))), error


def test_auto_is_float32_without_fast_bfloat16(monkeypatch):
    monkeypatch.delenv(precision.AUTO_ENV)  # the suite pins it (conftest.py): the hardware's rule here
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve("auto") == "float32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert precision.resolve("auto") == "float32"  # AVX-512 without its BF16 extension
    for flag in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", flag}))
        assert precision.resolve("auto") == "bfloat16", flag
    assert precision.resolve("float32") == "float32"


def test_the_environment_pins_what_auto_means(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    monkeypatch.setenv(precision.AUTO_ENV, "float32")
    assert precision.resolve("auto") == "float32"  # on a CPU whose own choice is bfloat16
    assert precision.resolve("bfloat16") == "bfloat16"  # a precision asked for by name is kept
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setenv(precision.AUTO_ENV, "bfloat16")
    assert precision.resolve("auto") == "bfloat16"
    monkeypatch.setenv(precision.AUTO_ENV, "")
    assert precision.resolve("auto") == "float32"  # empty: the hardware's choice
    monkeypatch.setenv(precision.AUTO_ENV, "fp16")
    with pytest.raises(ConfigError, match="IAPO_AUTO_MATMUL_PRECISION='fp16'"):
        precision.resolve("auto")


def test_a_bad_pin_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from iapo.trainer import Trainer

    monkeypatch.setenv(precision.AUTO_ENV, "fp16")
    config = TrainConfig(env="Pendulum-v1", total_steps=60, random_steps=20, run_dir=str(tmp_path / "run"),
                         progress=False)
    with pytest.raises(ConfigError, match="must be float32 or bfloat16"):
        Trainer(config)
    assert not (tmp_path / "run").exists()


def test_the_suite_and_the_processes_it_starts_resolve_auto_to_float32():
    import subprocess
    import sys

    assert precision.resolve("auto") == "float32"
    code = "from iapo import precision; print(precision.resolve('auto'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "float32"


@pytest.mark.parametrize("began", ["bfloat16", "float32"])
def test_a_resumed_run_keeps_the_precision_it_began_with(began, tmp_path, monkeypatch):
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="iterative", hidden_sizes=(16,), critic_hidden_sizes=(16,), iterations=1,
                       action_samples=2, batch_size=8)
    config = TrainConfig(env="Pendulum-v1", total_steps=60, random_steps=20, eval_every=30, eval_episodes=1,
                         checkpoint_every=30, run_dir=str(tmp_path / "run"), progress=False, algo=algo)
    monkeypatch.setattr(precision, "resolve", lambda setting: began if setting == "auto" else setting)
    trainer = Trainer(config)
    assert trainer.agent.matmul_precision == began
    trainer.run()
    checkpoint.checkpoint_path(tmp_path / "run", 60).unlink()  # as if killed between steps 30 and 60
    other = "float32" if began == "bfloat16" else "bfloat16"
    monkeypatch.setattr(precision, "resolve", lambda setting: other if setting == "auto" else setting)
    resumed = Trainer(config, resume=True)
    assert resumed.agent.matmul_precision == began
    resumed.run()


def test_a_run_is_loaded_with_the_settings_it_ran_with(tmp_path, monkeypatch, capsys):
    """config.json records what every "auto" setting resolved to where the run started, beside the
    settings as asked for; `iapo.load`, `iapo evaluate` and the analyses' loader build the agent
    with those on a machine where "auto" means something else (here: float32 multiplies and
    ensembled critics instead of bfloat16 and separate ones)."""
    import json

    import iapo
    from iapo import resolve
    from iapo.saved import load_agent
    from test_cli import run_cli

    monkeypatch.setenv(precision.AUTO_ENV, "bfloat16")
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--env", "Pendulum-v1", "--agent", "iterative", "--iterations", "1",
                            "--action-samples", "2", "--hidden-sizes", "16", "--critic-hidden-sizes", "16",
                            "--batch-size", "8", "--seeds", "0", "1", "--total-steps", "40", "--random-steps", "20",
                            "--eval-every", "40", "--eval-episodes", "1", "--no-progress", "--run-dir", str(run)], capsys)
    assert code == 0, err
    for path in (run, run / "seed_0", run / "seed_1"):
        data = json.loads((path / "config.json").read_text())
        assert data["algo"]["matmul_precision"] == "auto" and data["algo"]["critic_layout"] == "auto"
        assert data["resolved"] == {"matmul_precision": "bfloat16", "seed_mapping": "map", "critic_layout": "separate",
                                    "replay_sampling": "host"}
    monkeypatch.setenv(precision.AUTO_ENV, "float32")
    real_layout = resolve.critic_layout
    monkeypatch.setattr(resolve, "critic_layout", lambda algo: "ensemble" if algo.critic_layout == "auto"
                        else real_layout(algo))
    _, agent, _, _ = load_agent(run / "seed_1")
    assert agent.matmul_precision == "bfloat16" and agent.critic.separate
    policy = iapo.load(run / "seed_0")
    assert policy.agent.matmul_precision == "bfloat16" and policy.act(np.zeros(3, np.float32)).shape == (1,)
    code, out, err = run_cli(["evaluate", str(run / "seed_0"), "--episodes", "1"], capsys)
    assert code == 0 and "return" in out, err
