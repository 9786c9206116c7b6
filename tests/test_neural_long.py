"""benchmarks/run_neural_long.py: the compact summaries of the long neural runs and their tables."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from ensemblepp.experiments.results import Results  # noqa: E402

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_neural_long.py"
T, SEEDS = 200, 3


@pytest.fixture(scope="module")
def long():
    spec = importlib.util.spec_from_file_location("run_neural_long", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def raw(long, tmp_path_factory):
    """A tiny tuned quadratic run of greedy and Ensemble++ (greedy first, as asked)."""
    out = tmp_path_factory.mktemp("raw")
    long.run("quadratic", "tuned", T, SEEDS, out, ["greedy", "Ensemble++"])
    return out


def test_run_follows_the_order_of_only(long, tmp_path, capsys):
    long.run("quadratic", "tuned", T, 2, tmp_path, ["greedy", "Ensemble++", "Ensemble+"])
    printed = [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()]
    # "Ensemble+" also matches Ensemble++, which runs once, where it was first asked for.
    assert printed == ["quadratic tuned greedy (tuned)", "quadratic tuned Ensemble++ (tuned)",
                       "quadratic tuned Ensemble+ (tuned)"]


def test_summary_keeps_every_percent_of_the_raw_curves(long, raw, tmp_path):
    files = sorted(raw.glob("*.json"))
    assert len(files) == 2
    written = long.write_summaries(long.compact(files), tmp_path)
    assert [p.name for p in written] == [f"quadratic-tuned-T{T}.json"]
    doc = long.load_summary(written[0])
    assert doc["t"] == list(range(2, T + 1, 2))
    assert doc["command"] == (f"OMP_NUM_THREADS=1 python benchmarks/run_neural_long.py --env quadratic "
                              f"--set tuned --horizon {T} --seeds {SEEDS} --out DIR")
    assert sorted(doc["agents"]) == ["Ensemble++ (tuned)", "greedy (tuned)"]
    for path in files:
        res = Results.load(path)
        (lab,) = res.agents
        a = doc["agents"][lab]
        cum = np.cumsum(res.regret[lab], axis=1)  # independent of the writer's own cumsum
        np.testing.assert_allclose(a["cumulative_regret"], cum[:, 1::2], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a["final_regret"], cum[:, -1], rtol=1e-12, atol=1e-12)
        assert a["seconds_per_step"] == res.seconds_per_step[lab]
        assert a["config"] == res.config and a["config"]["agents"][0]["label"] == lab
        assert a["source"]["file"] == path.name and len(a["source"]["sha256"]) == 64
    assert (written[0].stat().st_mode & 0o777) == 0o644


def test_tables_read_the_same_from_summaries_and_raw_files(long, raw, tmp_path):
    long.write_summaries(long.compact(sorted(raw.glob("*.json"))), tmp_path)
    from_raw, from_summary = long.gather([raw]), long.gather([tmp_path])
    assert long.regret_table(from_raw) == long.regret_table(from_summary)
    assert long.paired_table(from_raw) == long.paired_table(from_summary)
    # The paired difference at T against an independent computation from the raw arrays.
    g = Results.load(raw / "quadratic-tuned-greedy-tuned.json").regret["greedy (tuned)"].sum(axis=1)
    e = Results.load(raw / "quadratic-tuned-ensemblepp-tuned.json").regret["Ensemble++ (tuned)"].sum(axis=1)
    d = g - e
    cell = f"{d.mean():+.1f} ± {d.std(ddof=1) / math.sqrt(SEEDS):.1f}"
    row = [r for r in long.paired_table(from_summary).splitlines() if "greedy" in r]
    assert len(row) == 1 and f"| {T} | {cell} |" in row[0]
    final = [r for r in long.regret_table(from_summary).splitlines() if "greedy" in r][0]
    assert f"| {g.mean():.1f} ± {g.std(ddof=1) / math.sqrt(SEEDS):.1f} |" in final


def test_spans_of_a_gap(long):
    mod = long
    t = [10, 20, 30, 40, 50, 60]
    assert mod._spans(t, np.array([0, 1, 1, 0, 1, 0], bool)) == "20-30, 50"
    assert mod._spans(t, np.array([1, 1, 1, 1, 1, 1], bool)) == "10-60"
    assert mod._spans(t, np.zeros(6, bool)) == "none"


@pytest.mark.parametrize("damage", ["truncate", "nan", "shape", "end", "format", "grid", "seeds"])
def test_damaged_summary_is_refused(long, raw, tmp_path, damage):
    (path,) = long.write_summaries(long.compact(sorted(raw.glob("*.json"))), tmp_path)
    doc = json.loads(path.read_text())
    a = doc["agents"]["greedy (tuned)"]
    if damage == "truncate":
        path.write_text(path.read_text()[:-50])
    else:
        if damage == "nan":
            a["cumulative_regret"][1][7] = float("nan")
        elif damage == "shape":
            a["cumulative_regret"][0].pop()
        elif damage == "end":
            a["final_regret"][0] += 1.0
        elif damage == "format":
            doc["format"] = "ensemblepp-results/1"
        elif damage == "grid":
            doc["t"][3] += 1
        elif damage == "seeds":
            doc["seeds"] = [0]
        path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=path.name):
        long.load_summary(path)


def test_grid_needs_a_multiple_of_100(long):
    with pytest.raises(ValueError, match="horizon"):
        long.grid(150)
    np.testing.assert_array_equal(long.grid(500)[:3], [5, 10, 15])


def test_summary_prints_only_the_horizons_asked_for(long, raw, tmp_path, capsys):
    long.write_summaries(long.compact(sorted(raw.glob("*.json"))), tmp_path)
    long.summary([tmp_path], horizons=[T])
    # one row in the regret table, one in the paired table
    assert capsys.readouterr().out.count(f"| quadratic | tuned | greedy (tuned) | {T} |") == 2
    long.summary([tmp_path], horizons=[2 * T])
    assert "greedy" not in capsys.readouterr().out
