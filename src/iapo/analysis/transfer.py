"""Zero-shot transfer of a policy optimizer to another objective (Fig. 9).

At every training step for which both runs have a snapshot, the policy optimizer of one run
(the *source*, e.g. an iterative agent trained with the model-free value) is plugged, unchanged,
into the other run's agent (the *host*, e.g. a model-based agent): it acts with the host's
objective (critics, temperature, model) and is evaluated, with its own iteration count and
initial distribution. Beside it: the host's own optimizer,
the source run as it was trained, and optionally a direct run at the same steps. With a
model-free host, this is the generalization of an optimizer to another run's critics.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import jax
import numpy as np
import tyro

from iapo.agent import Agent
from iapo.analysis.common import AnalysisConfig
from iapo.envs import make_run_env
from iapo.errors import IapoError
from iapo.figures import new_figure, save_figure, steps_axis
from iapo.rollout import evaluate
from iapo.saved import load_agent, load_state, snapshots

POLICY_FIELDS = ("agent", "hidden_sizes", "flow_transforms", "flow_hidden_sizes")  # what the optimizer's shape depends on
# How the optimizer runs: these travel with it into the host, so it acts there as it was trained
# (the host keeps its objective: critics, temperature, pessimism, value, action samples).
OPTIMIZER_FIELDS = ("iterations", "eval_iterations", "init_mean", "init_scale", "log_scale_min", "log_scale_max",
                    "optimizer_lr", "cem_samples", "cem_elites", "cem_smoothing")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(AnalysisConfig):
    """Zero-shot transfer (Fig. 9): at every step both runs have a snapshot of, the policy
    optimizer of SOURCE (e.g. an iterative agent trained with the model-free value) acts, unchanged,
    with the objective of HOST (e.g. a model-based agent: its critics, temperature and model); its
    return beside HOST's own optimizer's, SOURCE's as trained and a DIRECT run's. With a
    model-free HOST, it is the generalization of an optimizer to another run's critics. Writes
    transfer.csv, transfer.json and transfer.png."""

    source: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="SOURCE")]
    """Run whose policy optimizer is transferred."""

    host: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="HOST")]
    """Run whose objective it acts with (same environment and policy network)."""

    direct: Annotated[tyro.conf.Positional[str | None], tyro.conf.arg(metavar="[DIRECT]")] = None
    """Optionally, a direct run evaluated at the same steps."""

    out: str = "analysis/transfer"

    episodes: int = 5
    """Evaluation episodes per agent and step."""

    seed: int = 12345
    """Seed of the evaluation environments."""

    counts = ("episodes",)


def analyze(cfg: Config) -> Path:
    """`iapo analyze transfer`: out/transfer.csv, .json and .png; returns the figure's path."""
    cfg.validate()
    source, host, out, episodes, seed = Path(cfg.source), Path(cfg.host), Path(cfg.out), cfg.episodes, cfg.seed
    direct = None if cfg.direct is None else Path(cfg.direct)
    src_config, src_agent, _, _ = load_agent(source)
    host_config, host_agent, _, _ = load_agent(host)
    if src_config.env != host_config.env:
        raise IapoError(f"{source} trained on {src_config.env} but {host} on {host_config.env}")
    for field in POLICY_FIELDS:
        a, b = getattr(src_config.algo, field), getattr(host_config.algo, field)
        if a != b:
            raise IapoError(f"the policy optimizers differ in {field} ({a} in {source}, {b} in {host}): "
                            "the source's cannot run in the host")
    moved = {field: getattr(src_config.algo, field) for field in OPTIMIZER_FIELDS}
    plugged_agent = Agent(dataclasses.replace(host_config.algo, **moved), host_agent.obs_dim, host_agent.act_dim)
    runs = {"source": (source, src_agent), "host": (host, host_agent)}
    if direct is not None:
        direct_config, direct_agent, _, _ = load_agent(direct)
        if direct_config.env != host_config.env:
            raise IapoError(f"{direct} trained on {direct_config.env}, not {host_config.env}")
        runs["direct"] = (direct, direct_agent)
    saved = {name: snapshots(path) for name, (path, _) in runs.items()}
    steps = sorted(set(saved["source"]) & set(saved["host"]))
    if not steps:
        raise IapoError(f"{source} and {host} have no snapshot at a common step")
    envs = [make_run_env(host_config) for _ in range(episodes)]
    seeds = [seed + i for i in range(episodes)]
    rows = []
    try:
        for step in steps:
            states = {name: load_state(saved[name][step], agent) for name, (_, agent) in runs.items()
                      if step in saved[name]}
            plugged = states["host"].replace(policy_params=states["source"].policy_params)
            evaluations = {
                "transferred": (plugged_agent, plugged),
                "host": (host_agent, states["host"]),
                "source": (src_agent, states["source"]),
            }
            if "direct" in states:
                evaluations["direct"] = (runs["direct"][1], states["direct"])
            row = {"step": step}
            for name, (agent, state) in evaluations.items():
                returns, _ = evaluate(agent, state, envs, jax.random.PRNGKey(seed), seeds,
                                      agent.config.acting_iterations)
                row[f"{name}_return_mean"] = float(np.mean(returns))
                row[f"{name}_return_std"] = float(np.std(returns))
            rows.append(row)
    finally:
        for env in envs:
            env.close()
    out.mkdir(parents=True, exist_ok=True)
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k != "step", k))
    with open(out / "transfer.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    summary = {"source": str(source), "host": str(host), "direct": None if direct is None else str(direct),
               "env": host_config.env, "source_value": src_config.algo.value, "host_value": host_config.algo.value,
               "episodes": episodes, "transferred_optimizer": moved, "rows": rows}
    (out / "transfer.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(rows, summary, out / "transfer.png")
    return out / "transfer.png"


def _label(value: str) -> str:
    return "MB" if value == "model-based" else "MF"


def _plot(rows: list[dict], summary: dict, path: Path) -> None:
    src, host = _label(summary["source_value"]), _label(summary["host_value"])
    labels = {"host": f"{host} agent, its own optimizer", "transferred": f"{src} optimizer in the {host} objective",
              "source": f"{src} agent, as trained", "direct": "direct agent"}
    styles = {"host": "C0-", "transferred": "C3--", "source": "C2:", "direct": "C7-."}
    fig, ax = new_figure(figsize=(6.5, 4))
    steps = np.array([r["step"] for r in rows])
    for name in ("host", "transferred", "source", "direct"):
        key = f"{name}_return_mean"
        points = [(r["step"], r[key], r[f"{name}_return_std"]) for r in rows if key in r]
        if not points:
            continue
        x, mean, std = (np.array(v) for v in zip(*points))
        ax.plot(x, mean, styles[name], marker="o", ms=3, label=labels[name])
        ax.fill_between(x, mean - std, mean + std, color=styles[name][:2], alpha=0.12)
    steps_axis(ax, "training steps (snapshot)")
    ax.set_ylabel(f"evaluation return ({summary['episodes']} episodes)")
    ax.set_title(f"zero-shot transfer, {summary['env']}")
    ax.set_xlim(steps.min(), steps.max() if len(steps) > 1 else steps.min() + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)
