"""PNG plots of experiment results.

Figures are built as :class:`matplotlib.figure.Figure` objects and written
through the Agg canvas (:class:`matplotlib.backends.backend_agg.FigureCanvasAgg`):
no ``matplotlib.use``, no pyplot state, so drawing here never changes the
backend or the open figures of the caller's session. Results are taken by
duck typing (anything with ``agents``, ``seeds``, ``config`` and
``curve(label, metric)``), so this module imports nothing from
:mod:`~ensemblepp.experiments.results`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["plot_results", "plot_lines", "plot_grid", "split_outliers"]


class _ResultsLike(Protocol):
    agents: list[str]
    seeds: list[int]
    config: dict[str, Any]

    def curve(self, agent: str, metric: str = ...) -> np.ndarray: ...


# matplotlib's tab10 and tab20 colours, spelled out so that no colormap (or style) lookup is needed.
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
_TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
          "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
          "#17becf", "#9edae5"]


def _figure(width: float, height: float, dpi: int = 110) -> Any:
    """A Figure attached to its own Agg canvas (the global backend is left alone)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib ({exc.name} is missing): pip install \"ensemblepp[plot]\"",
                          name=exc.name) from exc

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def split_outliers(finals: dict[str, float], ratio: float = 5.0) -> list[str]:
    """Labels whose final value dwarfs the others' (drawn apart so they do not squash them).

    A label is an outlier when its final value exceeds ``ratio`` times the
    median of the final values, the median is positive, and at least two
    labels are left. The default run's greedy agent (final regret about 13,400
    against about 100 to 1000 for the exploring agents) is the case in point.

    Parameters
    ----------
    finals : dict of str to float
        Final mean value per label.
    ratio : float, default 5.0
        How many times the median a value must exceed.

    Returns
    -------
    list of str
        The outlying labels, in the order of ``finals``.
    """
    values = np.array([v for v in finals.values() if np.isfinite(v)], dtype=np.float64)
    if len(values) < 3:
        return []
    median = float(np.median(values))
    if median <= 0:
        return []
    out = [k for k, v in finals.items() if np.isfinite(v) and v > ratio * median]
    return out if len(finals) - len(out) >= 2 else []


def _draw_curves(ax: Any, results: _ResultsLike, labels: Sequence[str], metric: str,
                 colors: dict[str, Any]) -> None:
    for label in labels:
        curves = results.curve(label, metric)
        steps = np.arange(1, curves.shape[1] + 1)
        mean = curves.mean(axis=0)
        ax.plot(steps, mean, label=label, color=colors[label], lw=1.6)
        if curves.shape[0] > 1:
            half = 1.96 * curves.std(axis=0, ddof=1) / math.sqrt(curves.shape[0])
            ax.fill_between(steps, mean - half, mean + half, color=colors[label], alpha=0.2, lw=0)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)


def plot_results(results: _ResultsLike, path: str | Path, metric: str = "cumulative_regret",
                 title: str | None = None, logy: bool = False, agents: Sequence[str] | None = None,
                 split: bool | None = None) -> Path:
    """Plot the mean ``metric`` of every agent with a 95% confidence band.

    When one agent's final value dwarfs the others' (:func:`split_outliers`,
    e.g. greedy's linear regret next to the exploring agents), the figure has
    two panels: every agent on a logarithmic axis, and the other agents on
    their own linear axis, whose title names the agents left out and their
    final values. Otherwise one panel.

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
        Logarithmic y axis (single panel; implies ``split=False``).
    agents : sequence of str, optional
        Subset of agent labels to draw (default: all).
    split : bool, optional
        Force (True) or forbid (False) the two-panel layout; default: two
        panels exactly when there are outliers.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    labels = list(results.agents if agents is None else agents)
    palette = _TAB10 if len(labels) <= 10 else _TAB20
    colors = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    finals = {label: float(results.curve(label, metric)[:, -1].mean()) for label in labels}
    outliers = [] if logy or split is False else split_outliers(finals)
    if split and not outliers:
        outliers = split_outliers(finals, ratio=1.0)
    env = results.config.get("environment", {})
    options = ", ".join(f"{k}={v}" for k, v in env.items() if k != "name")
    heading = title or (f"{results.config.get('name', 'experiment')}: {env.get('name', '')}"
                        + (f" ({options})" if options else ""))
    ylabel = metric.replace("_", " ") + f" (mean, 95% band, {len(results.seeds)} seeds)"
    many = len(labels) > 6
    if not outliers:
        fig = _figure(9.5 if many else 7.0, 4.8)
        ax = fig.add_subplot()
        _draw_curves(ax, results, labels, metric, colors)
        ax.set_title(heading)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if many:
            # Many curves: keep the legend off the data.
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(labels) <= 16 else 2)
        else:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        return _save(fig, path)
    kept = [label for label in labels if label not in outliers]
    fig = _figure(12.0, 4.8)
    left, right = fig.subplots(1, 2)
    _draw_curves(left, results, labels, metric, colors)
    left.set_yscale("log")
    left.set_title("all agents (log scale)", fontsize=10)
    left.set_ylabel(ylabel)
    left.legend(fontsize=8, loc="lower right")
    _draw_curves(right, results, kept, metric, colors)
    noted = ", ".join(f"{label}: {finals[label]:,.0f}" for label in outliers)
    right.set_title(f"without {', '.join(outliers)} (final {noted})", fontsize=10)
    right.set_ylabel(metric.replace("_", " ") + " (linear scale)")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(heading)
    fig.tight_layout()
    return _save(fig, path)


def plot_lines(path: str | Path, x: Sequence[float], series: dict[str, Sequence[float]], xlabel: str,
               ylabel: str, title: str, logx: bool = False, logy: bool = False) -> Path:
    """A plain line plot of several named series against ``x`` (for sweep presets).

    Parameters
    ----------
    path : str or pathlib.Path
        PNG file to write.
    x : sequence of float
        Abscissae shared by every series.
    series : dict of str to sequence of float
        Legend label to ordinates.
    xlabel, ylabel, title : str
        Axis labels and title.
    logx, logy : bool, default False
        Logarithmic axes (base 10 for x, base 2 for y).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
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
    return _save(fig, path)


def plot_grid(path: str | Path, values: np.ndarray, errors: np.ndarray, row_labels: Sequence[str],
              col_labels: Sequence[str], xlabel: str, ylabel: str, title: str) -> Path:
    """A heat map of ``values`` with ``value +- error`` written in every cell.

    Parameters
    ----------
    path : str or pathlib.Path
        PNG file to write.
    values, errors : numpy.ndarray
        ``(rows, columns)`` arrays.
    row_labels, col_labels : sequence of str
        Tick labels.
    xlabel, ylabel, title : str
        Axis labels and title.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if values.shape != errors.shape or values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values and errors must have shape ({len(row_labels)}, {len(col_labels)}), "
                         f"got {values.shape} and {errors.shape}")
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="viridis")
    # viridis is dark at the low end: white text there, black on the bright half.
    mid = 0.5 * (np.nanmin(values) + np.nanmax(values))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}\n+-{errors[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if values[i, j] < mid else "black")
    ax.set_xticks(range(len(col_labels)), list(col_labels), rotation=30)
    ax.set_yticks(range(len(row_labels)), list(row_labels))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return _save(fig, path)
