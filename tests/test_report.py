"""`iapo plot` on synthetic runs whose statistics are known."""

import csv
import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from iapo import plot
from iapo.config import AgentConfig, TrainConfig
from test_cli import run_cli


def fake_run(path, returns, agent="direct", env="Hopper-v5", seed=0, wall=None, **algo):
    """A run directory with a config.json and a metrics.csv of the given evaluation returns (and
    wall times in seconds, if given)."""
    path.mkdir(parents=True)
    config = TrainConfig(env=env, seed=seed, run_dir=str(path), algo=AgentConfig(agent=agent, **algo))
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    steps = [1000 * (i + 1) for i in range(len(returns))]
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        if wall is None:
            w.writerow(["step", "eval_return_mean", "eval_return_std"])
            w.writerows([[s, r, 0.0] for s, r in zip(steps, returns)])
        else:
            w.writerow(["step", "eval_return_mean", "eval_return_std", "wall_time_s"])
            w.writerows([[s, r, 0.0, t] for s, r, t in zip(steps, returns, wall)])


def test_runs_with_an_action_repeat_are_drawn_in_environment_steps(tmp_path):
    """A run trained with --action-repeat 2 evaluated at its steps 1000 and 2000 stands at 2000 and
    4000 environment steps, beside a run without it; --max-step counts environment steps too."""
    from iapo.plot import find_runs, group_runs

    fake_run(tmp_path / "plain" / "seed_0", [1.0, 2.0, 3.0, 4.0])
    fake_run(tmp_path / "ar2" / "seed_0", [5.0, 6.0])
    config = json.loads((tmp_path / "ar2" / "seed_0" / "config.json").read_text())
    (tmp_path / "ar2" / "seed_0" / "config.json").write_text(json.dumps({**config, "action_repeat": 2}))
    groups = {g.label: g for g in group_runs(find_runs([tmp_path]))}
    assert set(groups) == {"direct action_repeat=1", "direct action_repeat=2"}, set(groups)
    assert groups["direct action_repeat=2"].steps.tolist() == [2000, 4000]
    assert groups["direct action_repeat=1"].steps.tolist() == [1000, 2000, 3000, 4000]
    short = {g.label: g for g in group_runs(find_runs([tmp_path]), max_step=3000)}
    assert short["direct action_repeat=2"].steps.tolist() == [2000]


def test_mean_std_area_and_threshold(tmp_path, capsys):
    # direct: seeds return 0, 10, 20 at steps 1000, 2000, 3000 shifted by -+5: mean 0, 10, 20; sample std 5·√2
    fake_run(tmp_path / "a" / "seed_0", [-5, 5, 15], seed=0)
    fake_run(tmp_path / "a" / "seed_1", [5, 15, 25], seed=1)
    # iterative: one seed logged a step more than the other; only the common steps count
    fake_run(tmp_path / "b" / "seed_0", [100, 300], agent="iterative", seed=0)
    fake_run(tmp_path / "b" / "seed_1", [100, 300, 999], agent="iterative", seed=1)
    out = tmp_path / "fig" / "curves.png"
    code, stdout, err = run_cli(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                                 "--threshold", "Hopper-v5=12"], capsys)
    assert code == 0, err
    rows = {r["label"]: r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    # the agents' default betas differ, so the labels name them
    direct, iterative = rows["direct pessimism=1.0"], rows["iterative pessimism=2.5"]
    assert float(direct["final_mean"]) == pytest.approx(20) and float(direct["final_std"]) == pytest.approx(5 * 2 ** 0.5)
    # trapezoid of the mean curve 0, 10, 20 over 1000-step intervals: 5 * 1000 + 15 * 1000
    assert float(direct["auc"]) == pytest.approx(20_000)
    assert float(direct["mean_over_training"]) == pytest.approx(10)
    assert int(direct["steps_to_threshold"]) == 3000  # mean reaches 12 first at 3000
    assert direct["seed_steps_to_threshold"] == "0:3000 1:2000"  # seed 0 at 15, seed 1 at 15 a step earlier
    assert iterative["seed_steps_to_threshold"] == "0:1000 1:1000"
    assert int(iterative["final_step"]) == 2000 and float(iterative["final_mean"]) == pytest.approx(300)
    assert float(iterative["auc"]) == pytest.approx(200_000) and int(iterative["steps_to_threshold"]) == 1000
    assert "| Hopper-v5 | direct pessimism=1.0 | 2 | 20.0 ± 7.1 | 3000 |" in stdout
    assert "| 3000 (≥ 12; 3000, 2000) |" in stdout
    code, stdout, err = run_cli(["plot", str(tmp_path / "a"), "--out", str(out), "--max-step", "2000",
                                 "--threshold", "Hopper-v5=12"], capsys)
    assert code == 0 and "| not reached (≥ 12; –, 2000) |" in stdout
    code, stdout, err = run_cli(["plot", str(tmp_path / "a"), "--out", str(out), "--max-step", "2000"], capsys)
    assert code == 0 and "| Hopper-v5 | direct | 2 | 10.0 ± 7.1 | 2000 |" in stdout
    code, stdout, err = run_cli(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                                 "--threshold", "Hopper-v5=12"], capsys)
    assert code == 0, err
    # the curves file holds the plotted arrays
    curves = [r for r in csv.DictReader(open(out.with_name("curves_curves.csv"))) if r["label"] == "direct pessimism=1.0"]
    assert [float(r["mean"]) for r in curves] == pytest.approx([0, 10, 20])
    assert [float(r["low"]) for r in curves] == pytest.approx([-5 * 2 ** 0.5, 10 - 5 * 2 ** 0.5, 20 - 5 * 2 ** 0.5], abs=1e-3)


