"""Long runs of the neural presets, one results file per agent as soon as it finishes.

Runs the agents of the ``quadratic`` or ``neural-bandit`` preset (``--set
paper``: the paper's scales and SGD steps with every baseline in its official
form; ``--set tuned``: the agents at the defaults chosen by
``benchmarks/sweep_neural.py``) through :func:`ensemblepp.experiments.run_experiment`,
all seeds of an agent in one :class:`~ensemblepp.neural.MultiSeed` batch, and
writes ``OUT/<env>-<set>-<agent>.json`` (a :class:`Results` file) after each
agent, so that a run stopped early still leaves the finished agents.
``--summary`` prints the regret and paired-difference tables of every file in
the ``--out`` folders, raw results files or summaries; ``--summary --write
DEST`` also writes the compact summary of the raw files,
``DEST/<env>-<set>-T<horizon>.json`` (format ``ensemblepp-neural-long/1``:
per agent its exact configuration, the package version, the seconds per step
of all seeds, and per seed the final regret and the cumulative regret every 1%
of the horizon), small enough to commit; the tables of docs/results.md are
printed from those (``benchmarks/results/neural/long/``).

Usage::

    python benchmarks/run_neural_long.py --env quadratic --set paper --horizon 20000 --seeds 5 --out DIR
    python benchmarks/run_neural_long.py --summary --out DIR [DIR ...] [--write benchmarks/results/neural/long]
    python benchmarks/run_neural_long.py --summary --out benchmarks/results/neural/long
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ensemblepp.experiments import run_experiment
from ensemblepp.experiments.results import Results
from ensemblepp.experiments.presets import neural_agent_set


def _slug(label: str) -> str:
    # "+" is spelled out so that Ensemble++ and Ensemble+ get different file names.
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("+", "p")).strip("-")


def run(env: str, which: str, horizon: int, n_seeds: int, out: Path, only: list[str] | None) -> None:
    agents = neural_agent_set(env, which)
    out.mkdir(parents=True, exist_ok=True)
    if only:
        # In the order of ``only``, so that a long run can put its cheap agents first.
        agents = [a for o in only for a in agents if o in a["label"]]
        agents = [a for i, a in enumerate(agents) if a not in agents[:i]]
    for agent in agents:
        path = out / f"{env}-{which}-{_slug(agent['label'])}.json"
        if path.exists():
            print(f"skip {path} (exists)", flush=True)
            continue
        t0 = time.perf_counter()
        res = run_experiment({"name": f"{env}-{which}", "horizon": horizon, "n_seeds": n_seeds, "seed": 0,
                              "environment": {"name": env}, "agents": [agent]}, progress=False)
        res.save(path, fmt="json")
        final = res.regret[agent["label"]].sum(axis=1)
        print(f"{env} {which} {agent['label']}: {final.mean():.1f} ± {final.std(ddof=1) / np.sqrt(len(final)):.1f} "
              f"in {time.perf_counter() - t0:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)


SUMMARY_FORMAT = "ensemblepp-neural-long/1"
GRID_POINTS = 100  # the regret curve is kept every 1% of the horizon
REFERENCE = "Ensemble++"


def command_line(env: str, which: str, horizon: int, n_seeds: int) -> str:
    """The command that runs one set (``DIR`` stands for the results folder)."""
    return (f"OMP_NUM_THREADS=1 python benchmarks/run_neural_long.py --env {env} --set {which} "
            f"--horizon {horizon} --seeds {n_seeds} --out DIR")


def grid(horizon: int) -> np.ndarray:
    """The steps ``t`` (1-based) at which a summary keeps the cumulative regret: every 1% of ``horizon``."""
    if horizon < GRID_POINTS or horizon % GRID_POINTS:
        raise ValueError(f"horizon must be a positive multiple of {GRID_POINTS}, got {horizon}")
    return np.arange(1, GRID_POINTS + 1) * (horizon // GRID_POINTS)


def _set_of(config: dict) -> str:
    name = config.get("name", "")
    for which in ("paper", "tuned"):
        if name.endswith(f"-{which}"):
            return which
    raise ValueError(f"config name {name!r} does not end in -paper or -tuned")


def compact(paths: list[Path]) -> dict[tuple[str, str, int], dict]:
    """Summaries of raw results files, one per (environment, set, horizon).

    Each summary keeps, per agent, its exact configuration, the package version,
    the seconds per step of all seeds together, and per seed the final regret
    and the cumulative regret at every 1% of the horizon (the file it came from
    is named with its SHA-256).
    """
    out: dict[tuple[str, str, int], dict] = {}
    for path in sorted(paths):
        res = Results.load(path)
        env, which, T = res.config["environment"]["name"], _set_of(res.config), res.horizon
        doc = out.setdefault((env, which, T), {
            "format": SUMMARY_FORMAT, "environment": env, "set": which, "horizon": T,
            "seeds": list(res.seeds), "t": grid(T).tolist(),
            "command": command_line(env, which, T, len(res.seeds)), "agents": {}})
        if list(res.seeds) != doc["seeds"]:
            raise ValueError(f"{path}: seeds {res.seeds} differ from the other files' {doc['seeds']}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        for lab in res.agents:
            if lab in doc["agents"]:
                raise ValueError(f"{path}: agent {lab!r} appears in two files of {env}/{which}/T={T}")
            cum = res.cumulative_regret(lab)
            doc["agents"][lab] = {
                "config": res.config, "version": res.version,
                "seconds_per_step": res.seconds_per_step[lab], "wall_seconds": res.wall_seconds[lab],
                "final_regret": cum[:, -1].tolist(),
                "cumulative_regret": cum[:, grid(T) - 1].tolist(),
                "source": {"file": path.name, "sha256": digest}}
    return out


def write_summaries(summaries: dict[tuple[str, str, int], dict], dest: Path) -> list[Path]:
    """Write every summary to ``dest/<env>-<set>-T<horizon>.json``, atomically."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for (env, which, T), doc in sorted(summaries.items()):
        path = dest / f"{env}-{which}-T{T}.json"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=dest)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the file into the repository
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _fail(path: Path, what: str) -> None:
    raise ValueError(f"{path}: not a valid {SUMMARY_FORMAT} file: {what}")


