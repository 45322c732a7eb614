"""The analysis commands run end to end on tiny trained runs and write their figure and numbers."""

import csv
import math

import numpy as np
import pytest

from test_cli import _assert_one_line_error, run_cli, smoke_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    tiny = ["--hidden-sizes", "16", "16", "--critic-hidden-sizes", "16", "16", "--batch-size", "16", "--no-progress"]
    for kind in ("direct", "iterative"):
        from iapo.cli import main

        main(smoke_args(root / kind, kind, tiny) + ["--snapshot-every", "150"])
    return root


def test_gap_over_training_for_both_agents(runs, tmp_path, capsys):
    out = tmp_path / "gap"
    code, stdout, err = run_cli(["analyze", "gap", str(runs / "direct"), str(runs / "iterative"), "--out", str(out),
                                 "--states", "8", "--max-steps", "50", "--patience", "10", "--samples", "10",
                                 "--optimizer", "adam", "--lr", "1e-2", "--extra-iterations", "2"], capsys)
    assert code == 0, err
    assert "gap.png" in stdout
    with open(out / "gap.csv") as f:
        rows = list(csv.DictReader(f))
    # two snapshots each: direct, iterative with its K = 2, and iterative with 2 more
    assert [(r["agent"], int(r["iterations"]), int(r["step"])) for r in rows] == [
        ("direct", 0, 150), ("direct", 0, 300), ("iterative", 2, 150), ("iterative", 2, 300),
        ("iterative", 4, 150), ("iterative", 4, 300)]
    for r in rows:
        assert math.isfinite(float(r["gap_mean"])) and float(r["gap_std"]) >= 0
        assert 1 <= int(r["ascent_steps"]) <= 50
    assert (out / "gap.png").read_bytes()[:4] == b"\x89PNG" and (out / "gap.json").exists()
    # Fig. 4b: J's improvement at each iterate, for the iterative rows
    with open(out / "improvement.csv") as f:
        improvement = list(csv.DictReader(f))
    assert len(improvement) == 2 * 3 + 2 * 5  # snapshots x (K + 1) iterates, for K = 2 and K = 4
    assert all(float(r["improvement"]) == 0.0 for r in improvement if r["iteration"] == "0")
    assert (out / "improvement.png").read_bytes()[:4] == b"\x89PNG"


def test_gap_over_seeds_averages_the_runs_of_one_setting():
    from iapo.analysis.gap import gap_over_seeds

    def row(run, step, gap, j=1.0, iterations=5):
        return {"run": run, "agent": "iterative", "iterations": iterations, "step": step, "gap_mean": gap,
                "objective_mean": j}

    rows = [row("k5/seed_0", 10, 0.1, 2.0), row("k5/seed_0", 20, 0.5), row("k5/seed_1", 10, 0.3, 4.0),
            row("k2/seed_0", 10, 0.7, iterations=2), row("k5/seed_0", 10, 0.05, iterations=7)]
    settings = {"k5/seed_0": "K=5", "k5/seed_1": "K=5", "k2/seed_0": "K=2"}
    out = gap_over_seeds(rows, settings)
    # in order of first appearance; step 20 has one of K = 5's two seeds only: left out; the
    # extra-iterations rows apart
    assert [(r["setting"], r["iterations"], r["step"], r["seeds"]) for r in out] == [
        ("K=5", 5, 10, 2), ("K=2", 2, 10, 1), ("K=5", 7, 10, 1)]
    assert math.isclose(out[0]["gap_mean"], 0.2) and math.isclose(out[0]["gap_std_over_seeds"], 0.1 * 2 ** 0.5)  # sample std of 0.1 and 0.3
    assert math.isclose(out[0]["objective_mean"], 3.0) and out[1]["gap_std_over_seeds"] == 0.0


def test_an_ascent_that_reaches_max_steps_is_flagged_a_lower_bound(runs, tmp_path, capsys):
    """A gap whose ascent stopped at --max-steps with J still improving is marked in gap.csv and
    gap_over_seeds.csv, and the command warns that those gaps are lower bounds."""
    out = tmp_path / "gap"
    with pytest.warns(UserWarning, match=r"reached --max-steps 2 with J still improving at 2 of 2 snapshots"):
        code, _, err = run_cli(["analyze", "gap", str(runs / "direct"), "--out", str(out), "--states", "4",
                                "--max-steps", "2", "--patience", "50", "--samples", "4", "--mean-over-seeds"], capsys)
    assert code == 0, err
    for name in ("gap.csv", "gap_over_seeds.csv"):
        with open(out / name) as f:
            assert [r["ascent_converged"] for r in csv.DictReader(f)] == ["False", "False"]
    code, _, err = run_cli(["analyze", "gap", str(runs / "direct"), "--out", str(out), "--states", "4",
                            "--max-steps", "5000", "--patience", "5", "--samples", "4"], capsys)
    assert code == 0, err
    with open(out / "gap.csv") as f:
        assert [r["ascent_converged"] for r in csv.DictReader(f)] == ["True", "True"]