def test_the_table_gives_each_seeds_final_the_final_iqm_and_the_wall_time(tmp_path, capsys):
    """Each seed's final return in seed order, the IQM over seeds at the last common step with its
    bootstrap interval (only with --iqm), and the mean training wall time to that step."""
    finals = [10.0, 20.0, 30.0, 40.0, 1000.0]  # the IQM (25% trimmed mean) drops 10 and 1000
    for seed, final in enumerate(finals):
        fake_run(tmp_path / "runs" / f"seed_{seed}", [0.0, final], seed=seed, wall=[50.0, 100.0 + seed])
    out = tmp_path / "t.png"
    code, stdout, err = run_cli(["plot", str(tmp_path / "runs"), "--out", str(out), "--iqm", "--bootstrap", "500"],
                                capsys)
    assert code == 0, err
    (row,) = csv.DictReader(open(out.with_suffix(".csv")))
    assert row["seed_finals"] == "0:10 1:20 2:30 3:40 4:1000"
    assert float(row["final_iqm"]) == pytest.approx(30.0)
    assert float(row["final_iqm_low"]) <= 30.0 <= float(row["final_iqm_high"])
    assert float(row["final_wall_s"]) == pytest.approx(102.0)
    table_row = stdout.splitlines()[2]
    assert "| 10.0, 20.0, 30.0, 40.0, 1000.0 | 30.0 [" in table_row and table_row.endswith("| 102 | — |")
    # the machines the seeds trained on (machine.json: each start and resume), each named once
    cpu = {"backend": "cpu", "cpu": "CPU A", "devices": ["cpu"]}
    sessions = {0: [cpu, {**cpu, "cpu": "CPU C", "from_step": 2000}],  # (a resume of the finished run: trained nothing)
                1: [cpu, {**cpu, "cpu": "CPU B", "from_step": 1000}],
                2: [{"backend": "gpu", "cpu": "CPU A", "devices": ["H100"]}]}
    for seed, records in sessions.items():
        (tmp_path / "runs" / f"seed_{seed}" / "machine.json").write_text(json.dumps({"sessions": records}))
    (tmp_path / "runs" / "seed_3" / "machine.json").write_text("not json")  # (not iapo's: left out)
    code, stdout, err = run_cli(["plot", str(tmp_path / "runs"), "--out", str(out)], capsys)
    assert code == 0, err
    assert stdout.splitlines()[2].endswith("| 102 | CPU A; CPU B; H100 |")
    (row,) = csv.DictReader(open(out.with_suffix(".csv")))
    assert row["trained_on"] == "CPU A; CPU B; H100"
    code, stdout, err = run_cli(["plot", str(tmp_path / "runs"), "--max-step", "1000", "--out", str(out)], capsys)
    assert code == 0, err  # (CPU B trained seed 1 from step 1000 on)
    (row,) = csv.DictReader(open(out.with_suffix(".csv")))
    assert row["trained_on"] == "CPU A; H100"
    # without --iqm the IQM column is left out, and so is a wall time that was never logged
    fake_run(tmp_path / "old" / "seed_0", [1.0, 2.0])
    code, stdout, err = run_cli(["plot", str(tmp_path / "old"), "--out", str(out)], capsys)
    assert code == 0, err
    assert "IQM" not in stdout.splitlines()[0]
    assert stdout.splitlines()[2].endswith("| 2.0 | 1500 | 1.5 | not reached (≥ 3800; –) | — | — |")
    # two runs of one seed (in two folders) are both listed
    fake_run(tmp_path / "again" / "seed_0", [1.0, 4.0])
    code, stdout, err = run_cli(["plot", str(tmp_path / "old"), str(tmp_path / "again"), "--out", str(out)], capsys)
    assert code == 0, err
    (row,) = csv.DictReader(open(out.with_suffix(".csv")))
    assert row["seed_finals"] == "0:2 0:4" and row["seed_steps_to_threshold"] == "0:- 0:-"


