"""Configuration dataclasses. Every field has a docstring below it: tyro turns them into `--help`.

Defaults follow the paper and its reference implementation (the README's defaults table says
which is which); where the two differ, the choice is a field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import tyro
from tyro.constructors import PrimitiveConstructorSpec

from iapo.errors import ConfigError
from iapo.kinds import AgentKind, kind

Critics = Literal["target", "online"]
InputNorm = Literal["reference", "joint", "none", "log"]
PessimismStd = Literal["biased", "unbiased"]
ValueKind = Literal["model-free", "model-based"]
WeightInit = Literal["lecun", "torch", "reference"]  # how networks start: iapo.networks.layer_init


# The reference's numbers that several modules take as defaults (ALGORITHM.md), written once.
LOG_SCALE_BOUNDS = (-5.0, 2.0)  # soft bounds on the policy's log sigma
ADAM_LR = 1e-2  # Adam's step size on lambda: the `gradient` agent and the efficiency comparison (Fig. 4c)
CEM_SAMPLES, CEM_ELITES, CEM_SMOOTHING = 100, 10, 0.01  # CEM: samples, elites, step toward the refit
COMPARISON_STEPS = 250  # iterations of Adam and CEM in the efficiency comparison (Fig. 4c)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The algorithm: policy optimizer, critics, objective and their optimizers."""

    agent: AgentKind = "iterative"
    """Policy optimizer: `direct` (SAC's policy network, Eq. 10), `iterative` (IAPO, Eq. 11-12),
    `direct-flow` (a direct policy with inverse autoregressive flows), or the non-amortized
    `gradient` (Adam on lambda) and `cem` (cross-entropy method), run from lambda_0 at every state."""

    iterations: int = 5
    """K, iterations per state of the iterative optimizer during training (paper: 5), or of the
    `gradient` and `cem` optimizers."""

    eval_iterations: int | None = None
    """Iterations used when acting at evaluation; unset means the same as `iterations`."""

    action_samples: int = 10
    """N, reparameterized action samples per state to estimate the objective J (reference: 10)."""

    pessimism: float | None = None
    """beta in Q = mean - beta * std over the twin critics (Eq. 13) for training (the policy
    loss and the critic targets); unset means 2.5 for iterative and 1 for every other agent
    (paper). With the biased std, beta = 1 is min(Q1, Q2)."""

    acting_pessimism: float | None = 1.0
    """beta of the objective J that the policy optimizer ascends when the agent acts (training
    collection, evaluation, `iapo evaluate`, the analyses' rollouts): 1, after the reference
    code, which acts in its evaluation mode with a beta of its own. Negative values are optimism
    (mean + |beta| std). Unset means the training beta (iapo before 0.2). Only optimizers that
    read J when acting (iterative, gradient, cem) are affected."""

    pessimism_std: PessimismStd = "biased"
    """The std over the critics in Eq. 13: `biased` (the paper's text: |Q1 - Q2| / 2, so beta = 1
    is min(Q1, Q2)) or `unbiased` (the reference code: |Q1 - Q2| / sqrt(2), so its beta = b is
    b sqrt(2) in biased units)."""

    value: ValueKind = "model-free"
    """The action value inside J: the critics (`model-free`), or H-step rollouts of a learned
    model bootstrapped by the critics (`model-based`, Fig. 9)."""

    horizon: int = 2
    """model-based: H, model rollout steps (reference: 2; 0 is the model-free value)."""

    retrace_lambda: float = 0.9
    """model-based: weight l of the lambda-return over the rollout's n-step estimates (reference 0.9)."""

    model_hidden_sizes: tuple[int, ...] = (256, 256)
    """model-based: hidden widths of the state-change and reward networks (layer norm, leaky ReLU)."""

    model_lr: float = 3e-4
    """model-based: Adam learning rate of the model."""

    model_pretrain_updates: int = 1_000
    """model-based: model updates once the random phase is over, before the first agent update."""

    objective_critics: Critics = "target"
    """Critics used by the policy objective J: `target` (reference code) or `online` (SAC)."""

    final_iterate_loss: bool = False
    """Train the iterative optimizer on the final iterate's objective only, instead of the mean
    over all K iterates (reference)."""

    unroll_iterations: bool = False
    """Unroll the K iterations in the compiled update instead of looping over them (lax.scan):
    the same computation, a longer compile; lets XLA count the update's FLOPs exactly."""

    critic_layout: Literal["auto", "ensemble", "separate"] = "auto"
    """How the twin critics are computed (the same parameters and numbers either way): ensemble,
    one batched multiply for both; separate, one critic after the other. auto: separate for the
    iterative agent on a CPU, whose update ran 9% faster so (benchmarks/update_variants.py), else
    ensemble (the direct update gained nothing)."""

    seed_mapping: Literal["auto", "vmap", "map"] = "auto"
    """How the seeds of a group (`--seeds` with more than one) share each compiled call: vmap, one
    batched computation for all; map, one seed after the other inside the call (lax.map). The
    same numbers up to rounding. auto: map on a CPU for the agents that iterate on the policy
    (iterative, gradient, cem), vmap elsewhere. Measured on a 2-core CPU: the iterative agent's
    two-seed training step ran 1.24x (float32) and 1.06x (bfloat16) faster mapped; the update
    alone of gradient and cem 1.2x and 1.1x (bfloat16); the direct update 1.3x slower (see
    docs/benchmarks.md). Decided when a run starts: a resumed run keeps the mapping it began with
    (runs of older versions: vmap)."""

    matmul_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """Operands of the critics' hidden-layer multiplies inside the objective J (most of the
    iterative agent's FLOPs): `bfloat16` with float32 accumulation and results, or `float32`.
    auto: bfloat16 on a GPU or on a CPU with AMX or AVX-512 BF16, float32 elsewhere, decided when
    a run starts (a resumed run keeps the precision it began with). The critics' TD regression,
    the policy networks, the parameters, optimizer states and losses are float32 always."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy network (direct or iterative)."""

    input_norm: InputNorm = "reference"
    """How the iterative network's inputs lambda_k and grad_lambda J are normalized (each
    separately): `reference` (the reference code: the mean block and the log-sigma block each
    standardized across its d entries with the unbiased std + 1e-7, a block of one entry left
    as it is), `joint` (the whole 2d vector standardized at once, biased std; iapo before 0.2),
    `none`, or `log` (sign(x) log(1 + |x|) elementwise)."""

    flow_transforms: int = 2
    """direct-flow: affine inverse autoregressive transforms after the Gaussian (reference: 1-3)."""

    flow_hidden_sizes: tuple[int, ...] = (64, 64)
    """direct-flow: hidden widths of each transform's masked network."""

    optimizer_lr: float = ADAM_LR
    """gradient agent: Adam's step size on lambda (reference comparison: 1e-2)."""

    cem_samples: int = CEM_SAMPLES
    """cem agent: samples per iteration (reference: 100)."""

    cem_elites: int = CEM_ELITES
    """cem agent: best samples the Gaussian is refit to (reference: 10)."""

    cem_smoothing: float = CEM_SMOOTHING
    """cem agent: step toward the refit, new = (1 - s) old + s fit (reference: 0.01)."""

    critic_hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each of the two critics."""

    weight_init: WeightInit = "lecun"
    """How the critics' and the policy network's dense layers start: `lecun` (Flax's default:
    truncated normal weights of variance 1/fan_in, zero biases), `torch` (PyTorch's nn.Linear
    default, which SB3's and CleanRL's SAC use, and configs/sac.yaml: weights and biases uniform in
    ±1/sqrt(fan_in)) or
    `reference` (the reference code's: hidden layers Xavier normal with gain sqrt(2) and biases 0.1,
    the policy's output layer uniform in ±1e-3 and the critics' in ±3e-3). The iterative network's
    update and gate layers start at zero under all three; the flow's transforms and the
    model-based agent's model keep Flax's default."""

    init_mean: float = 0.0
    """Initial mean (before the tanh) of the iterative optimizer's lambda_0 (reference: 0)."""

    init_scale: float = 0.5
    """Initial standard deviation (before the tanh) of lambda_0 (reference: 0.5)."""

    log_scale_min: float = LOG_SCALE_BOUNDS[0]
    """Lower soft bound on log sigma of the policy."""

    log_scale_max: float = LOG_SCALE_BOUNDS[1]
    """Upper soft bound on log sigma of the policy."""

    gamma: float = 0.99
    """Discount factor, in (0, 1]."""

    tau: float = 0.005
    """Polyak rate of the target critics, in (0, 1]."""

    target_copy_every: int = 0
    """Also copy the critics into the targets every this many updates (reference: 200); 0: never."""

    policy_lr: float = 3e-4
    """Adam learning rate of the policy network."""

    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""

    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha."""

    init_alpha: float = 1.0
    """Initial temperature alpha."""

    batch_size: int = 256
    """Transitions per update."""

    @property
    def beta(self) -> float:
        """The pessimism beta in force (the field, or the paper's default for the agent)."""
        if self.pessimism is not None:
            return self.pessimism
        return kind(self.agent).default_pessimism

    @property
    def acting_beta(self) -> float:
        """The pessimism beta of J when acting (the field, or the training beta when unset)."""
        return self.beta if self.acting_pessimism is None else self.acting_pessimism

    @property
    def acting_iterations(self) -> int:
        return self.iterations if self.eval_iterations is None else self.eval_iterations

    def validate(self) -> None:
        _positive_int("iterations", self.iterations)
        if self.eval_iterations is not None:
            _positive_int("eval-iterations", self.eval_iterations)
        _positive_int("action-samples", self.action_samples)
        _positive_int("batch-size", self.batch_size)
        _positive_int("flow-transforms", self.flow_transforms)
        _positive_int("horizon", self.horizon, allow_zero=True)
        _positive_int("model-pretrain-updates", self.model_pretrain_updates, allow_zero=True)
        _finite("retrace-lambda", self.retrace_lambda)
        if not 0 <= self.retrace_lambda <= 1:
            raise ConfigError(f"--retrace-lambda must be in [0, 1], got {self.retrace_lambda}")
        _positive_int("cem-samples", self.cem_samples)
        _positive_int("cem-elites", self.cem_elites)
        if self.cem_elites > self.cem_samples:
            raise ConfigError(f"--cem-elites ({self.cem_elites}) must not exceed --cem-samples ({self.cem_samples})")
        _finite("cem-smoothing", self.cem_smoothing)
        if not 0 < self.cem_smoothing <= 1:
            raise ConfigError(f"--cem-smoothing must be in (0, 1], got {self.cem_smoothing}")
        _positive_int("target-copy-every", self.target_copy_every, allow_zero=True)
        if self.pessimism is not None:
            _finite("pessimism", self.pessimism)
            if self.pessimism < 0:
                raise ConfigError(f"--pessimism must be >= 0, got {self.pessimism}")
        if self.acting_pessimism is not None:  # (negative: optimism, as one version of the reference acted)
            _finite("acting-pessimism", self.acting_pessimism)
        for name in ("policy_lr", "critic_lr", "alpha_lr", "init_alpha", "init_scale", "optimizer_lr", "model_lr"):
            value = getattr(self, name)
            _finite(_flag(name), value)
            if value <= 0:
                raise ConfigError(f"--{_flag(name)} must be > 0, got {value}")
        _finite("init-mean", self.init_mean)
        _finite("gamma", self.gamma)
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"--gamma must be in (0, 1], got {self.gamma}")
        _finite("tau", self.tau)
        if not 0 < self.tau <= 1:
            raise ConfigError(f"--tau must be in (0, 1], got {self.tau}")
        _finite("log-scale-min", self.log_scale_min)
        _finite("log-scale-max", self.log_scale_max)
        if self.log_scale_min >= self.log_scale_max:
            raise ConfigError(
                f"--log-scale-min ({self.log_scale_min}) must be below --log-scale-max ({self.log_scale_max})"
            )
        for name in ("hidden_sizes", "critic_hidden_sizes", "flow_hidden_sizes", "model_hidden_sizes"):
            sizes = getattr(self, name)
            if not sizes or any(s < 1 for s in sizes):
                raise ConfigError(f"--{_flag(name)} must be one or more positive widths, got {sizes}")


