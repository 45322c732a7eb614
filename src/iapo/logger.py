"""Run outputs: metrics.csv (one row per evaluation), TensorBoard events, learning_curve.png."""

from __future__ import annotations

import csv
import math
import secrets
from pathlib import Path

import numpy as np

from iapo.errors import IapoError, RunDirError
from iapo.atomic import open_own, write_csv_atomic
from iapo.figures import new_figure, save_figure, seed_std, steps_axis
from iapo.rundir import CURVE, METRICS, TENSORBOARD, WANDB

# The columns of metrics.csv, in order, with their meaning (also in the README, "What a run directory holds").
COLUMNS = {
    "step": "steps of the agent taken so far: environment steps, or actions of --action-repeat N environment steps each",
    "episodes": "training episodes finished so far",
    "eval_return_mean": "mean undiscounted return of the deterministic policy over the evaluation episodes",
    "eval_return_std": "standard deviation of that return over the evaluation episodes",
    "eval_length_mean": "mean length of the evaluation episodes, in steps of the agent (as step)",
    "train_episode_return": "mean return of the training episodes that ended since the last evaluation (empty if none)",
    "critic_loss": "mean critic loss sum_i 1/2 (Q_i - y)^2 over the updates since the last evaluation",
    "policy_loss": "mean policy-optimizer loss (-J, averaged over iterates for the iterative agent)",
    "alpha": "temperature alpha at the last update",
    "kl": "mean estimate of KL(pi || uniform prior) at the final policy estimate",
    "q_mean": "mean of the online critics' Q(s, a) on replayed transitions",
    "policy_scale": "mean sigma (before the tanh) of the final policy estimate on replayed states",
    "objective": "mean objective J at the final policy estimate on replayed states",
    "objective_improvement": "J(lambda_K) - J(lambda_1): gain of the iterations after the first (0 for direct)",
    "updates": "gradient updates done so far",
    "env_steps_per_s": "training environment steps per second since the last evaluation, or since the resume where a run "
                       "resumed after it (evaluation time excluded)",
    "wall_time_s": "seconds of training wall time since the run started, over every process that ran it",
}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


class RunLogger:
    """Appends a row to metrics.csv, writes the same scalars to TensorBoard (and W&B), redraws
    the curve."""

    def __init__(self, run_dir: Path, title: str, resume_after: int | None = None, wandb: dict | None = None):
        """With `resume_after`, drop the rows and TensorBoard points logged after that step
        (by a run that died after its last checkpoint), so that none is duplicated. `wandb`:
        the arguments of `wandb.init` (project, name, group, config), for a W&B run beside."""
        from tensorboardX import SummaryWriter

        self.run_dir = Path(run_dir)
        self.title = title
        self.csv_path = self.run_dir / METRICS
        if resume_after is not None and self.csv_path.exists():
            _truncate_rows(self.csv_path, resume_after)
        new = not self.csv_path.exists()
        self._csv = open_own(self.csv_path, "a", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=list(COLUMNS))
        if new:
            self._writer.writeheader()
        purge = None if resume_after is None else resume_after + 1
        self._tb = SummaryWriter(str(self.run_dir / TENSORBOARD), purge_step=purge)
        self._wandb = None if wandb is None else _wandb_run(self.run_dir, wandb)

    def scalars(self, step: int, values: dict, prefix: str = "updates") -> None:
        """Scalars between evaluations (the updates' means over the last `log_every` steps)."""
        values = {f"{prefix}/{k}": float(v) for k, v in values.items() if np.ndim(v) == 0 and math.isfinite(float(v))}
        try:
            for name, value in values.items():
                self._tb.add_scalar(name, value, step)
            self._tb.flush()
        except OSError as exc:
            raise IapoError(f"cannot write TensorBoard events in {self.run_dir}: {exc.strerror or exc}") from None
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def log(self, row: dict, per_iteration: np.ndarray | None = None) -> None:
        try:
            self._log(row, per_iteration)
        except OSError as exc:  # a full disk, a removed folder
            raise IapoError(f"cannot write the metrics of step {row['step']} in {self.run_dir}: "
                            f"{exc.strerror or exc}") from None

    def _log(self, row: dict, per_iteration: np.ndarray | None) -> None:
        self._writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        self._csv.flush()
        step = int(row["step"])
        for name, value in row.items():
            if name != "step" and value is not None and not (isinstance(value, float) and math.isnan(value)):
                self._tb.add_scalar(f"iapo/{name}", float(value), step)
        if per_iteration is not None and per_iteration.size > 1:
            for k, value in enumerate(per_iteration):
                self._tb.add_scalar(f"objective_per_iteration/iteration_{k}", float(value), step)
        self._tb.flush()
        if self._wandb is not None:
            values = {f"iapo/{k}": float(v) for k, v in row.items() if k != "step" and v is not None
                      and not (isinstance(v, float) and math.isnan(v))}
            if per_iteration is not None and per_iteration.size > 1:
                values |= {f"objective_per_iteration/iteration_{k}": float(v) for k, v in enumerate(per_iteration)}
            self._wandb.log(values, step=step)
        plot_learning_curve(self.csv_path, self.run_dir / CURVE, self.title)

    def close(self) -> None:
        try:
            self._csv.close()
            self._tb.close()
        except OSError as exc:
            raise IapoError(f"cannot write the logs in {self.run_dir}: {exc.strerror or exc}") from None
        finally:
            if self._wandb is not None:
                self._wandb.finish()
                self._wandb = None