def test_groups_label_the_settings_that_differ(tmp_path):
    for i, k in enumerate((1, 2, 5)):
        for seed in (0, 1):
            fake_run(tmp_path / f"k{k}" / f"seed_{seed}", [i, i], agent="iterative", seed=seed, iterations=k)
    fake_run(tmp_path / "other_env", [0, 0], env="Ant-v5")
    groups = plot.group_runs(plot.find_runs([tmp_path]))
    assert [(g.env, g.label, len(g.runs)) for g in groups] == [
        ("Ant-v5", "direct", 1), ("Hopper-v5", "iterative iterations=1", 2),
        ("Hopper-v5", "iterative iterations=2", 2), ("Hopper-v5", "iterative iterations=5", 2)]
    # settings that differ only in budget or bookkeeping are named by it rather than alike
    config = json.loads((tmp_path / "other_env" / "config.json").read_text())
    fake_run(tmp_path / "other_env_2", [0, 0], env="Ant-v5")
    (tmp_path / "other_env_2" / "config.json").write_text(json.dumps({**config, "eval_every": 500}))
    groups = plot.group_runs(plot.find_runs([tmp_path / "other_env", tmp_path / "other_env_2"]))
    assert [g.label for g in groups] == ["direct eval_every=1000", "direct eval_every=500"]


def test_auto_precision_groups_by_what_it_resolved_to(tmp_path):
    """Runs at matmul_precision "auto" that resolved to bfloat16 on one machine and float32 on
    another are two settings, labelled by it; one that names the precision it resolved to joins
    its group, and a run that predates the record stays "auto"."""
    def resolved(path, precision):
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "resolved": {"matmul_precision": precision}}))

    for seed, precision in ((0, "bfloat16"), (1, "bfloat16"), (2, "float32")):
        fake_run(tmp_path / f"seed_{seed}", [seed, seed], seed=seed)
        resolved(tmp_path / f"seed_{seed}", precision)
    fake_run(tmp_path / "named" / "seed_3", [3, 3], seed=3, matmul_precision="float32")
    fake_run(tmp_path / "old" / "seed_4", [4, 4], seed=4)
    groups = plot.group_runs(plot.find_runs([tmp_path]))
    assert sorted((g.label, sorted(g.seeds)) for g in groups) == [
        ("direct matmul_precision=auto", [4]), ("direct matmul_precision=bfloat16", [0, 1]),
        ("direct matmul_precision=float32", [2, 3])]


