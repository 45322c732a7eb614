"""Config files, output fit for batch jobs, and help that lists what there is (issue 19)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from iapo import helptext
from iapo.cli import main
from iapo.configfile import read_config_file
from test_cli import run_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_shipped_config_file_reads(tmp_path):
    files = sorted(CONFIGS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"quickstart", "iterative", "direct", "sac"}
    for path in files:
        config = read_config_file(path)
        config.validate()
    quick = read_config_file(CONFIGS / "quickstart.yaml")
    assert (quick.env, quick.seeds, quick.algo.agent, quick.algo.iterations) == ("InvertedPendulum-v5", (0, 1, 2),
                                                                                 "iterative", 2)
    sac = read_config_file(CONFIGS / "sac.yaml")
    assert (sac.algo.agent, sac.algo.action_samples, sac.algo.beta, sac.algo.objective_critics) == ("direct", 1, 1.0,
                                                                                                  "online")
    # CleanRL's learning rates, with which iapo's SAC reproduces published SAC (docs/results.md, section 2)
    assert (sac.algo.policy_lr, sac.algo.critic_lr, sac.algo.alpha_lr) == (3e-4, 1e-3, 1e-3)
    assert sac.algo.weight_init == "torch"  # PyTorch's nn.Linear default, as SB3's and CleanRL's SAC


def test_a_config_file_with_flags_overriding_it(tmp_path, capsys):
    """Fields from the file, flags over them; a run's own config.json repeats the run."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "env": "Pendulum-v1", "seeds": "0-1", "total_steps": 400, "random_steps": 200, "eval_every": 200,
        "eval_episodes": 1, "checkpoint_every": 400, "hidden_sizes": [16], "critic_hidden_sizes": [16],
        "batch_size": 16, "agent": "direct", "action_samples": 2, "run_dir": str(tmp_path / "a"),
    }))
    code, out, err = run_cli(["train", "--config", str(path), "--action-samples", "3"], capsys)
    assert code == 0, err
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert written["seeds"] == [0, 1] and written["algo"]["hidden_sizes"] == [16]
    assert written["algo"]["action_samples"] == 3  # the flag won
    # The run's own config.json, varied from the command line.
    code, out, err = run_cli(["train", "--config", str(tmp_path / "a" / "config.json"), "--seeds", "2",
                              "--run-dir", str(tmp_path / "b")], capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "config.json").read_text())
    assert again["seeds"] == [2] and again["algo"] == written["algo"] and again["total_steps"] == 400


def test_yaml_anchors_under_x_keys(tmp_path):
    """Top-level keys that begin with "x-" hold anchors and are not fields; what they define is
    merged with `<<:` at the top level and under `algo`."""
    path = tmp_path / "anchors.yaml"
    path.write_text("x-short: &short {total_steps: 2000, eval_every: 500}\n"
                    "x-small: &small {hidden_sizes: [32], critic_hidden_sizes: [32]}\n"
                    "<<: *short\nenv: Pendulum-v1\nalgo:\n  <<: *small\n  agent: direct\n")
    config = read_config_file(path)
    assert (config.total_steps, config.eval_every, config.env) == (2000, 500, "Pendulum-v1")
    assert (config.algo.hidden_sizes, config.algo.critic_hidden_sizes, config.algo.agent) == ((32,), (32,), "direct")
    path.write_text("xshort: 3\n")  # (only the "x-" prefix)
    with pytest.raises(Exception, match="unknown fields: xshort"):
        read_config_file(path)


