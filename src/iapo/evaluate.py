"""`iapo evaluate`: restore a saved agent and roll out its deterministic policy (and record a video)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Annotated

import gymnasium as gym
import jax
import numpy as np
import tyro

from iapo.agent import Agent
from iapo.config import TrainConfig, at_least_one
from iapo.envs import make_run_env, use_offscreen_gl
from iapo.errors import ConfigError, IapoError, NumericError
from iapo.rollout import agent_policy, evaluate, rollout
from iapo.saved import check_analysis_inputs, load_agent


@dataclasses.dataclass(frozen=True)
class Config:
    """Evaluate a saved agent: mean +- std return of the deterministic policy."""

    run_dir: tyro.conf.Positional[str]
    """Run directory written by `iapo train`."""

    episodes: int = 10
    """Number of evaluation episodes."""

    iterations: Annotated[int | None, tyro.conf.arg(metavar="K")] = None
    """Iterations of the iterative optimizer when acting; unset means the run's own setting."""

    seed: int = 12345
    """Seed of the evaluation environments."""

    video: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """Also record one episode, rendered offscreen, to this .mp4 file."""

    step: Annotated[int | None, tyro.conf.arg(metavar="STEP")] = None
    """Evaluate the agent of this step (a snapshot or checkpoint) instead of the newest."""

    def validate(self) -> None:
        check_analysis_inputs(self.seed)
        at_least_one(self, "episodes")
        if self.iterations is not None:
            at_least_one(self, "iterations")
        if self.video is not None:
            _check_video_path(Path(self.video))


def evaluate_run(cfg: Config) -> tuple[float, float, int]:
    """`iapo evaluate`: (mean, std) of the return over `cfg.episodes` episodes, and their number."""
    cfg.validate()
    if cfg.video is not None:  # before any environment is made: dm_control picks its GL backend when imported
        use_offscreen_gl()
    config, agent, state, _ = load_agent(Path(cfg.run_dir), cfg.step)
    iterations = cfg.iterations or config.algo.acting_iterations
    envs = [make_run_env(config) for _ in range(cfg.episodes)]
    try:
        returns, _ = evaluate(agent, state, envs, jax.random.PRNGKey(cfg.seed),
                              [cfg.seed + i for i in range(cfg.episodes)], iterations)
    finally:
        for env in envs:
            env.close()
    if not np.all(np.isfinite(returns)):  # (each reward was finite, checked as it came; their sum overflowed)
        raise NumericError(f"an evaluation episode's return is not finite ({returns[~np.isfinite(returns)][0]})")
    if cfg.video is not None:
        record_video(config, agent, state, Path(cfg.video), cfg.seed, iterations)
    return float(np.mean(returns)), float(np.std(returns)), cfg.episodes


def _check_video_path(video: Path) -> None:
    if video.suffix.lower() != ".mp4":
        raise ConfigError(f"--video must name an .mp4 file, got {video}")
    if not video.parent.exists() and str(video.parent) not in ("", "."):
        raise ConfigError(f"--video: directory {video.parent} does not exist")
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise IapoError("--video needs imageio and imageio-ffmpeg: pip install 'iapo[video]'") from None


_NO_RENDERER = (
    "no offscreen OpenGL renderer for MuJoCo ({why}); install EGL (Debian/Ubuntu: apt-get install "
    "libegl1 libgl1) and set MUJOCO_GL=egl, or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa"
)


def render_frames(config: TrainConfig, agent: Agent, state, seed: int, iterations: int, max_frames: int = 10_000):
    """Frames (T, H, W, 3) of one deterministic episode rendered offscreen, one per action, and the
    frame rate that plays them in real time (the env's, over --action-repeat: a frame stands for
    that many environment steps)."""
    use_offscreen_gl()
    env = make_run_env(config, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        env.render()  # (a renderer that cannot start fails here, with its own words)
    except Exception as exc:  # noqa: BLE001  (the GL backends raise many kinds)
        env.close()
        if isinstance(exc, gym.error.DependencyNotInstalled):  # (Gymnasium's classic tasks draw with pygame)
            raise IapoError(f"rendering {config.env!r} needs a missing dependency: {exc}") from None
        raise IapoError(_NO_RENDERER.format(why=f"{type(exc).__name__}: {exc}".strip())) from None
    try:
        out = rollout([env], agent_policy(agent, state, deterministic=True, iterations=iterations),
                      jax.random.PRNGKey(seed), start_obs=obs[None], steps=max_frames, capture=lambda e: e.render())
    finally:
        env.close()
    return np.stack(out.captured[0] + out.final), env.metadata.get("render_fps", 30) / config.action_repeat


def record_video(config: TrainConfig, agent: Agent, state, path: Path, seed: int, iterations: int) -> None:
    import imageio

    frames, fps = render_frames(config, agent, state, seed, iterations)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    with warnings.catch_warnings():  # (JAX's warning when imageio starts ffmpeg: it runs no Python, so no deadlock)
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)
    tmp.replace(path)
