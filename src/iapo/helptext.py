"""`iapo train --help`, its flags in groups: the run, evaluation and logging, the algorithm, what
only one agent reads (iterative, direct-flow, gradient and cem, model-based value), engineering.

Each flag's text is the docstring below its field in `config.py`; its default is the value in
force (a `--config` file's, where one is given). Every field belongs to exactly one group
(`tests/test_usability.py` checks it), so a new field must be placed here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import shutil
import textwrap
import types
import typing

from iapo.config import AgentConfig, TrainConfig

GROUPS = {
    "environment and run": ("env", "env_kwargs", "max_episode_steps", "action_repeat", "seed", "seeds", "total_steps", "stop_return", "run_dir", "config", "resume",
                            "overwrite", "random_steps", "buffer_capacity", "updates_per_step"),
    "evaluation, logging and checkpoints": ("eval_every", "eval_episodes", "checkpoint_every", "snapshot_every",
                                            "log_every", "wandb_project", "progress", "quiet"),
    "algorithm (every agent)": ("agent", "iterations", "eval_iterations", "action_samples", "pessimism",
                                "acting_pessimism", "pessimism_std", "objective_critics", "hidden_sizes",
                                "critic_hidden_sizes", "weight_init", "batch_size", "policy_lr", "critic_lr",
                                "alpha_lr", "init_alpha", "gamma", "tau", "target_copy_every", "init_mean",
                                "init_scale", "log_scale_min", "log_scale_max"),
    "iterative agent": ("input_norm", "final_iterate_loss"),
    "direct-flow agent": ("flow_transforms", "flow_hidden_sizes"),
    "gradient and cem agents": ("optimizer_lr", "cem_samples", "cem_elites", "cem_smoothing"),
    "model-based value (Fig. 9)": ("value", "horizon", "retrace_lambda", "model_hidden_sizes", "model_lr",
                                   "model_pretrain_updates"),
    "engineering (same algorithm, other speed)": ("replay_sampling", "critic_layout", "unroll_iterations",
                                                  "matmul_precision", "seed_mapping"),
}
METAVARS = {"seeds": "SEED|FIRST-LAST ...", "config": "FILE", "resume": "RUN_DIR", "stop_return": "RETURN"}


def field_docstrings(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass, from its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _metavar(name: str, hint) -> str:
    if name in METAVARS:
        return METAVARS[name]
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(map(str, args)) + "}"
    if origin in (typing.Union, types.UnionType):
        inner = [_metavar(name, a) for a in args if a is not type(None)]
        return "|".join(inner) + ("|None" if type(None) in args else "")
    if origin is tuple:
        return f"{_metavar(name, args[0])} [{_metavar(name, args[0])} ...]"
    return {int: "INT", float: "FLOAT", str: "STR"}.get(hint, "VALUE")


def _shown(value) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def train_help(default: TrainConfig | None = None) -> str:
    """The text of `iapo train --help`, defaults from `default` (a --config file's settings)."""
    default = default or TrainConfig()
    hints = typing.get_type_hints(TrainConfig, include_extras=True) | typing.get_type_hints(AgentConfig,
                                                                                             include_extras=True)
    docs = field_docstrings(TrainConfig) | field_docstrings(AgentConfig)
    values = {f.name: getattr(default, f.name) for f in dataclasses.fields(TrainConfig)} | {
        f.name: getattr(default.algo, f.name) for f in dataclasses.fields(AgentConfig)}
    width = min(shutil.get_terminal_size((100, 20)).columns, 100)
    out = ["usage: iapo train [--config FILE] [FLAGS]", ""]
    out += textwrap.wrap("Train an agent; every run writes config.json, metrics.csv, TensorBoard events, checkpoints "
                         "and a learning curve to --run-dir. Flags given with --config override the file.", width)
    out.append("")
    for title, names in GROUPS.items():
        out.append(f"{title}:")
        for name in names:
            flag = "--" + name.replace("_", "-")
            if hints[name] is bool:
                head = f"{flag}, --no-{name.replace('_', '-')}"
            else:
                head = f"{flag} {_metavar(name, hints[name])}"
            text = f"{docs.get(name, '')} (default: {_shown(values[name])})"
            out.append(f"  {head}")
            out += textwrap.wrap(text, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)
        out.append("")
    out.append("  -h, --help  show this message and exit")
    return "\n".join(out)
