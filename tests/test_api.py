"""The Python API: the example of docs/python-api.md runs as written, `import iapo` stays light,
and a loaded policy acts in the environment's own bounds, as a training run's evaluation does."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _example() -> str:
    return re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)


def test_the_documented_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example(), str(DOCS), "exec"), namespace)  # noqa: S102 (the documented example, as a user runs it)
    result, evaluations = namespace["result"], namespace["evaluations"]
    assert [row["step"] for row in result.metrics] == [500, 1000, 1500, 2000]
    # the callback saw every evaluation (metrics.csv keeps 6 significant digits)
    np.testing.assert_allclose(evaluations, [row["eval_return_mean"] for row in result.metrics], rtol=1e-5)
    assert (tmp_path / "runs" / "api-example" / "metrics.csv").exists()


def test_import_iapo_is_light():
    code = "import sys, iapo; print('jax' in sys.modules, 'iapo.trainer' in sys.modules, callable(iapo.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_unknown_names_are_errors():
    import iapo

    with pytest.raises(AttributeError):
        iapo.no_such_name  # noqa: B018
    with pytest.raises(iapo.ConfigError, match="unknown config fields: no_such_field"):
        iapo.make_config(no_such_field=1)


def test_errors_name_fields_not_flags(tmp_path):
    """The API's errors name its keyword arguments, not the command line's flags."""
    import iapo

    with pytest.raises(iapo.ConfigError, match=r"^iterations must be >= 1, got 0$"):
        iapo.train(env="Pendulum-v1", iterations=0, run_dir=str(tmp_path / "a"))
    with pytest.raises(iapo.ConfigError, match=r"drop total_steps \(other settings make a new run: start one with "
                                               r"run_dir\)"):
        iapo.train(resume=str(tmp_path / "a"), total_steps=10)
    from iapo.api import _python_words

    assert _python_words("pass --overwrite, not --no-progress or --no-such-flag") == \
        "pass overwrite=True, not progress=False or --no-such-flag"


def test_a_loaded_policy_acts_as_evaluation_does(tmp_path):
    """The deterministic actions of `iapo.load(...).act`, mapped back to (-1, 1), are those that
    the training run's evaluation takes (the agent's mode for the same state), for one observation
    and for a batch; bad observations get a one-line error."""
    import jax

    import iapo
    from iapo.agent import act

    result = iapo.train(env="Pendulum-v1", agent="direct", total_steps=600, random_steps=300, eval_every=300,
                        eval_episodes=1, hidden_sizes=(16,), critic_hidden_sizes=(16,), batch_size=32,
                        run_dir=str(tmp_path / "run"))
    assert result.final_return == result.metrics[-1]["eval_return_mean"]
    policy = iapo.load(result.run_dir)
    assert (policy.env_id, policy.step, policy.act_dim) == ("Pendulum-v1", 600, 1)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    actions = policy.act(obs)
    raw, _ = act(policy.agent, policy.state, obs, jax.random.PRNGKey(0), deterministic=True)
    np.testing.assert_allclose(actions, 2.0 * np.asarray(raw), rtol=1e-5)  # Pendulum's bounds are [-2, 2]
    np.testing.assert_allclose(policy.act(obs[0]), actions[0], rtol=1e-5)
    samples = policy.act(np.repeat(obs[:1], 200, axis=0), deterministic=False)
    assert samples.std() > 0 and np.all(np.abs(samples) <= 2.0)
    with pytest.raises(iapo.ConfigError, match=r"observations have shape \(3,\)"):
        policy.act(np.zeros(4))
    for call, says in [(lambda: policy.act(obs, iterations=2.5), "iterations must be an integer"),
                       (lambda: policy.act(obs, deterministic="no"), "deterministic must be True or False"),
                       (lambda: iapo.load(result.run_dir, seed="x"), "seed must be an integer"),
                       (lambda: iapo.load(result.run_dir, step=600.0), "step must be an integer or None"),
                       (lambda: iapo.load(None), "run_dir must name a run's folder"),
                       (lambda: policy.act(np.zeros(3, complex)), "real numbers: got values of dtype complex128"),
                       (lambda: policy.act(np.array(["1", "2", "3"])), "real numbers: got values of dtype <U1"),
                       (lambda: iapo.train(env="Pendulum-v1", callback=5), "callback must be a function")]:
        with pytest.raises(iapo.ConfigError, match=says):
            call()


def test_fields_given_to_the_api_are_checked_as_a_config_files_are(tmp_path):
    """`iapo.make_config` and `iapo.train` check each field's type and choices before anything is
    written (a run with critic_layout="x" used to train, then could not be loaded), take lists
    where a config file does, and a config file's path as `config`."""
    import iapo

    config = iapo.make_config(env="Pendulum-v1", hidden_sizes=[16, 16], seeds=[0, 1], run_dir=tmp_path / "run")
    assert config.algo.hidden_sizes == (16, 16) and config.seeds == (0, 1) and config.run_dir == str(tmp_path / "run")
    for bad, says in [(dict(critic_layout="x"), "critic_layout"), (dict(total_steps=True), "total_steps = true"),
                      (dict(iterations=2.5), "iterations = 2.5"), (dict(agent="foo"), "agent = \"foo\""),
                      (dict(overwrite="no"), "overwrite = \"no\""), (dict(run_dir=None), "run_dir = null")]:
        with pytest.raises(iapo.ConfigError, match=says):
            iapo.train(env="Pendulum-v1", **{"run_dir": str(tmp_path / "bad"), **bad})
    assert not (tmp_path / "bad").exists()
    (tmp_path / "c.yaml").write_text("env: Pendulum-v1\nagent: direct\n")
    assert iapo.make_config(tmp_path / "c.yaml", iterations=2).algo.iterations == 2
    with pytest.raises(iapo.ConfigError, match="not dict"):
        iapo.make_config({"env": "Pendulum-v1"})
