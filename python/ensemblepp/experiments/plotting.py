"""PNG plots of experiment results (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .results import Results

__all__ = ["plot_results", "plot_lines"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(results: Results, path: str | Path, metric: str = "cumulative_regret",
                 title: str | None = None, logy: bool = False, agents: Sequence[str] | None = None) -> Path:
    """Plot the mean ``metric`` of every agent with a 95% confidence band.

    Parameters
    ----------
    results : Results
        What to draw.
    path : str or pathlib.Path
        PNG file to write (parent folders are created).
    metric : str, default "cumulative_regret"
        Any name from :meth:`Results.metric_names`.
    title : str, optional
        Figure title (default: the configuration's name and environment).
    logy : bool, default False
        Logarithmic y axis.
    agents : sequence of str, optional
        Subset of agent labels to draw (default: all).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = list(results.agents if agents is None else agents)
    outside = len(labels) > 6
    fig, ax = plt.subplots(figsize=(9.5 if outside else 7.0, 4.8), dpi=110)
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for i, label in enumerate(labels):
        curves = results.curve(label, metric)
        steps = np.arange(1, curves.shape[1] + 1)
        mean = curves.mean(axis=0)
        color = cmap(i % cmap.N)
        ax.plot(steps, mean, label=label, color=color, lw=1.6)
        if curves.shape[0] > 1:
            half = 1.96 * curves.std(axis=0, ddof=1) / math.sqrt(curves.shape[0])
            ax.fill_between(steps, mean - half, mean + half, color=color, alpha=0.2, lw=0)
    env = results.config.get("environment", {})
    default_title = f"{results.config.get('name', 'experiment')}: {env.get('name', '')}"
    ax.set_title(title or default_title)
    ax.set_xlabel("step")
    ax.set_ylabel(metric.replace("_", " ") + f" (mean, 95% band, {len(results.seeds)} seeds)")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if outside:
        # Many curves: keep the legend off the data.
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(labels) <= 16 else 2)
    else:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_lines(path: str | Path, x: Sequence[float], series: dict[str, Sequence[float]], xlabel: str,
               ylabel: str, title: str, logx: bool = False, logy: bool = False) -> Path:
    """A plain line plot of several named series against ``x`` (for sweep presets)."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
