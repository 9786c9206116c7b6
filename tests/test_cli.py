"""The ``ensemblepp`` command line: runs, plots, listings and bad options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ensemblepp.cli import main, parse_agent_spec, parse_value
from ensemblepp.experiments import load_results

TINY = ["-a", "random", "-a", "random:label=second", "-E", "dim=3", "-E", "n_actions=5", "-T", "20", "-n", "2",
        "-q"]


def _has_linear() -> bool:
    try:
        import ensemblepp.linear  # noqa: F401
    except ImportError:
        return False
    return True


def test_parse_values_and_agent_specs():
    assert parse_value("3") == 3 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value("[64, 64]") == [64, 64] and parse_value("cube") == "cube"
    assert parse_agent_spec("ensemble++:M=8,perturbation=cube,hidden=[4, 4]") == {
        "name": "ensemble++", "M": 8, "perturbation": "cube", "hidden": [4, 4]}
    assert parse_agent_spec("ts") == {"name": "ts"}


def test_run_writes_results_and_png_then_plot_redraws(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", *TINY, "--name", "t", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "second" in out and "final cumulative_regret" in out
    res = load_results(tmp_path / "t.json")
    assert res.agents == ["random", "second"] and res.horizon == 20 and len(res.seeds) == 2
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path / "t.json"), "-o", str(tmp_path / "again.png"), "--logy"]) == 0
    assert (tmp_path / "again.png").stat().st_size > 1000


def test_run_to_csv_file(tmp_path: Path):
    target = tmp_path / "sub" / "r.csv"
    assert main(["run", *TINY, "-o", str(target), "--no-plot"]) == 0
    assert load_results(target).horizon == 20
    assert not target.with_suffix(".png").exists()


def test_run_from_toml(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "fromtoml"\nhorizon = 10\nn_seeds = 2\n[environment]\nname = "changing-linear"\n'
                   'dim = 3\nn_actions = 4\n[[agents]]\nname = "random"\n')
    assert main(["run", "--config", str(cfg), "-T", "12", "-o", str(tmp_path), "-q"]) == 0
    res = load_results(tmp_path / "fromtoml.json")
    assert res.horizon == 12 and res.config["environment"]["name"] == "changing-linear"


@pytest.mark.parametrize("argv, word", [
    (["run", "-a", "nope"], "unknown agent"),
    (["run", "-a", "random:colour=3"], "colour"),
    (["run", "-a", "random:oops"], "key=value"),
    (["run", "-T", "0"], "horizon"),
    (["run", "-n", "0"], "seeds"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--env", "nope"], "unknown name"),
    (["run", "-E", "dimm=3"], "dimm"),
    (["run", "--preset", "nope"], "unknown preset"),
    (["run", "--preset", "default", "-a", "ts"], "cannot be combined"),
    (["run", "--config", "missing.toml"], "not found"),
    (["run", *TINY, "--metric", "nope"], "metric"),
    (["plot", "missing.json"], "not found"),
])
def test_bad_options_exit_2_with_a_message(argv, word, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main([*argv, "-o", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemblepp: error:") and word in err
    assert not list(tmp_path.glob("*.json"))


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        main(["run", "--horizon", "abc"])
    assert info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_listings(capsys: pytest.CaptureFixture[str]):
    for command, word in (("presets", "linear-ensemble-size"), ("agents", "ensemble++"), ("envs", "finite-linear")):
        assert main([command]) == 0
        assert word in capsys.readouterr().out


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_default_run_with_no_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # The embedded default: 4 agents, FiniteLinear d=20, K=100, T=2000, 10 seeds (about a second).
    assert main(["run", "-q", "-o", str(tmp_path)]) == 0
    res = load_results(tmp_path / "default.json")
    assert res.horizon == 2000 and len(res.seeds) == 10 and len(res.agents) == 4
    final = {label: res.final(label)[0] for label in res.agents}
    assert final["greedy"] > final["exact TS"]
    assert (tmp_path / "default.png").exists()


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_short_preset_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "compact-linear", "-T", "10", "-n", "2", "-q", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "compact-linear-d10.json", "compact-linear-d10.png", "compact-linear-d50.json", "compact-linear-d50.png"}


def test_python_dash_m(tmp_path: Path):
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "python")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "ensemblepp", "run", "-a", "bogus"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and "unknown agent 'bogus'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "ensemblepp", "--version"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip()


@pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")
def test_set_passes_sweep_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--preset", "linear-min-ensemble", "-S", "d_values=[3]", "-S", "k_values=[5]", "-S", "k_dim=3",
            "-S", "d_actions=5", "-S", "candidates=[1, 2]", "-T", "10", "-n", "2", "-q", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "linear-min-ensemble.json").exists()
    assert main(["run", "-S", "colour=1", "-o", str(tmp_path)]) == 2
    assert "colour" in capsys.readouterr().err


def test_custom_run_drops_the_default_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run", *TINY, "--name", "mine", "-o", str(tmp_path), "--no-plot"]) == 0
    assert "FiniteLinear (d=20" not in capsys.readouterr().out
    assert load_results(tmp_path / "mine.json").config["description"] == ""
