"""Run directories and checkpoints written by an earlier version (tests/data/run-0.3.0.tar.gz, made
by iapo 0.3.0) still load, act as they did, evaluate, resume and feed the analyses."""

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

import iapo
from test_cli import run_cli

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "run-0.3.0-expected.json").read_text())


@pytest.fixture
def old_runs(tmp_path):
    """The 0.3.0 run directories, unpacked into a fresh folder (a test never writes into tests/data)."""
    with tarfile.open(DATA / "run-0.3.0.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "run-0.3.0"


@pytest.mark.parametrize("name", sorted(EXPECTED["actions"]))
def test_an_old_run_acts_as_it_did(old_runs, name):
    """The same deterministic actions at the same observations as 0.3.0 computed, from a
    snapshot (step 150) and from the newest checkpoint (step 300), a lone seed and a seed group's."""
    run, step = name.rsplit("@", 1)
    obs = np.asarray(EXPECTED["observations"], np.float32)
    actions = iapo.load(old_runs / run, step=int(step)).act(obs)
    np.testing.assert_allclose(actions, EXPECTED["actions"][name], atol=1e-4)


def _steps(metrics: Path) -> list[int]:
    with metrics.open() as f:
        return [int(float(row["step"])) for row in csv.DictReader(f)]


def test_an_old_run_evaluates_resumes_and_is_analysed(old_runs, tmp_path, capsys):
    """`iapo evaluate`, `iapo train --resume` (a seed group and a lone seed, from 0.3.0's
    checkpoint at step 150 to the end at 300) and an analysis over snapshots all accept 0.3.0's
    run directories."""
    code, out, err = run_cli(["evaluate", str(old_runs / "iterative" / "seed_1"), "--episodes", "1",
                              "--step", "150"], capsys)
    assert code == 0 and "return" in out, err
    for newest in old_runs.rglob("ckpt_000000300.ckpt"):
        newest.unlink()  # resume from the checkpoint at step 150
    for run in ("iterative", "direct"):
        code, _, err = run_cli(["train", "--resume", str(old_runs / run)], capsys)
        assert code == 0, err
    for metrics in (old_runs / "iterative" / "seed_0" / "metrics.csv", old_runs / "direct" / "metrics.csv"):
        assert _steps(metrics) == [150, 300]
        assert (metrics.parent / "checkpoints" / "ckpt_000000300.ckpt").is_file()
    code, _, err = run_cli(["analyze", "gap", str(old_runs / "direct"), "--states", "4", "--max-steps", "20",
                            "--out", str(tmp_path / "gap")], capsys)
    assert code == 0, err
    assert (tmp_path / "gap" / "gap.csv").is_file()
