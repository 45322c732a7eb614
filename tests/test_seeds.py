"""Seeds trained together in one process (vmapped, or one after the other in one call) learn as
they do alone, and resume exactly."""

import csv
import json
import signal

import numpy as np
import pytest

from iapo import checkpoint
from iapo.cli import main

from test_resume import _assert_same_tree, _cli, _rows, _start_and_signal

ARGS = ["--env", "InvertedPendulum-v5", "--agent", "direct", "--action-samples", "3",
        "--hidden-sizes", "16", "16", "--critic-hidden-sizes", "16", "16", "--batch-size", "16",
        "--total-steps", "1500", "--random-steps", "300", "--eval-every", "250", "--eval-episodes", "2",
        "--checkpoint-every", "500", "--buffer-capacity", "700", "--no-progress"]


def _numbers(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in ("env_steps_per_s", "wall_time_s", "train_episode_return")]
    return np.array([[float(r[c]) if r[c] else np.nan for c in columns] for r in rows])


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("group") / "run"
    main(["train", *ARGS, "--seeds", "0", "1", "--run-dir", str(run_dir)])
    return run_dir


def test_group_writes_one_run_per_seed_and_a_joint_curve(group):
    config = json.loads((group / "config.json").read_text())
    assert config["seeds"] == [0, 1]
    for seed in (0, 1):
        seed_config = json.loads((group / f"seed_{seed}" / "config.json").read_text())
        assert seed_config["seed"] == seed and seed_config["seeds"] is None
        assert [s for s, _ in checkpoint.list_checkpoints(group / f"seed_{seed}")] == [1000, 1500]
        assert len(_rows(group / f"seed_{seed}")) == 6
    assert _rows(group / "seed_0") != _rows(group / "seed_1")
    assert (group / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_seed_in_a_group_learns_as_it_does_alone(group, tmp_path):
    main(["train", *ARGS, "--seed", "1", "--run-dir", str(tmp_path / "alone")])
    alone, together = _numbers(tmp_path / "alone"), _numbers(group / "seed_1")
    # vmapped and plain updates may round differently; the curves agree to floating-point noise
    np.testing.assert_allclose(together, alone, rtol=1e-2, atol=1e-4)


def test_a_seed_in_a_group_mapped_one_after_another_learns_as_it_does_alone(tmp_path):
    main(["train", *ARGS, "--seeds", "0", "1", "--seed-mapping", "map", "--run-dir", str(tmp_path / "group")])
    main(["train", *ARGS, "--seed", "1", "--run-dir", str(tmp_path / "alone")])
    # the same unbatched computations, though XLA may fuse them otherwise inside the mapped loop
    np.testing.assert_allclose(_numbers(tmp_path / "group" / "seed_1"), _numbers(tmp_path / "alone"),
                               rtol=1e-2, atol=1e-4)
    for seed in (0, 1):
        newest = checkpoint.list_checkpoints(tmp_path / "group" / f"seed_{seed}")[-1][1]
        assert checkpoint.read(newest)["extra"]["seed_mapping"] == "map"


@pytest.mark.parametrize("began", ["vmap", "map"])
def test_a_resumed_group_keeps_the_seed_mapping_it_began_with(began, tmp_path, monkeypatch):
    from iapo import trainer as trainer_module
    from iapo.config import AgentConfig, TrainConfig

    algo = AgentConfig(agent="iterative", hidden_sizes=(16,), critic_hidden_sizes=(16,), iterations=1,
                       action_samples=2, batch_size=8)
    config = TrainConfig(env="Pendulum-v1", total_steps=60, random_steps=20, eval_every=30, eval_episodes=1,
                         checkpoint_every=30, seeds=(0, 1), run_dir=str(tmp_path / "run"), progress=False, algo=algo)
    from iapo import resolve as resolve_module

    resolve = resolve_module.seed_mapping
    monkeypatch.setattr(resolve_module, "seed_mapping", lambda c: began if c.seed_mapping == "auto" else resolve(c))
    trainer = trainer_module.Trainer(config)
    assert trainer.agent.seed_mapping == began
    trainer.run()
    uninterrupted = []
    for seed in (0, 1):  # as if killed between steps 30 and 60
        path = checkpoint.checkpoint_path(tmp_path / "run" / f"seed_{seed}", 60)
        uninterrupted.append(checkpoint.read(path)["state"])
        path.unlink()
    other = "map" if began == "vmap" else "vmap"
    monkeypatch.setattr(resolve_module, "seed_mapping", lambda c: other if c.seed_mapping == "auto" else resolve(c))
    resumed = trainer_module.Trainer(config, resume=True)
    assert resumed.agent.seed_mapping == began
    resumed.run()
    for seed in (0, 1):  # exact: the same computations as the uninterrupted run's
        newest = checkpoint.list_checkpoints(tmp_path / "run" / f"seed_{seed}")[-1]
        assert newest[0] == 60
        _assert_same_tree(checkpoint.read(newest[1])["state"], uninterrupted[seed])


def test_group_killed_and_resumed_equals_the_uninterrupted_group(group, tmp_path):
    import subprocess

    run_dir = tmp_path / "run"
    code, _, _ = _start_and_signal(run_dir / "seed_1", signal.SIGKILL,
                                   argv=["train", *ARGS, "--seeds", "0", "1", "--run-dir", str(run_dir)])
    assert code == -signal.SIGKILL
    subprocess.run(_cli("train", "--resume", str(run_dir), "--no-progress"), check=True, capture_output=True,
                   timeout=600)
    for seed in (0, 1):
        assert _rows(run_dir / f"seed_{seed}") == _rows(group / f"seed_{seed}")
        final = [checkpoint.read(p)["state"] for s, p in checkpoint.list_checkpoints(run_dir / f"seed_{seed}")
                 if s == 1500]
        reference = [checkpoint.read(p)["state"] for s, p in checkpoint.list_checkpoints(group / f"seed_{seed}")
                     if s == 1500]
        _assert_same_tree(final[0], reference[0])


def _returns(run_dir):
    """(steps, returns (seeds, evaluations)) of a group of seeds 0 and 1."""
    rows = [_rows(run_dir / f"seed_{seed}") for seed in (0, 1)]
    steps = [int(r["step"]) for r in rows[0]]
    return steps, np.array([[float(r["eval_return_mean"]) for r in seed_rows] for seed_rows in rows])


def test_stop_return_ends_the_run_once_every_seed_reaches_it(group, tmp_path):
    from iapo.saved import load_run_config
    from iapo.trial import is_done

    steps, returns = _returns(group)
    lowest, highest = returns.min(axis=0), returns.max(axis=0)  # (evaluations,) over the seeds

    # Reached by every seed before the end: the run ends at the first evaluation that has it,
    # finished, with a checkpoint and a snapshot of that step; its evaluations are the group's.
    target = float(lowest[:-1].max())
    stop = steps[int(np.argmax(lowest >= target))]
    run_dir = tmp_path / "stopped"
    main(["train", *ARGS, "--seeds", "0", "1", "--stop-return", str(target), "--run-dir", str(run_dir)])
    for seed in (0, 1):
        rows = _rows(run_dir / f"seed_{seed}")
        assert [int(r["step"]) for r in rows] == [s for s in steps if s <= stop]
        assert rows == _rows(group / f"seed_{seed}")[:len(rows)]
        assert max(s for s, _ in checkpoint.list_checkpoints(run_dir / f"seed_{seed}")) == stop
        assert max(s for s, _ in checkpoint.list_snapshots(run_dir / f"seed_{seed}")) == stop
    assert is_done(load_run_config(run_dir))
    main(["train", "--resume", str(run_dir), "--no-progress"])  # finished: nothing more to do
    assert [int(r["step"]) for r in _rows(run_dir / "seed_0")] == [s for s in steps if s <= stop]

    # Reached by one seed only at some evaluation, never by both at once: the run goes to the end.
    target = (lowest.max() + highest.max()) / 2
    assert (highest >= target).any() and not (lowest >= target).any()
    run_dir = tmp_path / "full"
    main(["train", *ARGS, "--seeds", "0", "1", "--stop-return", str(target), "--run-dir", str(run_dir)])
    for seed in (0, 1):
        assert _rows(run_dir / f"seed_{seed}") == _rows(group / f"seed_{seed}")
    assert is_done(load_run_config(run_dir))


def test_evaluate_names_a_seed_of_a_group(group, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", str(group)])
    assert "seed_0" in capsys.readouterr().err
    main(["evaluate", str(group / "seed_0"), "--episodes", "1"])
    assert "return" in capsys.readouterr().out


def test_repeated_seeds_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--seeds", "1", "1", "--run-dir", str(tmp_path / "r")])
    assert "must not repeat" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_uses_the_newest_step_every_seed_has(group, tmp_path, capsys):
    """A crash between the seeds' checkpoints of one step: all seeds go back to the step before."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(group, run_dir)
    (run_dir / "config.json").write_text((group / "config.json").read_text().replace(str(group), str(run_dir)))
    for seed in (0, 1):
        path = run_dir / f"seed_{seed}" / "config.json"
        path.write_text(path.read_text().replace(str(group), str(run_dir)))
    checkpoint.checkpoint_path(run_dir / "seed_1", 1500).unlink()
    main(["train", "--resume", str(run_dir), "--no-progress"])
    for seed in (0, 1):
        assert _rows(run_dir / f"seed_{seed}") == _rows(group / f"seed_{seed}")


@pytest.mark.parametrize("seed_mapping", ["vmap", "map"])
def test_nothing_recompiles_after_the_first_steps(tmp_path, seed_mapping):
    from iapo import agent as agent_mod
    from iapo import update as update_mod
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import Trainer

    algo = AgentConfig(agent="iterative", hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=16,
                       iterations=2, action_samples=2, seed_mapping=seed_mapping)
    trainer = Trainer(TrainConfig(env="InvertedPendulum-v5", total_steps=10**6, random_steps=50, eval_episodes=1,
                                  run_dir=str(tmp_path / "run"), progress=False, seeds=(0, 1), algo=algo))
    try:
        for _ in range(60):  # through the random phase into the first updates
            trainer.step()
        trainer.evaluate_and_log(1.0, 1.0)
        before = {**agent_mod.TRACE_COUNT, **update_mod.TRACE_COUNT}
        for _ in range(100):
            trainer.step()
        trainer.evaluate_and_log(1.0, 1.0)
        trainer.save()
        assert {**agent_mod.TRACE_COUNT, **update_mod.TRACE_COUNT} == before
    finally:
        trainer.close()


@pytest.mark.parametrize("seed_mapping", ["vmap", "map"])
@pytest.mark.parametrize("seeds", [1, 3])
def test_train_step_is_the_updates_then_the_action(seeds, seed_mapping):
    """The fused device call of a training step equals its parts called one by one: U updates on
    the unpacked batches, then the training action for the next observations."""
    import jax

    from iapo.agent import Agent, choose_action
    from iapo.replay import Batch
    from iapo.update import update as update_fn
    from iapo.replay import batch_width
    from iapo.train_step import train_step
    from iapo.config import AgentConfig

    agent = Agent(AgentConfig(agent="iterative", hidden_sizes=(16, 16), critic_hidden_sizes=(16, 16), batch_size=8,
                              iterations=2, action_samples=2, seed_mapping=seed_mapping), obs_dim=5, act_dim=2)
    rng = np.random.default_rng(0)
    lead = (seeds,)  # (a lone seed too has the seed axis, as in training)
    stack = lambda xs: jax.tree.map(lambda *x: np.stack(x), *xs)  # noqa: E731
    update = jax.jit(update_fn, static_argnums=0)
    act = jax.jit(choose_action, static_argnums=0)

    def update_seeds(state, batch):  # seed by seed, without the seed axis
        out = [update(agent, *jax.tree.map(lambda x: x[i], (state, batch))) for i in range(seeds)]
        return stack([o[0] for o in out]), stack([o[1] for o in out])

    def act_seeds(state, obs, key):
        out = [act(agent, *jax.tree.map(lambda x: x[i], (state, obs, key))) for i in range(seeds)]
        return stack([o[0] for o in out]), stack([o[1] for o in out])

    def states():  # (each call gives new arrays: the calls below donate theirs)
        return stack([agent.init(jax.random.PRNGKey(s)) for s in range(seeds)])

    packed = rng.normal(size=(*lead, 2, 8, batch_width(5, 2))).astype(np.float32)  # U = 2 updates
    packed[..., 5:7] = np.tanh(packed[..., 5:7])  # actions in (-1, 1)
    packed[..., -1] = rng.random(packed.shape[:-1]) < 0.2  # terminated flags
    obs = rng.normal(size=(*lead, 1, 5)).astype(np.float32)
    key = stack([jax.random.PRNGKey(100 + s) for s in range(seeds)])

    fused_state, infos, action, next_key = train_step(agent, states(), packed, obs, key)

    state = states()
    for u in range(2):
        cols = packed[..., u, :, :]
        batch = Batch(obs=cols[..., :5], action=cols[..., 5:7], reward=cols[..., 7], next_obs=cols[..., 8:13],
                      terminated=cols[..., 13])
        state, info = update_seeds(state, batch)
        np.testing.assert_allclose(np.asarray(infos["critic_loss"])[..., u], np.asarray(info["critic_loss"]),
                                   rtol=1e-5)
    expected_action, expected_key = act_seeds(state, obs, key)
    for a, b in zip(jax.tree.leaves(fused_state), jax.tree.leaves(state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(action), np.asarray(expected_action), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(next_key), np.asarray(expected_key))
    assert np.asarray(action).shape == (*lead, 1, 2)


@pytest.mark.parametrize("seeds, seed_mapping", [(["0", "1"], "vmap"), (["0", "1"], "map"), (None, "auto")])
def test_device_replay_killed_and_resumed_equals_the_uninterrupted_run(group, tmp_path, seeds, seed_mapping):
    """With the replay buffers copied to the device and sampled there, a run (a group, or one
    seed) still resumes exactly: the copies are rebuilt from the checkpointed host buffers, with
    their sampling keys."""
    argv = ["train", *ARGS, "--replay-sampling", "device", "--seed-mapping", seed_mapping,
            *(["--seeds", *seeds] if seeds else [])]
    dirs = (lambda root: [root / f"seed_{s}" for s in seeds]) if seeds else (lambda root: [root])
    reference = tmp_path / "reference"
    main([*argv, "--run-dir", str(reference)])
    run_dir = tmp_path / "run"
    code, _, _ = _start_and_signal(dirs(run_dir)[-1], signal.SIGKILL, [*argv, "--run-dir", str(run_dir)])
    assert code == -signal.SIGKILL
    assert checkpoint.list_checkpoints(dirs(run_dir)[0])[-1][0] < 1500
    main(["train", "--resume", str(run_dir), "--no-progress"])
    for resumed, uninterrupted in zip(dirs(run_dir), dirs(reference)):
        assert _rows(resumed) == _rows(uninterrupted)
        final = [checkpoint.read(p)["state"] for s, p in checkpoint.list_checkpoints(resumed) if s == 1500]
        expected = [checkpoint.read(p)["state"] for s, p in checkpoint.list_checkpoints(uninterrupted) if s == 1500]
        _assert_same_tree(final[0], expected[0])
    assert _rows(group / "seed_0") != _rows(dirs(reference)[0])  # host sampling draws other batches
