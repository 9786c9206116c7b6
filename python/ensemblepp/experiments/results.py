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

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Results", "ResultsFileError", "load_results", "FORMAT"]

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

    def save(self, path: str | Path, fmt: str | None = None, *, overwrite: bool = True) -> Path:
        """Write the results as JSON or CSV (``fmt`` or the file suffix), atomically.

        The file is written to a temporary file in the same folder, flushed to disk and renamed
        over ``path``, so that an interrupted save leaves either the old file or the new one.
        Rows are written one at a time: the memory needed does not grow with the file.

        Parameters
        ----------
        path : str or path-like
            Target file.
        fmt : {"json", "csv"}, optional
            Format; by default the suffix of ``path`` (JSON without a suffix).
        overwrite : bool, default True
            Replace an existing file. With False an existing ``path`` raises ``FileExistsError``.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        ValueError
            For an unknown format.
        IsADirectoryError, FileExistsError
            When ``path`` is a folder, or exists and ``overwrite`` is False.
        """
        path = Path(path)
        fmt = _format_of(path, fmt)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a folder, not a results file")
        if not overwrite and path.exists():
            raise FileExistsError(f"{path}: exists (not replaced)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with _atomic_writer(path) as fh:
            if fmt == "json":
                self._write_json(fh)
            else:
                self._write_csv(fh)
        return path

    def _write_json(self, fh: Any) -> None:
        # The same document as to_json(), streamed row by row instead of built in memory.
        head = json.dumps(self.header(), separators=(",", ":"))
        fh.write(head[:-1] + ',"results":{')
        for i, label in enumerate(self.agents):
            fh.write(("," if i else "") + json.dumps(label) + ":{")
            parts = [("cumulative_regret", self.cumulative_regret(label)),
                     ("cumulative_reward", self.cumulative_reward(label))]
            for j, (key, arr) in enumerate(parts):
                fh.write(("," if j else "") + json.dumps(key) + ":")
                _write_rows(fh, arr)
            fh.write(',"metrics":{')
            for j, (m, v) in enumerate(self.metrics.get(label, {}).items()):
                fh.write(("," if j else "") + json.dumps(m) + ":")
                _write_rows(fh, v)
            fh.write("}}")
        fh.write("}}")

    def _write_csv(self, fh: Any) -> None:
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


def _write_rows(fh: Any, a: np.ndarray) -> None:
    fh.write("[")
    for i, row in enumerate(np.asarray(a, dtype=np.float64)):
        fh.write(("," if i else "") + json.dumps([float(f"{v:.10g}") for v in row], separators=(",", ":")))
    fh.write("]")


@contextlib.contextmanager
def _atomic_writer(path: Path) -> Iterator[Any]:
    """A text file that replaces ``path`` only once it is completely written and on disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = path.suffix.lstrip(".").lower() or "json"
    if fmt not in ("json", "csv"):
        raise ValueError(f"format: expected 'json' or 'csv', got {fmt!r}")
    return fmt


def _diff(cum: np.ndarray) -> np.ndarray:
    return np.diff(cum, axis=1, prepend=0.0)


class ResultsFileError(ValueError):
    """A results file is missing, unreadable, or not a complete ensemblepp results file.

    The message names the file and the field at fault.
    """


def load_results(path: str | Path) -> Results:
    """Read a results file (JSON or CSV) written by :meth:`Results.save`.

    Every field is checked (types, one array of ``(n_seeds, horizon)`` finite values per agent
    and curve, known agents and seeds) before a :class:`Results` is built.

    Raises
    ------
    ResultsFileError
        A ``ValueError`` naming the file and the field, when the file is missing, a folder, not
        UTF-8, or not a complete ensemblepp results file.
    """
    path = Path(path)
    if not path.exists():
        raise ResultsFileError(f"results file not found: {path}")
    if not path.is_file():
        raise ResultsFileError(f"{path}: not a results file (a folder or a special file)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc})") from exc
    if text.startswith("#"):
        return _load_csv(text, path)
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ResultsFileError(f"{path}: not a JSON or CSV results file ({exc})") from exc
    head = _check_header(doc, path)
    n, T = len(head["seeds"]), head["horizon"]
    results = _field(doc, "results", dict, path)
    regret, reward, metrics = {}, {}, {}
    for label in head["agents"]:
        entry = _field(results, label, dict, path, f"results.{label}")
        where = f"results.{label}"
        regret[label] = _diff(_curve(entry, "cumulative_regret", (n, T), path, where))
        reward[label] = _diff(_curve(entry, "cumulative_reward", (n, T), path, where))
        per = _field(entry, "metrics", dict, path, f"{where}.metrics") if "metrics" in entry else {}
        metrics[label] = {m: _curve(per, m, (n, T), path, f"{where}.metrics", finite=False) for m in per}
    return _build(head, regret, reward, metrics)


def _where(path: Path, field: str) -> str:
    return f"{path}: field {field!r}"


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, name: str | None = None) -> Any:
    name = name or key
    if key not in doc:
        raise ResultsFileError(f"{_where(path, name)} is missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ResultsFileError(f"{_where(path, name)}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_header(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ResultsFileError(f"{path}: not an ensemblepp results file (format {FORMAT!r} expected)")
    head: dict[str, Any] = {"config": _field(doc, "config", dict, path),
                            "version": _field(doc, "version", str, path)}
    agents = _field(doc, "agents", list, path)
    if not agents or not all(isinstance(a, str) and a for a in agents) or len(set(agents)) != len(agents):
        raise ResultsFileError(f"{_where(path, 'agents')}: expected a non-empty list of distinct labels")
    seeds = _field(doc, "seeds", list, path)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ResultsFileError(f"{_where(path, 'seeds')}: expected a non-empty list of distinct non-negative integers")
    horizon = _field(doc, "horizon", int, path)
    if horizon < 1:
        raise ResultsFileError(f"{_where(path, 'horizon')}: must be >= 1, got {horizon}")
    head.update(agents=list(agents), seeds=list(seeds), horizon=horizon)
    for key in ("wall_seconds", "seconds_per_step"):
        table = doc.get(key, {})
        if not isinstance(table, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in table.values()):
            raise ResultsFileError(f"{_where(path, key)}: expected an object of numbers")
        head[key] = {str(k): float(v) for k, v in table.items()}
    return head


def _curve(doc: dict[str, Any], key: str, shape: tuple[int, int], path: Path, where: str,
           finite: bool = True) -> np.ndarray:
    name = f"{where}.{key}"
    rows = _field(doc, key, list, path, name)
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ResultsFileError(f"{_where(path, name)}: expected {shape[0]} rows of {shape[1]} numbers") from exc
    if arr.shape != shape or any(isinstance(v, bool) for row in rows for v in row):
        raise ResultsFileError(f"{_where(path, name)}: expected {shape[0]} rows of {shape[1]} numbers "
                               f"(seeds x horizon), got shape {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise ResultsFileError(f"{_where(path, name)}: contains NaN or infinite values")
    return arr


def _build(head: dict[str, Any], regret: dict[str, np.ndarray], reward: dict[str, np.ndarray],
           metrics: dict[str, dict[str, np.ndarray]]) -> Results:
    return Results(config=head["config"], version=head["version"], agents=head["agents"], seeds=head["seeds"],
                   regret=regret, reward=reward, metrics=metrics, wall_seconds=head["wall_seconds"],
                   seconds_per_step=head["seconds_per_step"])


def _load_csv(text: str, path: Path) -> Results:
    first, _, body = text.partition("\n")
    try:
        doc = json.loads(first[1:])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ResultsFileError(f"{path}: CSV header line is not ensemblepp JSON ({exc})") from exc
    head = _check_header(doc, path)
    agents, seeds, horizon = head["agents"], head["seeds"], head["horizon"]
    reader = csv.reader(io.StringIO(body))
    columns = next(reader, None)
    if columns is None or columns[:5] != ["agent", "seed", "step", *_BASE_METRICS] or len(set(columns)) != len(columns):
        raise ResultsFileError(f"{path}: line 2: expected the columns agent,seed,step,"
                               f"{','.join(_BASE_METRICS)}[,metrics...]")
    seed_row = {s: i for i, s in enumerate(seeds)}
    width = len(columns) - 3
    expected = len(agents) * len(seeds) * horizon
    if body.count("\n") > expected + 2:
        raise ResultsFileError(f"{path}: more rows than {len(agents)} agents x {len(seeds)} seeds x {horizon} steps")
    data = {label: np.full((width, len(seeds), horizon), np.nan) for label in agents}
    seen = {label: np.zeros((len(seeds), horizon), dtype=bool) for label in agents}
    for line, row in enumerate(reader, start=3):
        if not row:
            continue
        if len(row) != len(columns):
            raise ResultsFileError(f"{path}: line {line}: expected {len(columns)} fields, got {len(row)}")
        label = row[0]
        if label not in data:
            raise ResultsFileError(f"{path}: line {line}: field 'agent': unknown label {label!r}")
        try:
            seed, step = int(row[1]), int(row[2])
            values = [float(v) for v in row[3:]]
        except ValueError as exc:
            raise ResultsFileError(f"{path}: line {line}: not a number ({exc})") from exc
        if seed not in seed_row:
            raise ResultsFileError(f"{path}: line {line}: field 'seed': {seed} is not in the header's seeds")
        if not 1 <= step <= horizon:
            raise ResultsFileError(f"{path}: line {line}: field 'step': {step} is not in 1..{horizon}")
        if not (math.isfinite(values[0]) and math.isfinite(values[1])):
            raise ResultsFileError(f"{path}: line {line}: NaN or infinite cumulative regret or reward")
        data[label][:, seed_row[seed], step - 1] = values
        seen[label][seed_row[seed], step - 1] = True
    for label in agents:
        if not seen[label].all():
            raise ResultsFileError(f"{path}: agent {label!r}: {int((~seen[label]).sum())} (seed, step) rows missing")
    regret, reward, metrics = {}, {}, {}
    for label in agents:
        regret[label] = _diff(data[label][0])
        reward[label] = _diff(data[label][1])
        metrics[label] = {m: data[label][2 + j] for j, m in enumerate(columns[5:])
                          if not np.all(np.isnan(data[label][2 + j]))}
    return _build(head, regret, reward, metrics)
