import csv
import errno
import os
import pathlib
import json
import subprocess
import sys

import pytest

from iapo.cli import main
from iapo.logger import COLUMNS

from tbreader import scalar_tags

REQUIRED = ["step", "eval_return_mean", "eval_return_std", "train_episode_return", "critic_loss",
            "policy_loss", "alpha", "policy_scale", "env_steps_per_s"]


def run_cli(argv, capsys):
    """Run `iapo argv` in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def smoke_args(run_dir, kind, tiny_args, steps=300):
    return ["train", "--env", "InvertedPendulum-v5", "--agent", kind, "--total-steps", str(steps),
            "--random-steps", "100", "--eval-every", "150", "--eval-episodes", "2",
            "--checkpoint-every", "150", "--iterations", "2", "--action-samples", "3",
            "--run-dir", str(run_dir), *tiny_args]


@pytest.mark.parametrize("kind", ["direct", "iterative", "direct-flow", "gradient", "cem"])
def test_smoke_run_writes_every_file_and_evaluate_reads_it(kind, tmp_path, tiny_args, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(smoke_args(run_dir, kind, tiny_args), capsys)
    assert code == 0, err

    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == "InvertedPendulum-v5" and config["algo"]["agent"] == kind
    assert config["algo"]["iterations"] == 2 and config["total_steps"] == 300

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [150, 300]
    assert list(rows[0]) == list(COLUMNS)
    for column in REQUIRED:
        assert rows[-1][column] != "", column
    assert float(rows[-1]["alpha"]) > 0 and float(rows[-1]["policy_scale"]) > 0

    tags = scalar_tags(run_dir / "tensorboard")
    assert [s for s, _ in tags["iapo/eval_return_mean"]] == [150, 300]
    if kind == "iterative":  # the objective at each iterate lambda_0 .. lambda_K
        assert {f"objective_per_iteration/iteration_{k}" for k in range(3)} <= set(tags)

    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "ckpt_000000150.ckpt", "ckpt_000000300.ckpt", "parts"]
    # the replay buffer is saved incrementally: each checkpoint adds what came since the one before
    assert sorted(p.name for p in (run_dir / "checkpoints" / "parts").iterdir()) == [
        "replay_000000000000_000000000150.part", "replay_000000000150_000000000300.part"]
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, err = run_cli(["evaluate", str(run_dir), "--episodes", "2", "--iterations", "3"], capsys)
    assert code == 0, err
    assert "over 2 episodes" in out and "±" in out


def test_evaluate_records_a_video_or_says_what_to_install(tmp_path, tiny_args, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(smoke_args(run_dir, "direct", tiny_args, steps=150), capsys)[0] == 0
    video = tmp_path / "episode.mp4"
    code, out, err = run_cli(["evaluate", str(run_dir), "--episodes", "1", "--video", str(video)], capsys)
    if code == 0:
        data = video.read_bytes()
        assert len(data) > 1000 and data[4:8] == b"ftyp"  # an MP4 container
    else:
        assert code == 2 and "MUJOCO_GL" in err and "apt-get install" in err
        assert not video.exists()


def _assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iapo: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--env", "Hoper-v5"], ["unknown environment id 'Hoper-v5'", "Hopper-v5"]),
        (["--env", "NoSuchThing-v0"], ["unknown environment id"]),
        (["--env", "CartPole-v1"], ["Discrete action space", "Box"]),
        (["--iterations", "0"], ["--iterations must be >= 1"]),
        (["--action-samples", "0"], ["--action-samples must be >= 1"]),
        (["--policy-lr", "0"], ["--policy-lr must be > 0"]),
        (["--critic-lr", "-1e-3"], ["--critic-lr must be > 0"]),
        (["--alpha-lr", "nan"], ["--alpha-lr must be a finite number"]),
        (["--total-steps", "0"], ["--total-steps must be >= 1"]),
        (["--total-steps", "-5"], ["--total-steps must be >= 1"]),
        (["--gamma", "1.5"], ["--gamma must be in (0, 1]"]),
        (["--gamma", "0"], ["--gamma must be in (0, 1]"]),
        (["--gamma", "inf"], ["--gamma must be a finite number"]),
        (["--stop-return", "nan"], ["--stop-return must be a finite number"]),
        (["--tau", "2"], ["--tau must be in (0, 1]"]),
        (["--pessimism", "-1"], ["--pessimism must be >= 0"]),
        (["--batch-size", "0"], ["--batch-size must be >= 1"]),
        (["--buffer-capacity", "100000000000000"], ["--buffer-capacity is too large: 100000000000000"]),
        (["--buffer-capacity", "10000000000"], ["--buffer-capacity 10000000000 is too large (at most 2**31)"]),
        (["--hidden-sizes", "0"], ["--hidden-sizes"]),
    ],
)
def test_bad_input_gives_one_line_error_and_writes_nothing(flags, needles, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--run-dir", str(run_dir), "--no-progress", *flags], capsys)
    _assert_one_line_error(code, err, *needles)
    assert not run_dir.exists()


def test_run_dir_with_another_run_is_refused_and_kept(tmp_path, tiny_args, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(smoke_args(run_dir, "direct", tiny_args, steps=150), capsys)[0] == 0
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    code, _, err = run_cli(smoke_args(run_dir, "direct", tiny_args, steps=150) + ["--seed", "1"], capsys)
    _assert_one_line_error(code, err, "already holds a different run", "--overwrite")
    code, _, err = run_cli(smoke_args(run_dir, "direct", tiny_args, steps=150), capsys)
    _assert_one_line_error(code, err, "already holds a run with this configuration")
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before

    code, _, err = run_cli(smoke_args(run_dir, "direct", tiny_args, steps=150) + ["--seed", "1", "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    code, _, err = run_cli(["train", "--run-dir", str(target), "--no-progress"], capsys)
    _assert_one_line_error(code, err, "is a file")
    assert target.read_text() == "keep me"


def test_run_dir_that_is_not_writable_is_refused(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "readonly"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    run_dir.chmod(0o500)
    if os.access(run_dir, os.W_OK):  # root ignores permissions: refuse writes the way the OS would
        real = pathlib.Path.write_bytes

        def write_bytes(self, data):
            if self.parent == run_dir:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real(self, data)

        monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    try:
        code, _, err = run_cli(["train", "--run-dir", str(run_dir), "--no-progress"], capsys)
    finally:
        run_dir.chmod(0o700)
    _assert_one_line_error(code, err, "is not writable", "Permission denied")
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"] and (run_dir / "notes.txt").read_text() == "keep me"


def test_evaluate_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(["evaluate", str(tmp_path / "nothing")], capsys)
    _assert_one_line_error(code, err, "not a run directory")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "iapo.cli", "train", "--env", "Hopper-v4x", "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown environment id 'Hopper-v4x'" in proc.stderr


def test_help_documents_the_algorithm_fields():
    proc = subprocess.run([sys.executable, "-m", "iapo.cli", "train", "--help"], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""})
    assert proc.returncode == 0
    for flag in ("--iterations", "--action-samples", "--pessimism", "--objective-critics", "--agent",
                 "--final-iterate-loss", "--target-copy-every", "--eval-iterations"):
        assert flag in proc.stdout, flag


def test_snapshots_are_kept_through_training_and_evaluate_reads_one(tmp_path, tiny_args, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(smoke_args(run_dir, "direct", tiny_args, steps=300) + ["--checkpoint-every", "100",
                                                                                  "--snapshot-every", "100"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == [
        "agent_000000100.ckpt", "agent_000000200.ckpt", "agent_000000300.ckpt"]  # all kept
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == [
        "ckpt_000000200.ckpt", "ckpt_000000300.ckpt"]  # the newest two
    code, out, err = run_cli(["evaluate", str(run_dir), "--step", "100", "--episodes", "1"], capsys)
    assert code == 0 and "return" in out, err
    code, _, err = run_cli(["evaluate", str(run_dir), "--step", "50"], capsys)
    _assert_one_line_error(code, err, "no snapshot or checkpoint of step 50", "100 200 300")


def test_a_warning_is_one_plain_line_without_colour_codes():
    """Gymnasium's checker colours its warnings for a terminal; iapo prints them as its own lines."""
    from iapo.cli import _format_warning

    message = UserWarning("\x1b[33mWARN: The obs returned by the `step()` method is not within the observation space.\x1b[0m")
    assert _format_warning(message, UserWarning, "checker.py", 1) == (
        "iapo: warning: WARN: The obs returned by the `step()` method is not within the observation space.\n")