@pytest.mark.parametrize("content, message", [
    ("env: Pendulum-v1\nno_such_field: 3\n", "config has unknown fields: no_such_field"),
    ("iterations: five\n", 'config field iterations = "five" is not of type int'),
    ("iterations: 0\n", "bad.yaml: --iterations must be >= 1, got 0"),  # (the file that holds it named)
    ("action_repeat: 0\n", "bad.yaml: --action-repeat must be >= 1, got 0"),
    ("env: [\n", "is not valid YAML: expected the node content, but found '<stream end>' (line 2, column 1)"),
    ("env:\tPendulum-v1\n", "is not valid YAML: found character '\\t' that cannot start any token (line 1, column 5)"),
    ("env: Pendulum-v1\naction_repeat: 2\n  seed: 3\n", "mapping values are not allowed here (line 3, column 7)"),
    ("- 1\n- 2\n", "must hold a mapping of fields"),
])
def test_a_bad_config_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run_cli(["train", "--config", str(path), "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_output_that_is_not_a_terminal_is_one_line_per_evaluation(tmp_path, tiny_args):
    """A batch job's stdout (a pipe): a plain line per evaluation and a summary at the end;
    `--quiet`: nothing."""
    args = ["--env", "InvertedPendulum-v5", "--agent", "direct", "--total-steps", "300", "--random-steps", "100",
            "--eval-every", "100", "--eval-episodes", "1", "--seeds", "0-1", *tiny_args]
    args = [a for a in args if a != "--no-progress"]  # (the default, a bar, is what a terminal would get)
    cmd = [sys.executable, "-m", "iapo.cli", "train"]
    out = subprocess.run([*cmd, *args, "--run-dir", str(tmp_path / "a")], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4, out.stdout
    for step, line in zip((100, 200, 300), lines):
        assert f"step {step}/300  return " in line and "(2 seeds)" in line and "env-steps/s  ETA " in line
    assert "final return" in lines[-1] and "best" in lines[-1] and str(tmp_path / "a") in lines[-1]
    quiet = subprocess.run([*cmd, *args, "--run-dir", str(tmp_path / "b"), "--quiet"], capture_output=True,
                           text=True, check=True)
    assert quiet.stdout == ""


def test_help_lists_every_command_and_readable_flags(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for command in ("train", "evaluate", "sweep", "plot", "analyze"):
        assert command in text
    for analysis in ("gap", "overestimation", "modes", "landscape", "optimizers", "iterations", "transfer"):
        assert analysis in text
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert "--seeds SEED|FIRST-LAST ..." in out and "--config FILE" in out and "--resume RUN_DIR" in out
    assert "{None}|{[INT" not in out
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert titles == list(helptext.GROUPS)
    assert "--cem-elites INT" in out.split("gradient and cem agents:")[1].split("model-based value")[0]
    # A --config file's values are the defaults shown.
    code, out, _ = run_cli(["train", "--config", str(CONFIGS / "quickstart.yaml"), "--help"], capsys)
    flat = " ".join(out.split())
    assert "(default: InvertedPendulum-v5)" in flat and "(default: 0 1 2)" in flat
    code, out, _ = run_cli(["sweep", "--help"], capsys)
    assert all(agent in out for agent in ("direct", "iterative", "direct-flow", "gradient", "cem"))
    # No command shows tyro's placeholder for a field that may be unset.
    for command in (["train"], ["evaluate"], ["sweep"], ["plot"],
                    *[["analyze", a] for a in ("gap", "overestimation", "modes", "landscape", "optimizers",
                                               "iterations", "transfer")]):
        code, out, _ = run_cli([*command, "--help"], capsys)
        assert code == 0 and "{None}" not in out, command
    assert "SOURCE HOST [DIRECT]" in out


def test_help_piped_into_a_closed_reader_is_no_traceback():
    import subprocess
    import sys

    # `iapo plot --help | head -1`: the reader closes the pipe before the help is written.
    proc = subprocess.Popen([sys.executable, "-m", "iapo.cli", "plot", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) != 0 and "Traceback" not in err, err


def test_every_training_field_is_in_one_help_group():
    import dataclasses

    from iapo.config import AgentConfig, TrainConfig

    grouped = [name for names in helptext.GROUPS.values() for name in names]
    fields = [f.name for cls in (TrainConfig, AgentConfig) for f in dataclasses.fields(cls) if f.name != "algo"]
    assert sorted(grouped) == sorted(fields)
    docs = helptext.field_docstrings(TrainConfig) | helptext.field_docstrings(AgentConfig)
    assert set(fields) <= set(docs)  # every flag explained


def test_losses_between_evaluations_and_an_offline_wandb_run(tmp_path, tiny_args, monkeypatch):
    """`--log-every` writes the updates' means to TensorBoard between evaluations; with
    `--wandb-project` and WANDB_MODE=offline, each seed's W&B run is kept in its run directory."""
    from tbreader import scalar_tags

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    code = 0
    try:
        main(["train", "--env", "InvertedPendulum-v5", "--agent", "direct", "--total-steps", "400",
              "--random-steps", "100", "--eval-every", "400", "--log-every", "100", "--eval-episodes", "1",
              "--wandb-project", "iapo-test", "--run-dir", str(run_dir), "--quiet", *tiny_args])
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    tags = scalar_tags(run_dir / "tensorboard")
    assert [s for s, _ in tags["updates/critic_loss"]] == [200, 300, 400]
    assert [s for s, _ in tags["iapo/critic_loss"]] == [400]  # (the evaluation's row: the mean since the last one)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(f.suffix == ".wandb" and f.stat().st_size > 0 for f in runs[0].iterdir())
    run_id = (run_dir / "wandb" / "iapo-run-id").read_text().strip()
    assert runs[0].name.endswith(run_id)
    # A resume may turn logging on or change it (not what the run computes).
    code = 0
    try:
        main(["train", "--resume", str(run_dir), "--log-every", "50", "--quiet"])
    except SystemExit as exc:
        code = exc.code
    assert code == 0  # (finished already: nothing to do, but accepted)
    # The run directory is still iapo's own: --overwrite replaces it, W&B files included.
    main(["train", "--env", "InvertedPendulum-v5", "--agent", "direct", "--total-steps", "150", "--random-steps",
          "100", "--eval-every", "150", "--eval-episodes", "1", "--run-dir", str(run_dir), "--overwrite", "--quiet",
          *tiny_args])
    assert not (run_dir / "wandb").exists()