def test_iqm_and_its_bootstrap():
    """rliable's IQM is the 25% trimmed mean over seeds at each step, and its interval is the
    percentile bootstrap over seeds (checked against one computed here)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    center, low, high = plot.iqm_interval(x, reps=20000)
    np.testing.assert_allclose(center, stats.trim_mean(x, 0.25, axis=0))
    resampled = x[rng.integers(0, 10, size=(20000, 10))]  # (reps, S, T)
    expected = np.percentile(stats.trim_mean(resampled, 0.25, axis=1), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(low, expected[0], atol=0.03)  # (Monte Carlo error of 20 000 resamples)
    np.testing.assert_allclose(high, expected[1], atol=0.03)  # (Monte Carlo error of 20 000 resamples)
    center, low, high = plot.iqm_interval(np.ones((5, 3)), reps=50)
    np.testing.assert_allclose(np.c_[center, low, high], 1)


def test_default_threshold_is_the_registered_one():
    assert plot.thresholds_for(["Hopper-v5", "Pendulum-v1"], ()) == {"Hopper-v5": 3800.0, "Pendulum-v1": None}
    assert plot.thresholds_for(["Hopper-v5"], ("100",)) == {"Hopper-v5": 100.0}


def test_plot_errors(tmp_path, capsys):
    code, _, err = run_cli(["plot", str(tmp_path)], capsys)
    assert code == 2 and "holds no runs" in err
    fake_run(tmp_path / "r", [1, 2])
    code, _, err = run_cli(["plot", str(tmp_path), "--out", str(tmp_path / "x.txt")], capsys)
    assert code == 2 and "must end in .png" in err
    code, _, err = run_cli(["plot", str(tmp_path), "--threshold", "Hopper-v5=high"], capsys)
    assert code == 2 and "--threshold" in err


def test_return_against_wall_time(tmp_path, capsys):
    # two seeds that took 1 and 2 hours for 2 000 steps: the curve's x is their mean, in hours
    fake_run(tmp_path / "a" / "seed_0", [10, 20], seed=0, wall=[1800, 3600])
    fake_run(tmp_path / "a" / "seed_1", [30, 40], seed=1, wall=[3600, 7200])
    out = tmp_path / "wall.png"
    code, stdout, err = run_cli(["plot", str(tmp_path / "a"), "--out", str(out), "--x", "wall-time"], capsys)
    assert code == 0, err
    curves = list(csv.DictReader(open(tmp_path / "wall_curves.csv")))
    assert [float(r["wall_time_s"]) for r in curves] == pytest.approx([2700, 5400])
    assert [int(r["step"]) for r in curves] == [1000, 2000] and [float(r["mean"]) for r in curves] == [20, 30]
    assert out.read_bytes()[:4] == b"\x89PNG"
    fake_run(tmp_path / "b" / "seed_0", [10, 20], seed=0)  # no wall_time_s column
    code, _, err = run_cli(["plot", str(tmp_path / "b"), "--out", str(out), "--x", "wall-time"], capsys)
    assert code == 2 and "no wall_time_s" in err and "Traceback" not in err


def test_plot_refuses_a_run_whose_action_repeat_is_not_a_count(tmp_path, capsys):
    fake_run(tmp_path / "a", [10, 20], seed=0)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    for bad, says in ((0, "action_repeat = 0 is not a whole number >= 1"),
                      (-2, "action_repeat = -2 is not a whole number >= 1"),
                      (1.5, "action_repeat = 1.5 is not of type int")):
        (tmp_path / "a" / "config.json").write_text(json.dumps({**config, "action_repeat": bad}))
        code, _, err = run_cli(["plot", str(tmp_path / "a"), "--out", str(tmp_path / "a.png")], capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "a.png").exists()


def _benchmark_script(name="overlay_curves"):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    if str(path.parent) not in sys.path:  # (the scripts import each other, as when run from there)
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (as `import` does: dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def test_kept_curves_redraw_against_steps_and_wall_time(tmp_path, capsys, monkeypatch):
    """benchmarks/overlay_curves.py redraws `iapo plot`'s <out>_curves.csv without the runs:
    against steps, or against the file's wall times in hours (`--x wall-time`)."""
    fake_run(tmp_path / "a" / "seed_0", [10, 20], seed=0, wall=[1800, 3600])
    fake_run(tmp_path / "a" / "seed_1", [30, 40], seed=1, wall=[3600, 7200])
    assert run_cli(["plot", str(tmp_path / "a"), "--out", str(tmp_path / "a.png")], capsys)[0] == 0
    overlay, drawn = _benchmark_script(), []
    monkeypatch.setattr(overlay, "save_figure", lambda fig, out: drawn.append(fig))
    for x, want in (("steps", [1000, 2000]), ("wall-time", [0.75, 1.5])):
        monkeypatch.setattr(sys, "argv", ["overlay_curves.py", f"{tmp_path / 'a_curves.csv'}=kept", "--x", x,
                                          "--out", str(tmp_path / "o.png")])
        overlay.main()
        line = drawn[-1].axes[0].lines[0]
        assert list(line.get_xdata()) == pytest.approx(want) and list(line.get_ydata()) == [20, 30]
        assert line.get_label() == "kept (2 seeds)"
    fake_run(tmp_path / "b" / "seed_0", [10, 20], seed=0)  # no wall times: the curves file leaves them empty
    assert run_cli(["plot", str(tmp_path / "b"), "--out", str(tmp_path / "b.png")], capsys)[0] == 0
    monkeypatch.setattr(sys, "argv", ["overlay_curves.py", str(tmp_path / "b_curves.csv"), "--x", "wall-time",
                                      "--out", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit, match="has no wall_time_s at step 1000"):
        overlay.main()


def test_sbx_curves_overlay_with_a_threshold(tmp_path, monkeypatch):
    """benchmarks/learning.py report writes its mean curves in `iapo plot`'s format, and
    overlay_curves.py draws them with a threshold line; a threshold for a task no curve has is refused."""
    for seed, returns in enumerate([[10.0, 100.0], [30.0, 300.0]]):
        path = tmp_path / "runs" / "InvertedPendulum-v5" / "sbx" / f"seed_{seed}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("step,eval_return_mean,eval_return_std,wall_time_s\n"
                        + "".join(f"{1000 * (i + 1)},{r},0.0,{3600.0 * (i + 1) * (seed + 1)}\n"
                                  for i, r in enumerate(returns)))
    learning = _benchmark_script("learning")
    monkeypatch.setattr(learning, "save_figure", lambda fig, out: None)
    monkeypatch.setattr(sys, "argv", ["learning.py", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "s")])
    learning.main()
    with open(tmp_path / "s_curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["label"], r["seeds"], r["step"]) for r in rows] == [("SBX SAC", "2", "1000"), ("SBX SAC", "2", "2000")]
    assert [float(r["mean"]) for r in rows] == [20, 200] and [float(r["std"]) for r in rows] == pytest.approx([10 * 2 ** 0.5, 100 * 2 ** 0.5])  # sample std
    assert [float(r["wall_time_s"]) for r in rows] == [5400, 10800]
    overlay, drawn = _benchmark_script(), []
    monkeypatch.setattr(overlay, "save_figure", lambda fig, out: drawn.append(fig))
    monkeypatch.setattr(sys, "argv", ["overlay_curves.py", str(tmp_path / "s_curves.csv"), "--x", "wall-time",
                                      "--threshold", "InvertedPendulum-v5=1000", "--out", str(tmp_path / "o.png")])
    overlay.main()
    sbx, threshold = drawn[-1].axes[0].lines
    assert list(sbx.get_xdata()) == pytest.approx([1.5, 3.0]) and list(sbx.get_ydata()) == [20, 200]
    assert list(threshold.get_ydata()) == [1000, 1000] and threshold.get_label() == "threshold 1000"
    monkeypatch.setattr(sys, "argv", ["overlay_curves.py", str(tmp_path / "s_curves.csv"),
                                      "--threshold", "Hopper-v5=3000", "--out", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit, match="--threshold names Hopper-v5, which no curve has"):
        overlay.main()


def test_published_sac_compares_like_steps(tmp_path, monkeypatch, capsys):
    """benchmarks/published_sac.py sets each iapo setting beside the published seeds of the same
    task (any version), at the evaluation nearest each asked step: means, sample stds, Welch's
    test and whether iapo's mean is inside the published mean ± std."""
    for seed, returns in enumerate([[10.0, 100.0], [30.0, 140.0], [20.0, 120.0]]):
        fake_run(tmp_path / "runs" / f"seed_{seed}", returns, seed=seed)
    theirs = [150.0, 200.0, 250.0, 100.0]
    published = tmp_path / "pub.csv"
    published.write_text("env,step,seed,return\n" + "".join(
        f"Hopper-v4,{step},{s},{r if step == 1999 else 0.0}\n" for step in (1, 1999) for s, r in enumerate(theirs)))
    script = _benchmark_script("published_sac")
    drawn = []
    monkeypatch.setattr(script, "save_figure", lambda fig, out: drawn.append(fig))
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "runs"), "--published", str(published),
                                      "--steps", "2000", "3000", "--out", str(tmp_path / "cmp")])
    script.main()
    text = (tmp_path / "cmp.md").read_text()
    p = stats.ttest_ind([100, 140, 120], theirs, equal_var=False).pvalue
    row = f"| Hopper-v5 | direct | 120 ± 20 (3) | 100, 140, 120 | Hopper-v4 at 1999 | 175 ± 65 (4) | {p:.2g} | yes |"
    assert row in text.splitlines()
    assert "At 3 000 steps" in text and text.count("| Hopper-v5 |") == 2
    assert "| Hopper-v5 | direct | no evaluation within 1% of this step in the run" in text  # none near 3 000
    assert f" on {script.machine()} by " in text.splitlines()[0]  # the CPU model, not just "x86_64"
    ours, ref = drawn[0].axes[0].lines[0], drawn[0].axes[0].lines[1]
    assert list(ours.get_ydata()) == [20, 120] and list(ref.get_ydata()) == [0, 175]
    assert script.task_of("dm_control/cheetah-run-v0") == "cheetah-run" and script.task_of("Ant-v4") == "Ant"
    # two versions of a task in one panel: each line names its version
    fake_run(tmp_path / "v4" / "seed_0", [10.0, 100.0], env="Hopper-v4")
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "runs"), str(tmp_path / "v4"), "--published",
                                      str(published), "--steps", "2000", "--out", str(tmp_path / "cmp_versions")])
    script.main()
    assert [line.get_label() for line in drawn[-1].axes[0].lines][:2] == ["iapo direct, Hopper-v4 (1 seeds)",
                                                                        "iapo direct, Hopper-v5 (3 seeds)"]
    # a run with --action-repeat 2 is compared in environment steps: its evaluation at step 1000 at 2000
    fake_run(tmp_path / "ar" / "seed_0", [100.0, 200.0], seed=0)
    config = json.loads((tmp_path / "ar" / "seed_0" / "config.json").read_text())
    (tmp_path / "ar" / "seed_0" / "config.json").write_text(json.dumps({**config, "action_repeat": 2}))
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "ar"), "--published", str(published),
                                      "--steps", "2000", "--out", str(tmp_path / "cmp2")])
    script.main()
    assert "| Hopper-v5 | direct | 100 (1) | 100 | Hopper-v4 at 1999 |" in (tmp_path / "cmp2.md").read_text()
    # a published file that counted actions of 2 environment steps: its step 1999 is 3998 environment steps
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "ar"), "--published", str(published),
                                      "--published-steps-per-step", "2", "--steps", "4000", "--out",
                                      str(tmp_path / "cmp3")])
    script.main()
    assert "| Hopper-v5 | direct | 200 (1) | 200 | Hopper-v4 at 3998 |" in (tmp_path / "cmp3.md").read_text()
    # another implementation's seeds, from benchmarks/learning.py's folder, join as their own setting
    for seed, returns in enumerate([[5.0, 110.0], [15.0, 130.0]]):
        path = tmp_path / "learn" / "Hopper-v5" / "sb3" / f"seed_{seed}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("step,eval_return_mean,eval_return_std,wall_time_s\n"
                        + "".join(f"{1000 * (i + 1)},{r},0.0,1.0\n" for i, r in enumerate(returns)))
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "runs"), "--learning", str(tmp_path / "learn"),
                                      "--published", str(published), "--steps", "2000", "--out", str(tmp_path / "cmp4")])
    script.main()
    rows = [line for line in (tmp_path / "cmp4.md").read_text().splitlines() if line.startswith("| Hopper-v5 |")]
    p = stats.ttest_ind([110, 130], theirs, equal_var=False).pvalue
    assert rows[0].startswith("| Hopper-v5 | direct | 120 ± 20 (3) |")
    assert rows[1] == f"| Hopper-v5 | SB3 SAC (PyTorch) | 120 ± 14 (2) | 110, 130 | Hopper-v4 at 1999 | 175 ± 65 (4) | {p:.2g} | yes |"
    assert [line.get_label() for line in drawn[-1].axes[0].lines][:2] == ["iapo direct (3 seeds)", "SB3 SAC (PyTorch) (2 seeds)"]
    monkeypatch.setattr(sys, "argv", ["published_sac.py", "--learning", str(tmp_path / "runs"), "--published",
                                      str(published), "--out", str(tmp_path / "cmp5")])
    with pytest.raises(SystemExit, match="no <env>/<contender>/seed_"):
        script.main()
    # seeds are set side by side at the steps they share, not row by row; a namespaced id is two folders
    for seed, rows in enumerate(["1000,5\n2000,7\n", "2000,9\n4000,11\n"]):
        path = tmp_path / "learn2" / "dm_control" / "hopper-hop-v0" / "sbx" / f"seed_{seed}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("step,eval_return_mean\n" + rows)
    (curves,) = script.learning_curves(tmp_path / "learn2")
    assert curves.env == "dm_control/hopper-hop-v0" and curves.steps.tolist() == [2000]
    assert curves.returns.tolist() == [[7], [9]]
    # what is not a comparison is one line naming the file, the line or the option
    bad = tmp_path / "bad.csv"
    for text, says in (("env,step,seed,return\nHopper-v4,1999,0,nan\n", "bad.csv, line 2: return = 'nan' is not finite"),
                       ("env,step,seed,return\nHopper-v4,1999,0\n", "bad.csv, line 2: no return"),
                       ("env;step;seed;return\n", "no column 'env' (or 'task')"),
                       ("env,step,seed,return\nAnt-v4,1999,0,1\n", "none of the runs' tasks (Hopper) is in")):
        bad.write_text(text)
        monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "runs"), "--published", str(bad),
                                          "--out", str(tmp_path / "cmp6")])
        with pytest.raises(SystemExit, match=re.escape(says)):
            script.main()
    monkeypatch.setattr(sys, "argv", ["published_sac.py", str(tmp_path / "runs"), "--published", str(published),
                                      "--steps", "0", "--out", str(tmp_path / "cmp6")])
    with pytest.raises(SystemExit):
        script.main()
    assert "--steps and --published-steps-per-step must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "cmp6.md").exists()
    # TD-MPC2's dm_control file names its tasks in a `task` column
    dmc = tmp_path / "dmc.csv"
    dmc.write_text("task,step,seed,return\ncheetah-run,100000,1,362.4\ncheetah-run,100000,2,236.9\n")
    read = script.read_published(dmc)["cheetah-run"]
    assert read["env"] == "cheetah-run" and read["returns"].ravel().tolist() == [362.4, 236.9]