def check_wandb() -> None:
    """A one-line error when the `wandb` extra is not installed."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise IapoError("--wandb-project needs wandb: pip install 'iapo[wandb]'") from None


def _wandb_run(run_dir: Path, settings: dict):
    """A W&B run for this run directory: its files in RUN_DIR/wandb, its id drawn once and kept
    there (RUN_DIR/wandb/iapo-run-id), so that a resumed run continues the same W&B run and an
    overwritten one starts a new one. (W&B keeps the points a killed run logged after its last
    checkpoint; TensorBoard's are purged.)"""
    check_wandb()
    import wandb

    id_file = run_dir / WANDB / "iapo-run-id"
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(8)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
    try:
        return wandb.init(dir=str(run_dir), id=run_id, resume="allow", reinit="create_new", **settings)
    except Exception as exc:  # noqa: BLE001 (wandb raises its own kinds: no login, no network, ...)
        raise IapoError(f"W&B could not start ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); "
                        "log in with `wandb login`, or set WANDB_MODE=offline") from None


def _valid_rows(csv_path: Path, last_step: int) -> list[list[str]]:
    """The rows of a metrics.csv that are whole and parse (every column present, step an integer,
    every other field a number or empty), up to `last_step`; a torn, garbled or extra row is
    left out."""
    rows = []
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if row == list(COLUMNS) or len(row) != len(COLUMNS):
                continue
            try:
                step = int(row[0])
                [float(x) for x in row[1:] if x]
            except ValueError:
                continue
            if step <= last_step:
                rows.append(row)
    return rows


def _truncate_rows(csv_path: Path, last_step: int) -> None:
    """Rebuild metrics.csv from its valid rows with step <= last_step, under the canonical header
    (written atomically): rows logged after the checkpoint (by a run that died after it), a row
    cut in the middle, a garbled line or a missing header are all mended."""
    if csv_path.is_dir():
        raise IapoError(f"{csv_path} is a folder, not iapo's metrics file; move it away to resume")
    if csv_path.is_symlink():
        raise RunDirError(f"{csv_path} is a symbolic link; iapo does not follow links when it writes its own files: "
                          "remove it")
    try:
        rows = _valid_rows(csv_path, last_step)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IapoError(f"cannot read {csv_path}: {exc}") from None
    write_csv_atomic(csv_path, list(COLUMNS), rows)


def read_metrics(csv_path: Path) -> dict[str, np.ndarray]:
    """The columns of a metrics.csv as arrays (empty fields as NaN). A row that does not parse is
    an error naming the file and the line, never a number read wrong."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    columns = list(rows[0])
    out = {k: np.empty(len(rows)) for k in columns}
    for i, row in enumerate(rows):
        if None in row or any(v is None for v in row.values()):
            raise IapoError(f"{csv_path}, line {i + 2}: the row does not have the {len(columns)} fields of the "
                            "header; the file is damaged")
        for k in columns:
            try:
                out[k][i] = float(row[k]) if row[k] else np.nan
            except ValueError:
                raise IapoError(f"{csv_path}, line {i + 2}: {k} = {row[k]!r} is not a number; the file is damaged") from None
    return out


def plot_learning_curve(csv_path: Path, out_path: Path, title: str) -> None:
    """Evaluation return (mean +- std over episodes) against environment steps."""
    m = read_metrics(csv_path)
    if not m:
        return
    fig, ax = new_figure(figsize=(6, 4))
    step, mean, std = m["step"], m["eval_return_mean"], m["eval_return_std"]
    ax.plot(step, mean, color="C0", label="evaluation return")
    ax.fill_between(step, mean - std, mean + std, color="C0", alpha=0.25)
    if np.any(np.isfinite(m["train_episode_return"])):
        ax.plot(step, m["train_episode_return"], color="C1", alpha=0.6, lw=1, label="training episodes")
    steps_axis(ax)
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    save_figure(fig, out_path)


def plot_seed_curves(csv_paths: list[Path], labels: list[str], out_path: Path, title: str) -> None:
    """Evaluation return of several seeds: mean +- sample std over seeds, and each seed thinly."""
    curves = [read_metrics(p) for p in csv_paths]
    curves = [(m, label) for m, label in zip(curves, labels) if m]
    if not curves:
        return
    n = min(len(m["step"]) for m, _ in curves)  # the steps every seed has reached
    fig, ax = new_figure(figsize=(6, 4))
    for m, label in curves:
        ax.plot(m["step"], m["eval_return_mean"], lw=0.8, alpha=0.45, label=label)
    if n:
        returns = np.stack([m["eval_return_mean"][:n] for m, _ in curves])
        step, mean, std = curves[0][0]["step"][:n], returns.mean(0), seed_std(returns)
        ax.plot(step, mean, color="k", lw=2, label=f"mean of {len(curves)} seeds")
        ax.fill_between(step, mean - std, mean + std, color="k", alpha=0.15)
    steps_axis(ax)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, out_path)
