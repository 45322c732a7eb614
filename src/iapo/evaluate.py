"""Evaluate a saved run: restore its newest checkpoint and roll out the deterministic policy."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from iapo import checkpoint
from iapo.agent import Agent, act
from iapo.envs import dims, make_env, use_offscreen_gl
from iapo.errors import ConfigError, IapoError
from iapo.train import evaluate_episodes


def load_agent(run_dir: Path, step: int | None = None):
    """(config, agent, state, step) of the newest checkpoint in `run_dir`, or of the snapshot
    (or checkpoint) at `step`."""
    from iapo.cli import load_run_config

    config = load_run_config(run_dir)
    if config.seeds is not None:
        raise IapoError(
            f"{run_dir} holds seeds {' '.join(map(str, config.seeds))} trained together; "
            f"name one of them: {run_dir / f'seed_{config.seeds[0]}'}"
        )
    env = make_env(config.env)
    obs_dim, act_dim = dims(env)
    env.close()
    agent = Agent(config.algo, obs_dim, act_dim)
    template = agent.init(jax.random.PRNGKey(0))
    if step is None:
        step, state, _ = checkpoint.load_latest(run_dir, template)
        return config, agent, state, step
    found = dict(checkpoint.list_checkpoints(run_dir)) | dict(checkpoint.list_snapshots(run_dir))
    if step not in found:
        have = " ".join(map(str, sorted(found))) or "none"
        raise IapoError(f"{run_dir} has no snapshot or checkpoint of step {step} (steps: {have})")
    state, _ = checkpoint.load(found[step], template)
    return config, agent, state, step


def evaluate_run(
    run_dir: Path, episodes: int, iterations: int | None, seed: int, video: Path | None, step: int | None = None
) -> tuple[float, float, int]:
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if iterations is not None and iterations < 1:
        raise ConfigError(f"--iterations must be >= 1, got {iterations}")
    if video is not None:
        _check_video_path(video)
    config, agent, state, _ = load_agent(run_dir, step)
    iterations = iterations or config.algo.acting_iterations
    envs = [make_env(config.env) for _ in range(episodes)]
    returns, _ = evaluate_episodes(
        agent, state, envs, jax.random.PRNGKey(seed), [seed + i for i in range(episodes)], iterations
    )
    for env in envs:
        env.close()
    if video is not None:
        record_video(config.env, agent, state, video, seed, iterations)
    return float(np.mean(returns)), float(np.std(returns)), episodes


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


def render_frames(env_id: str, agent: Agent, state, seed: int, iterations: int, max_frames: int = 10_000):
    """Frames (T, H, W, 3) of one deterministic episode rendered offscreen."""
    use_offscreen_gl()
    env = make_env(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
    except Exception as exc:  # noqa: BLE001  (the GL backends raise many kinds)
        env.close()
        raise IapoError(_NO_RENDERER.format(why=f"{type(exc).__name__}: {exc}".strip())) from None
    key = jax.random.PRNGKey(seed)
    for _ in range(max_frames):
        action, key = act(agent, state, obs[None].astype(np.float32), key, deterministic=True, iterations=iterations)
        obs, _, terminated, truncated, _ = env.step(np.asarray(action[0]))
        frames.append(env.render())
        if terminated or truncated:
            break
    fps = env.metadata.get("render_fps", 30)
    env.close()
    return np.stack(frames), fps


def record_video(env_id: str, agent: Agent, state, path: Path, seed: int, iterations: int) -> None:
    import imageio

    frames, fps = render_frames(env_id, agent, state, seed, iterations)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)
    tmp.replace(path)