def test_env_versions_tells_identical_from_different():
    """benchmarks/env_versions.py: HalfCheetah-v4 and -v5 step identically under the same actions;
    the verdict names a terminal-step reward difference and a different observation size."""
    script = _benchmark_script("env_versions")
    row = script.compare("HalfCheetah", "v4", "v5", episodes=1, max_steps=50)
    assert row["obs_diff"] == 0.0 and row["reward_diff"] == 0.0 and row["steps"] == [50]
    assert script.verdict(row) == "identical"
    terminal = dict(row, reward_diff=1.0)
    assert script.verdict(terminal) == "same dynamics; the reward differs on the terminal step only"
    bigger = dict(row, obs_dim_new=105, reward_diff=1.0, reward_diff_before_end=0.01)
    assert script.verdict(bigger) == ("same dynamics; the observation differs in size; "
                                      "the reward differs at every step")
    assert script.verdict(dict(row, obs_diff=6.9)) == "different dynamics"


def test_update_cost_counts_the_update(monkeypatch):
    """benchmarks/update_cost.py reads the task's sizes and counts the compiled update's FLOPs:
    more action samples in J, more FLOPs; a time is measured."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    script = _benchmark_script("update_cost")
    one = script.cost("Pendulum-v1", "direct", action_samples=1, batch=8, repeats=1)
    four = script.cost("Pendulum-v1", "direct", action_samples=4, batch=8, repeats=1)
    assert (one["obs_dim"], one["act_dim"], one["precision"]) == (3, 1, "float32")
    assert 0 < one["gflop"] < four["gflop"] and one["ms"] > 0


def test_the_gpu_script_runs_in_its_cpu_mode(tmp_path):
    """benchmarks/gpu.sh --cpu runs every step of the GPU check on a tiny task (so that the script
    cannot rot between the sessions that are lent a GPU) and writes its results file, each step
    ending with exit status 0."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # its `python` is ours
    done = subprocess.run(["bash", str(script), "--cpu"], env={**os.environ, "OUT": str(tmp_path), "PATH": path},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = (tmp_path / "gpu-results-cpu.txt").read_text()
    for section in ("## tests of the device paths", "## the update's cost", "## the optimizer's two runs in one scan",
                    "## training throughput"):
        assert section in text
    statuses = [line for line in text.splitlines() if line.startswith("(exit ")]
    assert '"ms_one_scan"' in text
    assert len(statuses) == 6 and all(line == "(exit 0)" for line in statuses), statuses
    assert '"agent": "iterative"' in text and "| iapo direct |" in text


def test_seed_std_is_the_sample_std_over_seeds():
    """The spread over seeds that every table and figure draws: ddof = 1 over axis 0, 0 for one
    seed, from arrays or lists, ints included."""
    from iapo.figures import seed_std

    returns = np.array([[0.0, 10.0], [2.0, 20.0], [4.0, 60.0]])  # (seeds, steps)
    assert seed_std(returns) == pytest.approx([2.0, np.std([10, 20, 60], ddof=1)])
    assert seed_std([1, 3]) == pytest.approx(2 ** 0.5) and isinstance(float(seed_std([1, 3])), float)
    assert seed_std([[5, 7]]).tolist() == [0.0, 0.0]  # one seed: no spread, floats
    assert seed_std([4]) == 0.0
    with pytest.raises(ValueError, match="no seeds"):
        seed_std([])


def test_a_legend_wider_than_its_axes_is_saved_whole(tmp_path):
    """save_figure grows the image to a legend that runs past the figure's right edge (the labels of
    `iapo analyze gap --mean-over-seeds` name a setting's every field), instead of cutting it off."""
    import matplotlib.image

    from iapo.figures import new_figure, save_figure

    widths, legends = {}, {}
    for name, label in (("short", "direct"), ("long", "iterative matmul_precision=bfloat16 " * 4)):
        fig, ax = new_figure(figsize=(6, 4))  # 600 x 400 pixels
        ax.plot([0, 1], [0, 1], label=label)
        legend = ax.legend(loc="lower left", fontsize="small")
        fig.canvas.draw()
        legends[name] = legend.get_window_extent()
        save_figure(fig, tmp_path / f"{name}.png")
        widths[name] = matplotlib.image.imread(tmp_path / f"{name}.png").shape[1]
    assert legends["short"].x1 < 600 < legends["long"].x1  # the long legend runs past the figure's edge
    assert widths["short"] <= 600 < widths["long"] and widths["long"] >= legends["long"].width
    assert not list(tmp_path.glob("*.tmp.png"))


def test_a_curve_of_one_evaluation_is_drawn_as_a_point_with_its_interval(tmp_path, monkeypatch):
    """A setting whose seeds have one evaluation in common so far (a run just started) is a marker with
    an error bar over its seeds, not a line of one point that draws nothing."""
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path, *a, **k: figures.append(fig))
    fake_run(tmp_path / "new" / "seed_0", [10.0], seed=0)
    fake_run(tmp_path / "new" / "seed_1", [20.0], seed=1)
    fake_run(tmp_path / "old" / "seed_0", [1.0, 2.0], agent="iterative")
    plot.plot_runs([tmp_path], tmp_path / "out.png")
    ax = figures[0].axes[0]
    one, two = ax.lines[0], [line for line in ax.lines if len(line.get_xdata()) == 2][0]
    assert one.get_marker() == "o" and list(one.get_xdata()) == [1000] and list(one.get_ydata()) == [15.0]
    (bar,) = ax.containers  # the error bar over the two seeds: 15 ± 7.07 (sample std)
    segment = bar.lines[2][0].get_segments()[0]
    assert segment[:, 1] == pytest.approx([15 - 50 ** 0.5, 15 + 50 ** 0.5])
    assert two.get_marker() in ("None", None, "")