def test_the_gap_ascent_benchmark_tells_a_capped_ascent_from_one_that_stopped_by_itself(runs, tmp_path, monkeypatch,
                                                                                         capsys):
    """benchmarks/gap_ascent.py measures each snapshot with each ascent on the same states and
    writes one row each, saying which stopped at their cap (a lower bound)."""
    import sys

    from test_report import _benchmark_script

    script = _benchmark_script("gap_ascent")
    monkeypatch.setattr(script, "ASCENTS", {"capped": dict(optimizer="sgd", lr=1e-4, patience=50, max_steps=2),
                                            "free": dict(optimizer="adam", lr=1e-2, patience=5, max_steps=5000)})
    out = tmp_path / "ascent.md"
    monkeypatch.setattr(sys, "argv", ["gap_ascent.py", f"{runs / 'direct'}:300", "--states", "4", "--out", str(out)])
    script.main()
    rows = [line for line in out.read_text().splitlines() if line.startswith("| InvertedPendulum")]
    assert [r.split(" | ")[1:4:2] for r in rows] == [["300", "capped"], ["300", "free"]]
    assert "| 2 | no: a lower bound |" in rows[0] and "| yes |" in rows[1]


def test_gap_mean_over_seeds_from_the_cli(runs, tmp_path, capsys):
    import json
    import shutil

    # a second seed of the direct run: the same snapshots under seed 1, so one setting of two seeds
    second = tmp_path / "direct-seed1"
    shutil.copytree(runs / "direct", second)
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "seed": 1}))
    out = tmp_path / "gap"
    code, _, err = run_cli(["analyze", "gap", str(runs / "direct"), str(second) + "/", str(runs / "iterative"),
                            "--out", str(out), "--states", "4", "--max-steps", "5", "--patience", "5",
                            "--samples", "4", "--mean-over-seeds"], capsys)
    assert code == 0, err
    with open(out / "gap.csv") as f:
        per_run = list(csv.DictReader(f))
    with open(out / "gap_over_seeds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"].split()[0], r["step"], r["seeds"]) for r in rows] == [
        ("direct", "150", "2"), ("direct", "300", "2"), ("iterative", "150", "1"), ("iterative", "300", "1")]
    for r in rows:
        mine = [float(p["gap_mean"]) for p in per_run if p["agent"] == r["agent"] and p["step"] == r["step"]]
        assert len(mine) == int(r["seeds"])
        assert math.isclose(float(r["gap_mean"]), np.mean(mine), rel_tol=1e-6)
        assert math.isclose(float(r["gap_std_over_seeds"]), np.std(mine, ddof=1) if len(mine) > 1 else 0.0,
                            rel_tol=1e-6, abs_tol=1e-12)
    assert (out / "gap.png").read_bytes()[:4] == b"\x89PNG"


def test_gap_of_a_run_without_snapshots_is_a_one_line_error(runs, tmp_path, capsys):
    tiny = ["--hidden-sizes", "8", "--critic-hidden-sizes", "8", "--batch-size", "8", "--no-progress"]
    assert run_cli(smoke_args(tmp_path / "bare", "direct", tiny, steps=150) + ["--snapshot-every", "0"], capsys)[0] == 0
    code, _, err = run_cli(["analyze", "gap", str(tmp_path / "bare")], capsys)
    _assert_one_line_error(code, err, "has no snapshots")
    code, _, err = run_cli(["analyze", "gap", str(tmp_path / "nothing")], capsys)
    _assert_one_line_error(code, err, "not a run directory")
    code, _, err = run_cli(["analyze", "gap", str(runs / "direct"), "--states", "0"], capsys)
    _assert_one_line_error(code, err, "--states must be >= 1")


