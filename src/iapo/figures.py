"""Figures written to files: matplotlib without a display, saved atomically; the spread over seeds
that figures and tables draw."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def seed_std(returns):
    """The sample standard deviation over seeds, axis 0 of `returns` (seeds, ...): ddof = 1, as
    Welch's t-test uses; 0 for a single seed, which has no spread. An array (...) of floats, or a
    float for 1-D `returns`."""
    returns = np.asarray(returns, dtype=float)
    if len(returns) < 1:
        raise ValueError("seed_std: no seeds")
    return returns.std(axis=0, ddof=1) if len(returns) > 1 else np.zeros_like(returns[0])


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """(fig, axes) as `plt.subplots`, on the file-only Agg backend, at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, dpi=100, **kwargs)


def save_figure(fig, path: Path) -> None:
    """Lay out, write to a temporary file, rename over `path`, and free the figure. The image is
    cropped or grown to what was drawn (`bbox_inches="tight"`), so that a legend wider than its axes,
    as the long setting labels of a sweep make, is saved whole rather than cut at the figure's edge."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def steps_axis(ax, label: str = "environment steps") -> None:
    """An x axis of environment steps: at most 6 ticks, written 20k, 1.5M, so they never run
    together."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def short(x, _pos):
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(x) >= scale:
                return f"{x / scale:g}{suffix}"
        return f"{x:g}"

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.xaxis.set_major_formatter(FuncFormatter(short))
    ax.set_xlabel(label)


def colors(n: int, cmap: str = "viridis"):
    """n colours (RGBA) spread over most of a colormap, for a sequence of curves."""
    import matplotlib
    import numpy as np

    return matplotlib.colormaps[cmap](np.linspace(0, 0.9, n))
