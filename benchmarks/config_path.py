"""Follow a run's configuration from `iapo train` to the run directory: which modules it passes
through, and how often it comes back to a module it had already left.

    python benchmarks/config_path.py [--show]

Runs `iapo train` for a tiny Pendulum-v1 run in this process under a profiler that records every
call of a function of the `iapo` package that receives a configuration (a `TrainConfig` or an
`AgentConfig` among its arguments), from the command line until the `Trainer` is built and has
written config.json (its construction ends). The calls' modules, consecutive repeats folded
and the constructors that `dataclasses` generates left out (building a config is not a step
through the module that declares it),
form the configuration's path; a *return* is a step of that path into a module the path had
visited before. Prints one JSON line: the modules visited, their number, the path's length and
its returns (`--show` prints the path too). It imports only names every version since 0.3 has,
so the same script measures an older source tree (run it with that tree's interpreter).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def trace(argv: list[str]) -> list[str]:
    from iapo import cli
    from iapo import trainer as trainer_module
    from iapo.config import AgentConfig, TrainConfig

    path: list[str] = []
    state = {"done": False}

    def carries_config(frame) -> bool:
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        return any(isinstance(frame.f_locals.get(n), (TrainConfig, AgentConfig)) for n in names)

    def profile(frame, event, arg):
        if state["done"]:
            return
        module = frame.f_globals.get("__name__", "")
        if (event == "call" and module.startswith("iapo.") and carries_config(frame)
                and not frame.f_code.co_qualname.startswith("__create_fn__")):
            name = module[len("iapo."):]
            if not path or path[-1] != name:
                path.append(name)
        if event == "return" and frame.f_code is trainer_module.Trainer.__init__.__code__:
            state["done"] = True

    run = trainer_module.Trainer.run
    trainer_module.Trainer.run = lambda self: self.run_dir  # stop once the run is set up
    sys.setprofile(profile)
    try:
        cli.main(argv)
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
        trainer_module.Trainer.run = run
    return path


def returns(path: list[str]) -> int:
    seen, count = set(), 0
    for i, module in enumerate(path):
        if module in seen:
            count += 1
        seen.add(module)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", action="store_true", help="also print the path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--env", "Pendulum-v1", "--agent", "iterative", "--seeds", "0", "1", "--hidden-sizes", "8",
                "--critic-hidden-sizes", "8", "--total-steps", "20", "--random-steps", "10", "--no-progress",
                "--quiet", "--run-dir", str(Path(tmp) / "run")]
        path = trace(argv)
    result = {"modules": sorted(set(path)), "module_count": len(set(path)), "path_length": len(path),
              "returns": returns(path)}
    if args.show:
        result["path"] = path
    print(json.dumps(result))


if __name__ == "__main__":
    main()
