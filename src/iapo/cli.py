"""The `iapo` command line: each command's config dataclass (in its own module) becomes a tyro
parser; a function named for the command does the work (`trainer.train`, `sweep.sweep`,
`plot.plot`, `evaluate.evaluate_run`, each analysis's `analyze`). This module only chooses the command, prints the
result, and turns errors into one line and an exit code (2: bad input, 130: interrupted)."""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import signal
import sys
import warnings

import tyro

from iapo import signals
from iapo.errors import ConfigError, IapoError

# name -> module whose `Config` and `analyze(config)` make the command (imported when it runs, so
# that `iapo --help` imports only what the top-level parser needs).
ANALYSES = {name: f"iapo.analysis.{name}"
            for name in ("gap", "overestimation", "modes", "landscape", "optimizers", "iterations", "transfer")}
WRITTEN = {"gap": "amortization gap", "overestimation": "value bias and policy change", "modes": "policy modes",
           "landscape": "objective landscape", "optimizers": "optimizer efficiency",
           "iterations": "evaluation over iterations", "transfer": "zero-shot transfer"}
NUMBERS = {"gap": ".csv", "overestimation": ".csv", "modes": ".json", "landscape": ".json", "optimizers": ".json",
           "iterations": ".csv", "transfer": ".csv"}


@dataclasses.dataclass(frozen=True)
class Analyze:
    """The paper's analyses, each a command of its own: `iapo analyze gap|overestimation|modes|
    landscape|optimizers|iterations|transfer ...` (`iapo analyze NAME --help`)."""


DESCRIPTION = (
    "Iterative amortized policy optimization (Marino et al., NeurIPS 2021). Commands: train, evaluate, sweep, "
    "plot, and analyze (the paper's analyses: " + ", ".join(ANALYSES) + "; `iapo analyze NAME --help`)."
)


def _analyze(args: list[str]) -> None:
    modules = {name: importlib.import_module(path) for name, path in ANALYSES.items()}
    cfg = tyro.extras.subcommand_cli_from_dict(
        {name: module.Config for name, module in modules.items()}, args=args, prog="iapo analyze",
        description="The paper's analyses: each reads run directories and writes a figure and its numbers.",
        config=(tyro.conf.OmitArgPrefixes,),
    )
    name = next(name for name, module in modules.items() if isinstance(cfg, module.Config))
    figure = modules[name].analyze(cfg)
    print(f"{WRITTEN[name]} written to {figure} (numbers: {figure.with_suffix(NUMBERS[name])})")


def _config_file(args: list[str]) -> str | None:
    """The FILE of `--config FILE` (or `--config=FILE`) among `iapo train`'s arguments: given once,
    and not empty (one file gives the defaults, and config.json records which)."""
    found = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    if len(found) > 1:
        raise ConfigError(f"--config is given {len(found)} times ({', '.join(found)}); give one file")
    if found and not found[0].strip():
        raise ConfigError("--config needs a file name, got an empty one")
    return found[0] if found else None


def _refuse_flags_with_resume(args: list[str], cfg) -> None:
    """--resume takes every setting from the run: a setting flag given with it is refused, even
    one at its default value (`--action-repeat 1` on a run made with 2)."""
    from iapo.config import AgentConfig, TrainConfig
    from iapo.trainer import RESUME_FLAGS, refuse_with_resume

    fields = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(AgentConfig)}
    given = []
    for arg in args:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        if name not in fields and name.startswith("no_") and name[3:] in fields:
            name = name[3:]
        if name in fields and name not in ("resume", "algo", *RESUME_FLAGS) and name not in given:
            given.append(name)
    refuse_with_resume(cfg, given)


def _command(args: list[str]) -> int:
    from iapo import evaluate, helptext, plot, sweep, trainer
    from iapo.config import TrainConfig
    from iapo.configfile import read_config_file

    if args[:1] == ["train"]:  # (parsed on its own: a --config file gives the flags' defaults)
        path = _config_file(args[1:])
        default = read_config_file(path) if path else None
        if {"-h", "--help"} & set(args[1:]):  # the flags in groups
            print(helptext.train_help(default))
            return 0
        cfg = tyro.cli(TrainConfig, args=args[1:], prog="iapo train", config=(tyro.conf.OmitArgPrefixes,),
                       default=default)
    else:
        cfg = tyro.extras.subcommand_cli_from_dict(
            {"train": TrainConfig, "evaluate": evaluate.Config, "sweep": sweep.SweepConfig, "plot": plot.Config,
             "analyze": Analyze},  # (`iapo analyze ...` is parsed by `_analyze`; listed here for --help)
            args=args,
            prog="iapo",
            description=DESCRIPTION,
            config=(tyro.conf.OmitArgPrefixes,),
        )
    if isinstance(cfg, TrainConfig):
        if cfg.resume:  # (a flag given at its default value is invisible to `check_resume`: named here)
            _refuse_flags_with_resume(args[1:], cfg)
        return trainer.train(cfg)
    elif isinstance(cfg, sweep.SweepConfig):
        return sweep.sweep(cfg)
    elif isinstance(cfg, plot.Config):
        figure, table = plot.plot(cfg)
        print(f"{table}\ncurves written to {figure} (table: {figure.with_suffix('.md')}, {figure.with_suffix('.csv')})")
    else:
        mean, std, n = evaluate.evaluate_run(cfg)
        print(f"return {mean:.2f} ± {std:.2f} over {n} episodes")
    return 0


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one plain line, like the errors (not Python's `file:line: UserWarning` form),
    without the terminal colour codes that some libraries put in theirs (Gymnasium's checker)."""
    return f"iapo: warning: {_ANSI.sub('', str(message))}\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    handlers = signals.defer_during_startup() if args[:1] == ["train"] else None  # until training can stop cleanly
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        code = 0
        if args[:1] in (["--version"], ["-V"]):
            from importlib.metadata import version

            print(f"iapo {version('iapo')}")
        elif args[:1] == ["analyze"]:
            _analyze(args[1:])
        else:
            code = _command(args)
    except IapoError as exc:  # one line, whatever the text it quotes (an environment's own may span several)
        print(f"iapo: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("iapo: interrupted", file=sys.stderr)
        sys.exit(signals.exit_status(signal.SIGINT))
    except BrokenPipeError:  # the reader went away (`iapo ... --help | head`): stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's flush at exit fails otherwise)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 (only XLA's out-of-memory is translated; the rest propagate)
        if type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(exc):
            print("iapo: error: out of memory on the device (RESOURCE_EXHAUSTED): reduce --hidden-sizes, "
                  "--critic-hidden-sizes, --batch-size, --action-samples or --seeds", file=sys.stderr)
            sys.exit(2)
        raise
    finally:
        warnings.formatwarning = previous
        if handlers:  # (for a caller that runs main in its own process)
            signals.restore(handlers)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