def test_optimizer_efficiency_of_an_iterative_run(runs, tmp_path, capsys):
    import json

    out = tmp_path / "opt"
    code, stdout, err = run_cli(["analyze", "optimizers", str(runs / "iterative"), "--out", str(out),
                                 "--states", "8", "--iterations", "20", "--cem-samples", "20", "--cem-elites", "4"],
                                capsys)
    assert code == 0, err
    summary = json.loads((out / "optimizers.json").read_text())
    assert summary["trained_iterations"] == 2 and summary["iterations"] == 20
    assert set(summary["ms_per_iteration"]) == {"iterative", "adam", "cem"}
    assert all(v > 0 for v in summary["ms_per_iteration"].values())
    with open(out / "optimizers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21 and float(rows[0]["adam"]) == 0.0  # improvement over lambda_0 starts at 0
    assert (out / "optimizers.png").read_bytes()[:4] == b"\x89PNG"

    code, _, err = run_cli(["analyze", "optimizers", str(runs / "direct"), "--out", str(tmp_path / "x")], capsys)
    _assert_one_line_error(code, err, "needs an iterative one")


def test_evaluation_beyond_the_training_horizon(runs, tmp_path, capsys):
    out = tmp_path / "it"
    code, stdout, err = run_cli(["analyze", "iterations", str(runs / "iterative"), "--out", str(out),
                                 "--max-iterations", "4", "--episodes", "1", "--states", "8"], capsys)
    assert code == 0, err
    with open(out / "iterations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iterations"]) for r in rows] == [1, 2, 3, 4]  # trained with 2
    assert all(float(r["return_mean"]) > 0 for r in rows)  # the pendulum stays up for some steps
    assert (out / "iterations.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli(["analyze", "iterations", str(runs / "iterative"), "--max-iterations", "0"], capsys)
    _assert_one_line_error(code, err, "--max-iterations must be >= 1")


def test_landscape_with_the_iterative_path_the_optimum_and_the_direct_estimate(runs, tmp_path, capsys):
    import json

    from iapo.cli import main

    tiny = ["--hidden-sizes", "16", "16", "--critic-hidden-sizes", "16", "16", "--batch-size", "16", "--no-progress"]
    common = ["train", "--env", "Reacher-v5", "--total-steps", "200", "--random-steps", "100", "--eval-every", "200",
              "--eval-episodes", "1", "--iterations", "2", "--action-samples", "3", *tiny]
    main([*common, "--agent", "iterative", "--run-dir", str(tmp_path / "it")])
    main([*common, "--agent", "direct", "--run-dir", str(tmp_path / "di")])
    capsys.readouterr()
    out = tmp_path / "land"
    code, _, err = run_cli(["analyze", "landscape", str(tmp_path / "it"), "--direct", str(tmp_path / "di"),
                            "--out", str(out), "--grid-size", "9", "--samples", "8", "--states", "4", "--state", "2"],
                           capsys)
    assert code == 0, err
    result = json.loads((out / "landscape.json").read_text())
    assert np.array(result["objective"]).shape == (9, 9) and np.all(np.isfinite(result["objective"]))
    assert len(result["iterative_path"]) == 3 and len(result["optimum"]) == 2 and len(result["direct"]) == 2
    assert (out / "landscape.png").read_bytes()[:4] == b"\x89PNG"

    code, _, err = run_cli(["analyze", "modes", str(tmp_path / "it"), "--out", str(tmp_path / "modes"),
                            "--states", "6", "--runs", "4", "--grid-size", "7", "--samples", "8"], capsys)
    assert code == 0, err
    modes = json.loads((tmp_path / "modes" / "modes.json").read_text())
    assert np.array(modes["distances"]).shape == (6, 6)  # 4 runs: 6 pairs per state
    assert len(modes["objective"]) == 1 and len(modes["lambdas_at_widest"]) == 4  # Reacher: one pair of dims
    assert (tmp_path / "modes" / "modes.png").read_bytes()[:4] == b"\x89PNG"

    code, _, err = run_cli(["analyze", "landscape", str(tmp_path / "it"), "--dims", "0", "0"], capsys)
    _assert_one_line_error(code, err, "--dims must be two different action dimensions")
    code, _, err = run_cli(["analyze", "landscape", str(runs / "iterative")], capsys)
    _assert_one_line_error(code, err, "needs two")


def test_value_bias_and_policy_change_over_snapshots(runs, tmp_path, capsys):
    out = tmp_path / "over"
    code, _, err = run_cli(["analyze", "overestimation", str(runs / "direct"), str(runs / "iterative"),
                            "--out", str(out), "--states", "4", "--horizon", "20"], capsys)
    assert code == 0, err
    with open(out / "overestimation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["agent"], int(r["step"])) for r in rows] == [
        ("direct", 150), ("direct", 300), ("iterative", 150), ("iterative", 300)]
    assert all(math.isfinite(float(r["value_bias_mean"])) for r in rows)
    assert all(math.isfinite(float(r["mc_return_mean"])) for r in rows)
    kls = [float(r["policy_kl_from_previous"]) for r in rows]
    assert math.isnan(kls[0]) and kls[1] >= 0 and math.isnan(kls[2]) and kls[3] >= 0
    assert (out / "overestimation.png").read_bytes()[:4] == b"\x89PNG"