def load_summary(path: Path) -> dict:
    """Read and check a summary written by :func:`write_summaries` (every field, shapes, finite values)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a summary: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != SUMMARY_FORMAT:
        _fail(path, "format")
    for key, kind in (("environment", str), ("set", str), ("horizon", int), ("seeds", list), ("t", list),
                      ("command", str), ("agents", dict)):
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            _fail(path, f"field {key!r} must be a {kind.__name__}")
    T, n = doc["horizon"], len(doc["seeds"])
    try:
        expected = grid(T).tolist()
    except ValueError as exc:
        _fail(path, str(exc))
    if doc["t"] != expected:
        _fail(path, "field 't' is not every 1% of the horizon")
    if n < 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in doc["seeds"]):
        _fail(path, "field 'seeds' must hold at least two ints")
    if not doc["agents"]:
        _fail(path, "no agents")
    for lab, a in doc["agents"].items():
        if not isinstance(a, dict) or not isinstance(a.get("config"), dict):
            _fail(path, f"agent {lab!r}: missing config")
        for key in ("seconds_per_step", "wall_seconds"):
            v = a.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v > 0):
                _fail(path, f"agent {lab!r}: {key} must be a positive number")
        try:
            final = np.asarray(a.get("final_regret"), dtype=np.float64)
            cum = np.asarray(a.get("cumulative_regret"), dtype=np.float64)
        except (TypeError, ValueError):
            _fail(path, f"agent {lab!r}: regret arrays must be numbers")
        if final.shape != (n,) or cum.shape != (n, GRID_POINTS):
            _fail(path, f"agent {lab!r}: final_regret must be ({n},) and cumulative_regret ({n}, {GRID_POINTS})")
        if not (np.isfinite(final).all() and np.isfinite(cum).all()):
            _fail(path, f"agent {lab!r}: non-finite regret")
        if not np.array_equal(cum[:, -1], final):
            _fail(path, f"agent {lab!r}: the curve does not end at the final regret")
        a["final_regret"], a["cumulative_regret"] = final, cum
    return doc


def gather(outs: list[Path]) -> list[dict]:
    """Summaries of every file in the folders ``outs``: summary files as they are, raw
    results files compacted first (so a table reads the same from either)."""
    docs, raw = [], []
    for out in outs:
        for path in sorted(out.glob("*.json")):
            try:
                head = json.loads(path.read_text(encoding="utf-8")).get("format")
            except (OSError, json.JSONDecodeError, AttributeError) as exc:
                raise ValueError(f"{path}: cannot read: {exc}") from exc
            if head == SUMMARY_FORMAT:
                docs.append(load_summary(path))
            else:
                raw.append(path)
    for doc in compact(raw).values():
        for a in doc["agents"].values():
            a["final_regret"] = np.asarray(a["final_regret"])
            a["cumulative_regret"] = np.asarray(a["cumulative_regret"])
        docs.append(doc)
    return sorted(docs, key=lambda d: (d["environment"], d["set"], d["horizon"]))


def _at(doc: dict, lab: str, t: int) -> np.ndarray:
    """Per-seed cumulative regret of ``lab`` at step ``t`` (a grid point)."""
    return doc["agents"][lab]["cumulative_regret"][:, doc["t"].index(t)]


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def regret_table(docs: list[dict], marks: tuple[int, ...] = (3000, 5000, 10000, 20000, 50000)) -> str:
    """Markdown table: final regret (mean ± s.e.), regret at ``marks``, in the 2nd half, ms per seed-step."""
    lines = ["| environment | set | agent | T | seeds | final regret | "
             + " | ".join(f"regret at t={t}" for t in marks) + " | regret in the 2nd half | ms per seed-step |",
             "| --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in marks) + " | ---: | ---: |"]
    for doc in docs:
        T, n = doc["horizon"], len(doc["seeds"])
        for lab in sorted(doc["agents"]):
            a = doc["agents"][lab]
            m, se = _mean_se(a["final_regret"])
            at = [f"{_at(doc, lab, t).mean():.1f}" if t in doc["t"] else "" for t in marks]
            half = (a["final_regret"] - _at(doc, lab, T // 2)).mean()
            lines.append(f"| {doc['environment']} | {doc['set']} | {lab} | {T} | {n} | {m:.1f} ± {se:.1f} | "
                         + " | ".join(at) + f" | {half:.1f} | {1e3 * a['seconds_per_step'] / n:.2f} |")
    return "\n".join(lines)


def _reference(doc: dict) -> str | None:
    """The Ensemble++ agent of a summary (None while its run has not finished)."""
    refs = [lab for lab in doc["agents"] if lab.startswith(REFERENCE + " ")]
    if len(refs) > 1:
        raise ValueError(f"{doc['environment']}/{doc['set']}/T={doc['horizon']}: several {REFERENCE} agents")
    return refs[0] if refs else None


def _spans(t: list[int], holds: np.ndarray) -> str:
    """The runs of grid points where ``holds``, as ``a-b`` ranges of ``t``."""
    spans, k = [], 0
    while k < len(holds):
        if not holds[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(holds) and holds[j + 1]:
            j += 1
        spans.append(f"{t[k]}-{t[j]}" if j > k else f"{t[k]}")
        k = j + 1
    return ", ".join(spans) if spans else "none"


def paired_table(docs: list[dict], marks: tuple[int, ...] = (10000, 50000)) -> str:
    """Markdown table of paired differences (other agent minus Ensemble++, mean ± s.e. over seeds)
    at each of ``marks`` on the grid and at ``T``, and the steps ``t`` of the grid (every 1% of the
    horizon) at which the difference exceeds two standard errors, split by its sign."""
    lines = ["| environment | set | agent minus Ensemble++ | t | paired difference | "
             "t where > +2 s.e. | t where < -2 s.e. |",
             "| --- | --- | --- | ---: | ---: | --- | --- |"]
    for doc in docs:
        ref = _reference(doc)
        if ref is None:
            continue
        T = doc["horizon"]
        ts = sorted({t for t in marks if t in doc["t"]} | {T})
        for lab in sorted(doc["agents"]):
            if lab == ref:
                continue
            d = doc["agents"][lab]["cumulative_regret"] - doc["agents"][ref]["cumulative_regret"]
            mean = d.mean(axis=0)
            se = d.std(axis=0, ddof=1) / math.sqrt(d.shape[0])
            above, below = _spans(doc["t"], mean > 2 * se), _spans(doc["t"], mean < -2 * se)
            for i, t in enumerate(ts):
                j = doc["t"].index(t)
                tail = f"{above} | {below}" if i == 0 else " | "
                lines.append(f"| {doc['environment']} | {doc['set']} | {lab} | {t} | "
                             f"{mean[j]:+.1f} ± {se[j]:.1f} | {tail} |")
    return "\n".join(lines)


def summary(outs: list[Path], write: Path | None = None, horizons: list[int] | None = None) -> None:
    """Print the regret and paired-difference tables of every file in the folders ``outs``
    (raw results files or summaries; with ``horizons``, only the runs of those horizons) and,
    with ``write``, write the summaries of the raw files there."""
    if write is not None:
        raw = [p for out in outs for p in sorted(out.glob("*.json"))
               if json.loads(p.read_text(encoding="utf-8")).get("format") != SUMMARY_FORMAT]
        for path in write_summaries(compact(raw), write):
            print(f"wrote {path}")
    docs = [d for d in gather(outs) if not horizons or d["horizon"] in horizons]
    print(regret_table(docs))
    print()
    print(paired_table(docs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=("quadratic", "neural-bandit"), default="quadratic")
    parser.add_argument("--set", dest="which", choices=("paper", "tuned"), default="paper")
    parser.add_argument("--horizon", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="run only agents whose label contains one of these, in this order")
    parser.add_argument("--out", type=Path, nargs="+", required=True,
                        help="results folder (--summary: one or more)")
    parser.add_argument("--summary", action="store_true",
                        help="print the tables of the raw results files and summaries in --out")
    parser.add_argument("--horizons", type=int, nargs="+", metavar="T",
                        help="with --summary: print only the runs of these horizons")
    parser.add_argument("--write", type=Path, metavar="DEST",
                        help="with --summary: write the summary of the raw files in --out to "
                             "DEST/<env>-<set>-T<horizon>.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if (args.write is not None or args.horizons) and not args.summary:
        parser.error("--write and --horizons go with --summary")
    if args.summary:
        summary(args.out, args.write, args.horizons)
    else:
        if len(args.out) != 1:
            parser.error("a run writes to one --out folder")
        run(args.env, args.which, args.horizon, args.seeds, args.out[0], args.only)


if __name__ == "__main__":
    main()
