"""Experiment results: per-agent arrays (seeds x steps), files, tables and plots.

JSON layout (``format: "ensemblepp-results/1"``)::

    {"format", "version", "config", "horizon", "seeds", "agents": [labels],
     "wall_seconds": {label: s}, "seconds_per_step": {label: s},
     "results": {label: {"cumulative_regret": [[...] per seed],
                         "cumulative_reward": [[...]],
                         "metrics": {name: [[per-step values]]}}}}

CSV is a long table ``agent,seed,step,cumulative_regret,cumulative_reward,<metrics>``
preceded by ``#``-comment lines holding the JSON header (version, config, timings).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Results", "load_results", "FORMAT"]

FORMAT = "ensemblepp-results/1"
_BASE_METRICS = ("cumulative_regret", "cumulative_reward")


@dataclass
class Results:
    """Outcome of one experiment.

    Attributes
    ----------
    config : dict
        The full configuration (plain JSON types).
    version : str
        ``ensemblepp.__version__`` that produced it.
    agents : list of str
        Agent labels, in run order.
    seeds : list of int
        Environment seeds, one per row of every array.
    regret, reward : dict of str to numpy.ndarray
        Per-step expected regret and observed reward, ``(n_seeds, horizon)``.
    metrics : dict of str to dict of str to numpy.ndarray
        Extra per-step metrics reported by the environment, per agent.
    wall_seconds, seconds_per_step : dict of str to float
        Wall time of each agent's run, and that divided by the horizon (one
        step of all seeds).
    """

    config: dict[str, Any]
    version: str
    agents: list[str]
    seeds: list[int]
    regret: dict[str, np.ndarray]
    reward: dict[str, np.ndarray]
    metrics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)
    seconds_per_step: dict[str, float] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        """Number of steps."""
        return int(next(iter(self.regret.values())).shape[1]) if self.regret else 0

    def cumulative_regret(self, agent: str) -> np.ndarray:
        """Cumulative expected regret ``(n_seeds, horizon)`` of ``agent``."""
        return np.cumsum(self._get(self.regret, agent), axis=1)

    def cumulative_reward(self, agent: str) -> np.ndarray:
        """Cumulative observed reward ``(n_seeds, horizon)`` of ``agent``."""
        return np.cumsum(self._get(self.reward, agent), axis=1)

    def metric_names(self) -> list[str]:
        """Names accepted by :meth:`curve`."""
        extra = sorted({m for per in self.metrics.values() for m in per})
        return [*_BASE_METRICS, *extra]

    def curve(self, agent: str, metric: str = "cumulative_regret") -> np.ndarray:
        """Per-seed curve ``(n_seeds, horizon)`` of ``metric`` for ``agent``.

        ``cumulative_regret`` and ``cumulative_reward`` are cumulative sums; an
        extra metric ``m`` is its running mean, and ``cumulative_m`` its sum.
        """
        if metric == "cumulative_regret":
            return self.cumulative_regret(agent)
        if metric == "cumulative_reward":
            return self.cumulative_reward(agent)
        per = self.metrics.get(agent, {})
        if metric in per:
            steps = np.arange(1, per[metric].shape[1] + 1)
            return np.cumsum(per[metric], axis=1) / steps
        if metric.startswith("cumulative_") and metric[len("cumulative_"):] in per:
            return np.cumsum(per[metric[len("cumulative_"):]], axis=1)
        raise ValueError(f"metric: unknown {metric!r}; available: {', '.join(self.metric_names())}")

    def final(self, agent: str, metric: str = "cumulative_regret") -> tuple[float, float]:
        """Mean over seeds of the last value of ``metric`` and its standard error."""
        last = self.curve(agent, metric)[:, -1]
        se = float(last.std(ddof=1) / math.sqrt(len(last))) if len(last) > 1 else float("nan")
        return float(last.mean()), se

    def _get(self, table: dict[str, np.ndarray], agent: str) -> np.ndarray:
        if agent not in table:
            raise ValueError(f"agent: unknown label {agent!r}; available: {', '.join(self.agents)}")
        return table[agent]

    # -- tables ---------------------------------------------------------------
    def summary(self, metric: str = "cumulative_regret") -> str:
        """A plain-text table: final ``metric`` (mean +- s.e.) and timings per agent."""
        head = ("agent", f"final {metric}", "+- s.e.", "s/step", "wall s")
        rows = []
        for label in self.agents:
            mean, se = self.final(label, metric)
            rows.append((label, f"{mean:.2f}", f"{se:.2f}",
                         f"{self.seconds_per_step.get(label, float('nan')):.2e}",
                         f"{self.wall_seconds.get(label, float('nan')):.1f}"))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        return "\n".join(lines)

    def markdown(self, metric: str = "cumulative_regret") -> str:
        """The summary as a Markdown table."""
        lines = [f"| agent | final {metric} (mean +- s.e.) | s/step | wall s |", "| --- | ---: | ---: | ---: |"]
        for label in self.agents:
            mean, se = self.final(label, metric)
            lines.append(f"| {label} | {mean:.1f} +- {se:.1f} | "
                         f"{self.seconds_per_step.get(label, float('nan')):.2e} | "
                         f"{self.wall_seconds.get(label, float('nan')):.1f} |")
        return "\n".join(lines)

    # -- files ----------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Everything but the arrays."""
        return {"format": FORMAT, "version": self.version, "config": self.config,
                "horizon": self.horizon, "seeds": list(self.seeds), "agents": list(self.agents),
                "wall_seconds": self.wall_seconds, "seconds_per_step": self.seconds_per_step}

    def to_json(self) -> dict[str, Any]:
        """The JSON document (see the module docstring)."""
        doc = self.header()
        doc["results"] = {
            label: {"cumulative_regret": _rounded(self.cumulative_regret(label)),
                    "cumulative_reward": _rounded(self.cumulative_reward(label)),
                    "metrics": {m: _rounded(v) for m, v in self.metrics.get(label, {}).items()}}
            for label in self.agents}
        return doc

    def save(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the results as JSON or CSV (``fmt`` or the file suffix).

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        fmt = _format_of(path, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(self.to_json(), fh, separators=(",", ":"))
        else:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write("# " + json.dumps(self.header(), separators=(",", ":")) + "\n")
                extra = sorted({m for per in self.metrics.values() for m in per})
                writer = csv.writer(fh)
                writer.writerow(["agent", "seed", "step", *_BASE_METRICS, *extra])
                steps = np.arange(1, self.horizon + 1)
                for label in self.agents:
                    cols = [self.cumulative_regret(label), self.cumulative_reward(label)]
                    per = self.metrics.get(label, {})
                    cols += [per[m] if m in per else np.full_like(cols[0], np.nan) for m in extra]
                    for i, seed in enumerate(self.seeds):
                        block = np.column_stack([c[i] for c in cols])
                        for step, row in zip(steps, block):
                            writer.writerow([label, seed, int(step), *(f"{v:.10g}" for v in row)])
        return path

    def plot(self, path: str | Path, metric: str = "cumulative_regret", title: str | None = None,
             logy: bool = False, split: bool | None = None) -> Path:
        """Draw the mean ``metric`` per agent with a 95% confidence band to a PNG.

        The band is mean +- 1.96 standard errors over seeds. An agent whose
        final value dwarfs the others' gets a two-panel figure (see
        :func:`~ensemblepp.experiments.plotting.plot_results`, which also
        documents ``split``).
        """
        # Imported here: plotting needs matplotlib (the plot extra), results files do not.
        from .plotting import plot_results

        return plot_results(self, path, metric=metric, title=title, logy=logy, split=split)

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Read a results file written by :meth:`save` (JSON or CSV)."""
        return load_results(path)


def _rounded(a: np.ndarray) -> list[list[float]]:
    # 10 significant digits keep files small and differences exact enough
    # to recover the per-step values to ~1e-9 relative.
    return [[float(f"{v:.10g}") for v in row] for row in np.asarray(a, dtype=np.float64)]


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = path.suffix.lstrip(".").lower() or "json"
    if fmt not in ("json", "csv"):
        raise ValueError(f"format: expected 'json' or 'csv', got {fmt!r}")
    return fmt


def _diff(cum: np.ndarray) -> np.ndarray:
    return np.diff(cum, axis=1, prepend=0.0)


def load_results(path: str | Path) -> Results:
    """Read a results file (JSON or CSV) written by :meth:`Results.save`.

    Raises
    ------
    ValueError
        If the file is not an ensemblepp results file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if text.startswith("#"):
        return _load_csv(text, path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON or CSV results file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ensemblepp results file (format {FORMAT!r} expected)")
    regret, reward, metrics = {}, {}, {}
    for label in doc["agents"]:
        entry = doc["results"][label]
        regret[label] = _diff(np.asarray(entry["cumulative_regret"], dtype=np.float64))
        reward[label] = _diff(np.asarray(entry["cumulative_reward"], dtype=np.float64))
        metrics[label] = {m: np.asarray(v, dtype=np.float64) for m, v in entry.get("metrics", {}).items()}
    return Results(config=doc["config"], version=doc["version"], agents=list(doc["agents"]),
                   seeds=list(doc["seeds"]), regret=regret, reward=reward, metrics=metrics,
                   wall_seconds=doc.get("wall_seconds", {}), seconds_per_step=doc.get("seconds_per_step", {}))


def _load_csv(text: str, path: Path) -> Results:
    first, _, body = text.partition("\n")
    try:
        head = json.loads(first[1:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: CSV header line is not ensemblepp JSON ({exc})") from exc
    if head.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ensemblepp results file (format {FORMAT!r} expected)")
    reader = csv.reader(io.StringIO(body))
    columns = next(reader)
    agents, seeds, horizon = head["agents"], head["seeds"], int(head["horizon"])
    seed_row = {s: i for i, s in enumerate(seeds)}
    data = {label: np.full((len(columns) - 3, len(seeds), horizon), np.nan) for label in agents}
    for row in reader:
        label, seed, step = row[0], int(row[1]), int(row[2])
        data[label][:, seed_row[seed], step - 1] = [float(v) for v in row[3:]]
    regret, reward, metrics = {}, {}, {}
    for label in agents:
        regret[label] = _diff(data[label][0])
        reward[label] = _diff(data[label][1])
        metrics[label] = {m: data[label][2 + j] for j, m in enumerate(columns[5:])
                          if not np.all(np.isnan(data[label][2 + j]))}
    return Results(config=head["config"], version=head["version"], agents=list(agents), seeds=list(seeds),
                   regret=regret, reward=reward, metrics=metrics, wall_seconds=head.get("wall_seconds", {}),
                   seconds_per_step=head.get("seconds_per_step", {}))