def parse_seeds(tokens) -> tuple[int, ...]:
    """Seeds written as numbers and inclusive ranges: `("0-2", "7")` -> (0, 1, 2, 7)."""
    seeds: list[int] = []
    for token in " ".join(tokens).replace(",", " ").split():
        try:
            if "-" in token[1:]:
                low, high = token.split("-", 1)
                lo, hi = int(low), int(high)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(token))
        except ValueError:
            raise ConfigError(f"--seeds: {token!r} is not a seed or a range like 0-4") from None
    if not seeds:
        raise ConfigError("--seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must not repeat a seed, got {' '.join(map(str, seeds))}")
    return tuple(seeds)



def parse_count(text: str) -> int:
    """A count as users write it: `1000000`, `1_000_000`, or an integral float such as `1e6` (as
    SB3 and RL Zoo scripts write budgets); a ValueError for anything else."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"{text!r} is not a whole number") from None
        return int(value)


# A count flag: `--total-steps 1e6` as well as `1000000`.
Count = Annotated[int, PrimitiveConstructorSpec(
    nargs=1, metavar="INT", instance_from_str=lambda args: parse_count(args[0]),
    is_instance=lambda x: isinstance(x, int) and not isinstance(x, bool), str_from_instance=lambda x: [str(x)])]


# `--seeds 0 1 2` or `--seeds 0-4` (as `iapo sweep --seeds`).
_SEEDS = PrimitiveConstructorSpec(
    nargs="*", metavar="SEED|FIRST-LAST ...", instance_from_str=parse_seeds,
    is_instance=lambda x: x is None or isinstance(x, tuple),
    str_from_instance=lambda x: ["None"] if x is None else [str(v) for v in x],
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: environment, budget, logging; the algorithm's fields are under `algo`."""

    env: str = "Hopper-v5"
    """The environment: a Gymnasium id (`Hopper-v5`, `dm_control/cheetah-run-v0` with the dmc extra),
    `module:ID` (imports the module that registers ID), or `module:Class` (an environment class);
    any env with a bounded Box action space."""

    env_kwargs: tuple[str, ...] = ()
    """The environment's options: KEY=VALUE pairs, each VALUE read as JSON where it parses
    (`frame_skip=2 terminate_when_unhealthy=false`), or one JSON object. Recorded in config.json,
    so evaluation, resume and the analyses make the same environment."""

    seed: int = 0
    """Random seed (networks, replay sampling, exploration, environments)."""

    seeds: Annotated[tuple[int, ...] | None, _SEEDS] = None
    """Train these seeds together in one process (one compiled update and act for all), e.g.
    `0 1 2` or `0-4`; seed s writes its own run to RUN_DIR/seed_<s>. Replaces --seed."""

    total_steps: Count = 1_000_000
    """Steps to train for: environment steps, or actions under --action-repeat."""

    max_episode_steps: Count | None = None
    """Cut episodes off (truncated) after this many environment steps, in training and evaluation;
    unset: the environment's registered time limit, or 1000 steps where it registers none (said at
    start-up; dm_control's tasks end their own episodes), so that no episode runs for ever."""

    action_repeat: Count = 1
    """Hold each action for this many environment steps and sum their rewards (as the papers that
    train on dm_control usually do, with 2); a step of every other count (`--total-steps`,
    `--random-steps`, `--eval-every`, ...) is then one action, `action_repeat` environment steps.
    Evaluation returns are whole episodes' returns, as without it."""

    run_dir: str = "runs/iapo"
    """Directory that receives config.json, metrics.csv, TensorBoard events, checkpoints and the
    learning curve."""

    random_steps: Count = 5_000
    """Initial steps with uniformly random actions before the agent acts and updates."""

    buffer_capacity: Count = 1_000_000
    """Replay buffer capacity in transitions."""

    updates_per_step: int = 1
    """Gradient updates per environment step once the random phase is over."""

    replay_sampling: Literal["auto", "host", "device"] = "auto"
    """Where update batches are drawn. host: from the buffer in host memory, sent to the device
    with each step. device: from a copy of the buffer in device memory, inside the update, so a
    step sends only its new transition (twice the observation memory there: next observations
    are stored too). auto: device on a GPU or TPU, host on a CPU, decided when the run starts (a
    resumed run samples where it did before). The two draw different (equally uniform) batches
    from the same seed."""

    eval_every: Count = 1_000
    """Evaluate the deterministic policy every this many environment steps."""

    eval_episodes: int = 5
    """Episodes per evaluation (run side by side, batched through one act call)."""

    stop_return: Annotated[float | None, tyro.conf.arg(metavar="RETURN")] = None
    """End the run at the first evaluation at which every seed's mean return is at or above this
    (a task's known ceiling: 1000 on InvertedPendulum-v5), before --total-steps; the run is then
    finished, with a checkpoint (and a snapshot, if kept) of that step. Unset: run to
    --total-steps."""

    checkpoint_every: Count = 100_000
    """Write a checkpoint every this many environment steps (and always at the end)."""

    snapshot_every: Count = 50_000
    """Keep a copy of the agent (no replay buffer) every this many steps in snapshots/, none ever
    deleted: the analyses over training read them. 0: none."""

    overwrite: bool = False
    """Replace a run already in --run-dir instead of refusing."""

    resume: Annotated[str | None, tyro.conf.arg(metavar="RUN_DIR")] = None
    """Continue the run in this directory from its newest checkpoint; its config.json gives
    every other setting."""

    config: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """Start from the fields in this YAML or JSON file (a run's own config.json included; the
    algorithm's fields may sit under `algo` or beside the others); flags given with it override
    the file. The shipped reference settings are in configs/."""

    progress: bool = True
    """Show a progress bar in a terminal; otherwise (and when the output is not a terminal) print
    one line per evaluation."""

    quiet: bool = False
    """Print nothing while training: no progress bar, no lines, no summary."""

    log_every: Count = 1_000
    """Write the means of the updates' losses and statistics over the last this many steps to
    TensorBoard (under `updates/`, and to W&B) between evaluations."""

    wandb_project: str | None = None
    """Also log every scalar to this Weights & Biases project, one W&B run per seed (needs the
    `wandb` extra; `WANDB_MODE=offline` keeps it in RUN_DIR/wandb to sync later)."""

    algo: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    """The algorithm's fields (their flags carry no prefix: `--iterations`, `--pessimism`, ...)."""

    def validate(self) -> None:
        self.algo.validate()
        _positive_int("total-steps", self.total_steps)
        _positive_int("random-steps", self.random_steps, allow_zero=True)
        _positive_int("buffer-capacity", self.buffer_capacity)
        _positive_int("updates-per-step", self.updates_per_step, allow_zero=True)
        _positive_int("eval-every", self.eval_every)
        _positive_int("eval-episodes", self.eval_episodes)
        _positive_int("checkpoint-every", self.checkpoint_every)
        _positive_int("snapshot-every", self.snapshot_every, allow_zero=True)
        _positive_int("log-every", self.log_every)
        if self.stop_return is not None:
            _finite("stop-return", self.stop_return)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.seeds is not None:
            if not self.seeds:
                raise ConfigError("--seeds must name at least one seed")
            if len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"--seeds must not repeat a seed, got {' '.join(map(str, self.seeds))}")
            for seed in self.seeds:
                if not 0 <= seed < 2**32:
                    raise ConfigError(f"--seeds must be in [0, 2**32), got {seed}")
        if self.buffer_capacity > 2**31:
            raise ConfigError(f"--buffer-capacity {self.buffer_capacity} is too large (at most 2**31)")
        if not self.env:
            raise ConfigError("--env must name a Gymnasium environment id")
        if not self.run_dir.strip():  # ("" would write the run among the files of the current folder)
            raise ConfigError(f"--run-dir must name a folder, got {self.run_dir!r}")
        parse_env_kwargs(self.env_kwargs)
        if self.max_episode_steps is not None:
            _positive_int("max-episode-steps", self.max_episode_steps)
        _positive_int("action-repeat", self.action_repeat)


