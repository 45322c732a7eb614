"""The `iapo` command line: `iapo train ...`, `iapo evaluate RUN_DIR ...`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import tyro

from iapo.config import TrainConfig, train_config_from_dict
from iapo.errors import ConfigError, IapoError


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a saved agent: mean +- std return of the deterministic policy."""

    run_dir: tyro.conf.Positional[str]
    """Run directory written by `iapo train`."""

    episodes: int = 10
    """Number of evaluation episodes."""

    iterations: int | None = None
    """Iterations of the iterative optimizer when acting; unset means the run's own setting."""

    seed: int = 12345
    """Seed of the evaluation environments."""

    video: str | None = None
    """Also record one episode, rendered offscreen, to this .mp4 file."""

    step: int | None = None
    """Evaluate the agent of this step (a snapshot or checkpoint) instead of the newest."""


def run_evaluate(cfg: EvaluateConfig) -> str:
    from iapo.evaluate import evaluate_run

    mean, std, n = evaluate_run(
        Path(cfg.run_dir), cfg.episodes, cfg.iterations, cfg.seed, None if cfg.video is None else Path(cfg.video),
        cfg.step,
    )
    return f"return {mean:.2f} ± {std:.2f} over {n} episodes"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = tyro.extras.subcommand_cli_from_dict(
            {"train": TrainConfig, "evaluate": EvaluateConfig},
            args=args,
            prog="iapo",
            description="Iterative amortized policy optimization (Marino et al., NeurIPS 2021).",
            config=(tyro.conf.OmitArgPrefixes,),
        )
        if isinstance(cfg, TrainConfig):
            from iapo.train import resume, train

            run_dir = resume(Path(cfg.resume), cfg.progress) if cfg.resume else train(cfg)
            print(f"run written to {run_dir}  (learning curve: {run_dir / 'learning_curve.png'})")
        else:
            print(run_evaluate(cfg))
    except IapoError as exc:
        print(f"iapo: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("iapo: interrupted", file=sys.stderr)
        sys.exit(130)


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise IapoError(f"{run_dir} is not a run directory")
    try:
        return train_config_from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise IapoError(f"{run_dir} holds no config.json: not a run directory") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid run configuration: {exc}") from None


if __name__ == "__main__":
    main()