def test_against_tests_each_setting_against_the_reference_at_their_last_common_step(tmp_path, capsys):
    """--against: Welch's t-test of each setting's seeds against the reference setting's, at the last
    step both have evaluated (the reference still training at 2000 steps: compared there)."""
    direct = {0: [0.0, 10.0], 1: [0.0, 14.0], 2: [0.0, 12.0]}
    iterative = {0: [0.0, 20.0, 50.0], 1: [0.0, 25.0, 60.0], 2: [0.0, 18.0, 55.0]}
    for seed in range(3):
        fake_run(tmp_path / "d" / f"seed_{seed}", direct[seed], seed=seed)
        fake_run(tmp_path / "i" / f"seed_{seed}", iterative[seed], agent="iterative", seed=seed)
    fake_run(tmp_path / "other" / "seed_0", [1.0, 2.0], agent="iterative", env="Walker2d-v5")  # (no reference there)
    out = tmp_path / "t.png"
    code, stdout, err = run_cli(["plot", str(tmp_path), "--out", str(out), "--against", "direct"], capsys)
    assert code == 0, err
    rows = {(r["env"], r["label"]): r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    want = stats.ttest_ind([20.0, 25.0, 18.0], [10.0, 14.0, 12.0], equal_var=False).pvalue
    row = rows["Hopper-v5", "iterative pessimism=2.5"]
    assert row["against"] == "direct pessimism=1.0" and int(row["against_step"]) == 2000
    assert float(row["against_p"]) == pytest.approx(want, rel=1e-5)  # (6 digits in the CSV)
    assert rows["Hopper-v5", "direct pessimism=1.0"]["against_p"] == ""
    assert rows["Walker2d-v5", "iterative"]["against"] == ""  # (no test where the env has no reference)
    assert "Welch's p against `direct` (at step)" in stdout.splitlines()[0]
    assert f"| {want:.2g} (2000) |" in stdout and "| (the reference) |" in stdout
    # an exact label wins over one that contains it ("direct" over "direct-flow")...
    for seed in range(2):
        fake_run(tmp_path / "flow" / "d" / f"seed_{seed}", [1.0, 2.0 + seed], seed=seed, env="Pendulum-v1")
        fake_run(tmp_path / "flow" / "f" / f"seed_{seed}", [1.0, 4.0 + seed], agent="direct-flow", seed=seed,
                 env="Pendulum-v1")
    code, stdout, err = run_cli(["plot", str(tmp_path / "flow"), "--out", str(out), "--against", "direct"], capsys)
    assert code == 0, err
    rows = {r["label"]: r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    assert set(rows) == {"direct", "direct-flow"} and rows["direct-flow"]["against"] == "direct"
    # ...and text matching two settings of an env is refused
    code, stdout, err = run_cli(["plot", str(tmp_path / "d"), str(tmp_path / "i"), "--out", str(out),
                                 "--against", "pessimism"], capsys)
    assert code == 2 and "--against 'pessimism' matches 2 settings of Hopper-v5" in err
    assert "Traceback" not in err
    code, stdout, err = run_cli(["plot", str(tmp_path / "d"), "--out", str(out), "--against", "flow"], capsys)
    assert code == 2 and "--against 'flow' matches no setting; the settings are: direct" in err