def unique_keys(pairs: list, twice: Callable[[object], str]) -> dict:
    """A mapping from (key, value) pairs (json's `object_pairs_hook`), a ConfigError saying
    `twice(key)` for a key given twice (json keeps the last silently)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(twice(key))
        seen[key] = value
    return seen


def parse_env_kwargs(tokens: Sequence[str]) -> dict:
    """The options that "key=value" strings (or one JSON object) give: {"frame_skip": 2, ...}.
    A value is JSON where it parses (numbers, true/false, null, lists) and a string otherwise."""
    unique = functools.partial(unique_keys, twice=lambda key: f"--env-kwargs gives {key!r} twice")

    def finite(text: str) -> float:  # (json reads NaN, Infinity and 1e999 as numbers no environment wants)
        value = float(text)
        if not math.isfinite(value):
            raise ConfigError(f"--env-kwargs: {text} is not a finite number")
        return value

    numbers = {"parse_float": finite, "parse_constant": finite}
    options: dict = {}
    for token in tokens:
        token = token.strip()
        if token.startswith("{"):
            try:
                given = json.loads(token, object_pairs_hook=unique, **numbers)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--env-kwargs {token!r} is not a JSON object: {exc.msg}") from None
            if not isinstance(given, dict):
                raise ConfigError(f"--env-kwargs {token!r} is not a JSON object")
        else:
            key, sep, text = token.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ConfigError(f"--env-kwargs {token!r}: expected KEY=VALUE (or a JSON object)")
            inner = functools.partial(unique_keys, twice=lambda k, key=key.strip(): f"--env-kwargs {key}: its value "
                                                                                 f"gives {k!r} twice")
            try:
                value = json.loads(text, object_pairs_hook=inner, **numbers)
            except json.JSONDecodeError:
                value = {"True": True, "False": False, "None": None}.get(text.strip(), text.strip())
            given = {key.strip(): value}
        for key in given:
            if not isinstance(key, str) or not key.isidentifier():
                raise ConfigError(f"--env-kwargs: {key!r} is not an option name")
            if key in options:
                raise ConfigError(f"--env-kwargs gives {key!r} twice")
            if key in MAKE_OPTIONS:
                raise ConfigError(f"--env-kwargs {key}: {MAKE_OPTIONS[key]}")
        options.update(given)
    return options


# Keywords that gym.make takes for itself (they would never reach the environment) -> what to use.
MAKE_OPTIONS = {
    "max_episode_steps": "is iapo's own setting: use --max-episode-steps (recorded in config.json)",
    "render_mode": "is chosen by iapo (rgb_array for `iapo evaluate --video`, none otherwise)",
    "disable_env_checker": "is gym.make's, not the environment's; iapo checks every value the environment returns",
    "autoreset": "is gym.make's, not the environment's; iapo resets episodes itself",
    "apply_api_compatibility": "is gym.make's, not the environment's",
}


def at_least_one(cfg, *names: str) -> None:
    """A one-line error for the first of the fields `names` of `cfg` below 1."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")


def positive_finite(flag: str, value: float) -> None:
    """A one-line error unless `value` is a finite number > 0."""
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"--{flag} must be a finite number > 0, got {value}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _finite(flag: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"--{flag} must be a finite number, got {value}")


def _positive_int(flag: str, value: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if value < low:
        raise ConfigError(f"--{flag} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")
    if value > 10**12:
        raise ConfigError(f"--{flag} is too large: {value}")


def show_value(value) -> str:
    """A config value as flags and names spell it: tuples as 256x256."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
