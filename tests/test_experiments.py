"""Experiment runner: configurations, regret accounting, results files, plots, presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ensemblepp.envs import FiniteLinear, register_environment
from ensemblepp.experiments import (AGENTS, DEFAULT_CONFIG, PRESETS, ExperimentConfig, PresetContext, RandomAgent,
                                    load_config, load_results, min_ensemble_size, preset_configs, register_agent,
                                    register_preset, run_experiment, run_preset)
from ensemblepp.experiments.agents import agent_label


def _has_linear() -> bool:
    try:
        import ensemblepp.linear  # noqa: F401
    except ImportError:
        return False
    return True


needs_linear = pytest.mark.skipif(not _has_linear(), reason="compiled linear core not built")


def tiny(agents, env=None, horizon=30, n_seeds=3, **extra):
    return {"name": "tiny", "horizon": horizon, "n_seeds": n_seeds, "seed": 4,
            "environment": env or {"name": "finite-linear", "dim": 3, "n_actions": 6},
            "agents": agents, **extra}


# -- configuration --------------------------------------------------------------------------------

def test_config_round_trip_and_seeds():
    cfg = ExperimentConfig.from_dict(tiny([{"name": "random"}, {"name": "random", "label": "r2"}]))
    assert cfg.seeds == [4, 5, 6] and cfg.horizon == 30
    assert [a.label for a in cfg.agents] == ["random", "r2"]
    again = ExperimentConfig.from_dict(cfg.to_dict())
    assert again == cfg
    raw = tiny([{"name": "random"}])
    del raw["n_seeds"]
    assert ExperimentConfig.from_dict({**raw, "seeds": [9, 2]}).seeds == [9, 2]
    with pytest.raises(ValueError, match="either"):
        ExperimentConfig.from_dict({**raw, "seeds": [9, 2], "n_seeds": 2})


@pytest.mark.parametrize("change, word", [
    ({"horizon": 0}, "horizon"),
    ({"horizon": 2.5}, "horizon"),
    ({"n_seeds": 0}, "n_seeds"),
    ({"bogus": 1}, "bogus"),
    ({"environment": {"name": "nope"}}, "environment"),
    ({"environment": {"name": "finite-linear", "dimm": 3}}, "dimm"),
    ({"agents": []}, "agents"),
    ({"agents": [{"name": "nope"}]}, "unknown agent"),
    ({"agents": [{"name": "random"}, {"name": "random"}]}, "repeated label"),
    ({"seeds": [1, 1]}, "repeated seed"),
])
def test_bad_configurations_name_the_problem(change, word):
    raw = tiny([{"name": "random"}])
    if "seeds" in change:
        del raw["n_seeds"]
    raw.update(change)
    with pytest.raises(ValueError, match=word):
        ExperimentConfig.from_dict(raw)


def test_unknown_agent_option_fails_before_running():
    raw = tiny([{"name": "random"}, {"name": "random", "label": "bad", "colour": 3}])
    with pytest.raises(ValueError, match="colour"):
        run_experiment(raw, progress=False)


def test_load_toml(tmp_path: Path):
    path = tmp_path / "exp.toml"
    path.write_text('name = "t"\nhorizon = 5\nn_seeds = 2\n[environment]\nname = "finite-linear"\ndim = 3\n'
                    'n_actions = 4\n[[agents]]\nname = "random"\nlabel = "R"\n')
    cfg = ExperimentConfig.from_dict(load_config(path))
    assert cfg.name == "t" and cfg.env_options == {"dim": 3, "n_actions": 4} and cfg.agents[0].label == "R"
    bad = tmp_path / "bad.toml"
    bad.write_text("horizon = = 3")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_agent_labels():
    assert agent_label("ensemble++", {"M": 8, "perturbation": "cube"}) == "ensemble++ (M=8, perturbation=cube)"
    assert agent_label("ts", {}) == "ts"


# -- running --------------------------------------------------------------------------------------

def test_regret_accounting_matches_a_manual_loop():
    res = run_experiment(tiny([{"name": "random"}]), progress=False)
    env = FiniteLinear(dim=3, n_actions=6, n_instances=3, seed=[4, 5, 6])
    agent = RandomAgent(3, n_agents=3, seed=res.config["agent_seed"])
    regret, reward = [], []
    for _ in range(30):
        r, g = env.step(agent.act(env.actions()))
        regret.append(g)
        reward.append(r)
    np.testing.assert_array_equal(res.regret["random"], np.array(regret).T)
    np.testing.assert_array_equal(res.reward["random"], np.array(reward).T)
    np.testing.assert_allclose(res.cumulative_regret("random")[:, -1], np.sum(regret, axis=0), rtol=1e-12)
    assert res.agents == ["random"] and res.seeds == [4, 5, 6] and res.horizon == 30
    assert res.seconds_per_step["random"] > 0 and res.wall_seconds["random"] > 0


def test_same_config_same_results():
    a = run_experiment(tiny([{"name": "random"}]), progress=False)
    b = run_experiment(tiny([{"name": "random"}]), progress=False)
    np.testing.assert_array_equal(a.regret["random"], b.regret["random"])


@needs_linear
def test_batched_run_equals_looped_run():
    """A deterministic agent gives the same regret batched over seeds as run seed by seed."""
    import ensemblepp

    if "greedy-per-seed" not in AGENTS:
        register_agent("greedy-per-seed", ensemblepp.LinearGreedy, batched=False)
    res = run_experiment(tiny([{"name": "greedy", "label": "batched"},
                               {"name": "greedy-per-seed", "label": "looped"}], horizon=40), progress=False)
    np.testing.assert_allclose(res.regret["batched"], res.regret["looped"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.reward["batched"], res.reward["looped"], rtol=1e-9, atol=1e-9)


@needs_linear
def test_ts_beats_random_on_finite_linear():
    res = run_experiment(tiny([{"name": "ts"}, {"name": "random"}],
                              env={"name": "finite-linear", "dim": 5, "n_actions": 20}, horizon=300, n_seeds=4),
                         progress=False)
    ts, rnd = res.final("ts")[0], res.final("random")[0]
    # Random play pays a constant gap per step; TS's regret grows like sqrt(T).
    assert ts < 0.5 * rnd


@needs_linear
def test_compact_environment_runs_through_sampling():
    res = run_experiment(tiny([{"name": "ts"}, {"name": "random"}], env={"name": "compact-linear", "dim": 3},
                              horizon=200), progress=False)
    assert np.all(res.regret["ts"] >= 0)
    assert res.final("ts")[0] < res.final("random")[0]


def test_unbatched_agents_run_seed_by_seed():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    res = run_experiment(tiny([{"name": "neural-greedy", "hidden": [8], "update_start": 4, "batch_size": 4}],
                              env={"name": "quadratic", "dim": 4, "n_actions": 5, "n_arms": 10},
                              horizon=12, n_seeds=2), progress=False)
    label = res.agents[0]
    assert res.regret[label].shape == (2, 12) and np.all(res.regret[label] >= 0)


class _HitEnv(FiniteLinear):
    """FiniteLinear that also reports whether the best action was hit (an extra metric)."""

    metrics = ("hit",)

    def _record(self, idx, chosen, reward, regret):
        self._hit = (regret == 0).astype(np.float64)

    def info(self):
        return {"hit": self._out(self._hit)}


def test_extra_metrics_are_recorded_saved_and_plotted(tmp_path: Path):
    if "hit-linear" not in __import__("ensemblepp.envs", fromlist=["ENVIRONMENTS"]).ENVIRONMENTS:
        register_environment("hit-linear", _HitEnv)
    res = run_experiment(tiny([{"name": "random"}], env={"name": "hit-linear", "dim": 3, "n_actions": 6}),
                         progress=False)
    hit = res.metrics["random"]["hit"]
    np.testing.assert_array_equal(hit, (res.regret["random"] == 0).astype(float))
    assert "hit" in res.metric_names() and "cumulative_hit" not in res.metric_names()
    np.testing.assert_allclose(res.curve("random", "hit")[:, -1], hit.mean(axis=1))
    np.testing.assert_allclose(res.curve("random", "cumulative_hit")[:, -1], hit.sum(axis=1))
    for suffix in ("json", "csv"):
        back = load_results(res.save(tmp_path / f"r.{suffix}"))
        np.testing.assert_array_equal(back.metrics["random"]["hit"], hit)
    res.plot(tmp_path / "hit.png", metric="hit")
    with pytest.raises(ValueError, match="metric"):
        res.curve("random", "nope")


# -- files and plots ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_results_file_round_trip(tmp_path: Path, suffix: str):
    res = run_experiment(tiny([{"name": "random"}, {"name": "random", "label": "other"}]), progress=False)
    path = res.save(tmp_path / f"out.{suffix}")
    back = load_results(path)
    assert back.agents == res.agents and back.seeds == res.seeds and back.config == res.config
    assert back.version == res.version and back.seconds_per_step == res.seconds_per_step
    for label in res.agents:
        np.testing.assert_allclose(back.cumulative_regret(label), res.cumulative_regret(label), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(back.regret[label], res.regret[label], rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(back.cumulative_reward(label), res.cumulative_reward(label), rtol=1e-9, atol=1e-9)


def test_json_layout(tmp_path: Path):
    res = run_experiment(tiny([{"name": "random"}]), progress=False)
    doc = json.loads(res.save(tmp_path / "x.json").read_text())
    assert doc["format"] == "ensemblepp-results/1"
    assert doc["config"]["environment"]["name"] == "finite-linear"
    assert np.asarray(doc["results"]["random"]["cumulative_regret"]).shape == (3, 30)
    assert set(doc) >= {"version", "agents", "seeds", "seconds_per_step", "wall_seconds"}


def test_png_can_be_read_back(tmp_path: Path):
    import matplotlib.image as mpimg

    res = run_experiment(tiny([{"name": "random"}]), progress=False)
    img = mpimg.imread(res.plot(tmp_path / "p.png"))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    # Not a blank canvas.
    assert img[..., :3].std() > 0.01


def test_load_rejects_foreign_files(tmp_path: Path):
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not an ensemblepp results file"):
        load_results(p)
    p.write_text("not json")
    with pytest.raises(ValueError, match="not a JSON or CSV"):
        load_results(p)
    with pytest.raises(ValueError, match="not found"):
        load_results(tmp_path / "missing.json")


def test_summary_table_lists_every_agent():
    res = run_experiment(tiny([{"name": "random"}, {"name": "random", "label": "second"}]), progress=False)
    text = res.summary()
    assert "random" in text and "second" in text and "final cumulative_regret" in text
    assert res.markdown().startswith("| agent |")


# -- presets --------------------------------------------------------------------------------------

def test_min_ensemble_size():
    assert min_ensemble_size(100.0, {1: 300.0, 2: 111.0, 4: 109.0, 8: 95.0}) == 4
    assert min_ensemble_size(100.0, {1: 110.0}) == 1
    assert min_ensemble_size(100.0, {1: 300.0, 2: 200.0}) is None
    # A lucky small M followed by a failing larger one: the stable answer skips it.
    noisy = {1: 300.0, 2: 105.0, 4: 120.0, 8: 101.0, 16: 99.0}
    assert min_ensemble_size(100.0, noisy) == 8
    assert min_ensemble_size(100.0, noisy, stable=False) == 2


def test_presets_are_registered_and_valid():
    for name in ("default", "linear-ensemble-size", "linear-min-ensemble", "compact-linear", "quadratic",
                 "neural-bandit", "neural-classification", "distribution-ablation"):
        assert name in PRESETS
    for name, preset in PRESETS.items():
        if preset.config is not None:
            for cfg in preset_configs(name):
                ExperimentConfig.from_dict(cfg)
    cfg = preset_configs("linear-ensemble-size", {"horizon": 7, "n_seeds": 2, "environment": {"n_actions": 5}})[0]
    assert cfg["horizon"] == 7 and cfg["n_seeds"] == 2 and cfg["environment"]["n_actions"] == 5
    assert cfg["environment"]["dim"] == 50
    ablation = preset_configs("distribution-ablation")[0]
    assert len(ablation["agents"]) == 26
    assert preset_configs("default")[0] == DEFAULT_CONFIG


def test_register_preset():
    register_preset("test-tiny", tiny([{"name": "random"}]), "a tiny test", replace=True)
    assert preset_configs("test-tiny")[0]["horizon"] == 30
    with pytest.raises(ValueError, match="already registered"):
        register_preset("test-tiny", tiny([{"name": "random"}]))
    with pytest.raises(ValueError, match="unknown preset"):
        preset_configs("nope")


@needs_linear
def test_short_linear_preset_end_to_end(tmp_path: Path):
    lines: list[str] = []
    ctx = PresetContext({"horizon": 15, "n_seeds": 2, "environment": {"dim": 4, "n_actions": 10}}, tmp_path,
                        progress=False, log=lines.append)
    files = run_preset("linear-ensemble-size", ctx)
    assert {f.name for f in files} == {"linear-ensemble-size.json", "linear-ensemble-size.png"}
    back = load_results(tmp_path / "linear-ensemble-size.json")
    assert len(back.agents) == 9 and back.horizon == 15
    assert any("exact TS" in line for line in lines)


@needs_linear
def test_min_ensemble_sweep_end_to_end(tmp_path: Path):
    ctx = PresetContext({"horizon": 20, "n_seeds": 2, "k_values": [5, 10], "d_values": [3], "k_dim": 3,
                         "d_actions": 5, "candidates": [1, 2]}, tmp_path, progress=False, log=lambda s: None)
    files = run_preset("linear-min-ensemble", ctx)
    doc = json.loads(files[0].read_text())
    assert [(r["dim"], r["n_actions"]) for r in doc["rows"]] == [(3, 5), (3, 10), (3, 5)]
    for r in doc["rows"]:
        regrets = {int(m): v for m, v in r["ensemble_regret"].items()}
        assert sorted(regrets) == [1, 2]
        assert r["min_ensemble_size"] == min_ensemble_size(r["ts_regret"], regrets)
        assert r["first_within"] == min_ensemble_size(r["ts_regret"], regrets, stable=False)
    assert all(f.exists() for f in files)
    with pytest.raises(ValueError, match="unsupported"):
        run_preset("linear-min-ensemble", PresetContext({"colour": 1}, tmp_path, progress=False))


@needs_linear
def test_distribution_ablation_draws_the_grid(tmp_path: Path):
    ctx = PresetContext({"horizon": 10, "n_seeds": 2, "environment": {"dim": 3, "n_actions": 5}}, tmp_path,
                        progress=False, log=lambda s: None)
    files = run_preset("distribution-ablation", ctx)
    assert [f.name for f in files] == ["distribution-ablation.json", "distribution-ablation.png",
                                       "distribution-ablation-grid.png"]
    assert len(load_results(files[0]).agents) == 26


def test_unbatched_environment_runs_batched_agents_seed_by_seed():
    from ensemblepp.envs import ENVIRONMENTS

    if "single-finite" not in ENVIRONMENTS:
        register_environment("single-finite", lambda seed=0, **kw: FiniteLinear(seed=seed, **kw), batched=False)
    looped = run_experiment(tiny([{"name": "random"}], env={"name": "single-finite", "dim": 3, "n_actions": 6}),
                            progress=False)
    assert looped.regret["random"].shape == (3, 30)
    # Seed by seed, each agent gets seed agent_seed + i; replay seed 1 by hand.
    env = FiniteLinear(dim=3, n_actions=6, seed=5)
    agent = RandomAgent(3, n_agents=None, seed=looped.config["agent_seed"] + 1)
    regret = [env.step(agent.act(env.actions()))[1] for _ in range(30)]
    np.testing.assert_array_equal(looped.regret["random"][1], regret)


# -- registries and plotting ----------------------------------------------------------------------

def test_the_three_registries_share_one_mechanism():
    from ensemblepp._registry import Registry, check_options
    from ensemblepp.envs import ENVIRONMENTS
    from ensemblepp.experiments import agents as agents_module, runner

    assert all(isinstance(r, Registry) for r in (ENVIRONMENTS, AGENTS, PRESETS))
    assert runner.check_options is check_options and agents_module.check_options is check_options
    for registry, kind, known in [(ENVIRONMENTS, "environment", "finite-linear"), (AGENTS, "agent", "ts"),
                                  (PRESETS, "preset", "default")]:
        with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; known: .*{known}") as err:
            registry["nope"]
        # Every valid name is listed, sorted.
        assert str(err.value).endswith(", ".join(sorted(registry)))
        assert "nope" not in registry and known in registry and len(registry) == len(list(registry))
        assert isinstance(err.value, KeyError) and registry.get("nope") is None
        assert registry.get(known) is registry[known] and registry.pop("nope", 7) == 7
        with pytest.raises(ValueError, match="unknown"):
            registry.pop("nope")
    register_agent("short-lived", RandomAgent, batched=True, replace=True)
    assert AGENTS.pop("short-lived").target is RandomAgent and "short-lived" not in AGENTS
    register_agent("short-lived", RandomAgent, batched=True)
    del AGENTS["short-lived"]
    assert "short-lived" not in AGENTS


def test_import_strings_are_resolved_on_use_and_failures_leave_the_registry_alone():
    from ensemblepp._registry import Unavailable, resolve
    from ensemblepp.experiments.agents import make_agent

    assert resolve("ensemblepp.experiments.agents:RandomAgent") is RandomAgent
    assert resolve("ensemblepp.experiments.agents:RandomAgent.act") is RandomAgent.act
    with pytest.raises(ValueError, match="module:attribute"):
        resolve("ensemblepp.experiments.agents.RandomAgent")
    register_agent("string-random", "ensemblepp.experiments.agents:RandomAgent", batched=True, replace=True)
    agent = make_agent("string-random", 3, n_agents=2, seed=1)
    assert isinstance(agent, RandomAgent) and agent.n_agents == 2
    register_agent("missing-module", "ensemblepp_no_such_module:Agent", batched=True, replace=True)
    before = dict(AGENTS)
    with pytest.raises(Unavailable, match="ensemblepp_no_such_module:Agent") as err:
        make_agent("missing-module", 3, n_agents=2, seed=1)
    assert isinstance(err.value, ImportError) and isinstance(err.value, RuntimeError)
    assert isinstance(err.value.__cause__, ImportError)
    register_agent("missing-attr", "ensemblepp.experiments.agents:Nope", batched=True, replace=True)
    with pytest.raises(Unavailable, match="no attribute 'Nope'"):
        AGENTS["missing-attr"].resolve()
    assert dict(AGENTS) == {**before, "missing-attr": AGENTS["missing-attr"]}
    with pytest.raises(ValueError, match="agent 'string-random': unknown option.*colour"):
        make_agent("string-random", 3, n_agents=2, seed=1, colour=3)
    from ensemblepp._registry import check_options

    with pytest.raises(ValueError, match="option.s. seed are set by the runner"):
        check_options(RandomAgent, {"seed": 3}, "agent 'random'", reserved=("dim", "n_agents", "seed"))


def test_presets_from_import_strings():
    register_preset("string-default", "ensemblepp.experiments.runner:DEFAULT_CONFIG", "the default, by name",
                    replace=True)
    assert preset_configs("string-default") == [DEFAULT_CONFIG]
    register_preset("string-driver", None, "a driver by name", replace=True,
                    driver="ensemblepp.experiments.presets:_min_ensemble_driver")
    assert PRESETS["string-driver"].config is None
    with pytest.raises(ValueError, match="sweep driver"):
        preset_configs("string-driver")
    with pytest.raises(TypeError, match="configuration or a driver"):
        register_preset("empty", None)
    assert "empty" not in PRESETS


def test_split_outliers():
    from ensemblepp.experiments.plotting import split_outliers

    # The default run: greedy's linear regret against three exploring agents.
    assert split_outliers({"e++": 187.0, "ts": 190.0, "es": 237.0, "greedy": 13420.0}) == ["greedy"]
    # Median of (100, 200, 1000) is 200: 1000 is exactly 5x and stays; 1001 is split off.
    assert split_outliers({"a": 100.0, "b": 200.0, "c": 1000.0}) == []
    assert split_outliers({"a": 100.0, "b": 200.0, "c": 1001.0}) == ["c"]
    assert split_outliers({"a": 100.0, "b": 200.0, "c": 1001.0}, ratio=10.0) == []
    assert split_outliers({"a": 1.0, "b": 5000.0}) == []              # two curves: nothing to zoom on
    assert split_outliers({"a": -3.0, "b": 0.0, "c": 50.0}) == []      # non-positive median (rewards)
    assert split_outliers({"a": 1.0, "b": 1.0, "c": 900.0, "d": 1000.0}) == []  # median 450.5


def _fake_results(finals: dict[str, float], horizon: int = 50):
    from ensemblepp.experiments import Results

    steps = np.arange(1, horizon + 1) / horizon
    regret = {k: np.diff(np.outer([0.9, 1.1], v * steps), axis=1, prepend=0.0) for k, v in finals.items()}
    return Results(config={"name": "fake", "environment": {"name": "finite-linear", "dim": 3}}, version="0",
                   agents=list(finals), seeds=[0, 1], regret=regret,
                   reward={k: np.zeros((2, horizon)) for k in finals})


def test_plot_panels_follow_the_outliers(tmp_path: Path):
    import matplotlib.image as mpimg

    one = mpimg.imread(_fake_results({"a": 100.0, "b": 120.0, "c": 150.0}).plot(tmp_path / "one.png"))
    two = mpimg.imread(_fake_results({"a": 100.0, "b": 120.0, "c": 13000.0}).plot(tmp_path / "two.png"))
    forced = mpimg.imread(_fake_results({"a": 100.0, "b": 120.0, "c": 13000.0}).plot(tmp_path / "f.png",
                                                                                     split=False))
    # Width in inches x 110 dpi: 7.0 for one panel, 12.0 for the two-panel figure.
    assert one.shape[:2] == (528, 770) and forced.shape[:2] == (528, 770)
    assert two.shape[:2] == (528, 1320)
    assert two[..., :3].std() > 0.01


def test_plotting_leaves_the_callers_backend_and_figures_alone(tmp_path: Path):
    import subprocess
    import sys

    code = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import numpy as np
from ensemblepp.experiments import Results
from ensemblepp.experiments.plotting import plot_grid, plot_lines
fig = plt.figure()
res = Results(config={{"name": "x"}}, version="0", agents=["a"], seeds=[0], regret={{"a": np.ones((1, 5))}},
              reward={{"a": np.zeros((1, 5))}})
res.plot(r"{tmp_path / 'r.png'}")
plot_lines(r"{tmp_path / 'l.png'}", [1, 2], {{"s": [1, 2]}}, "x", "y", "t")
plot_grid(r"{tmp_path / 'g.png'}", np.eye(2), np.zeros((2, 2)), ["a", "b"], ["c", "d"], "x", "y", "t")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [fig.number], plt.get_fignums()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("r.png", "l.png", "g.png"))


def test_plot_grid_rejects_mismatched_shapes(tmp_path: Path):
    from ensemblepp.experiments.plotting import plot_grid

    with pytest.raises(ValueError, match="shape"):
        plot_grid(tmp_path / "g.png", np.eye(2), np.zeros((2, 3)), ["a", "b"], ["c", "d"], "x", "y", "t")
    assert not (tmp_path / "g.png").exists()


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "ensemblepp\[plot\]"'):
        _fake_results({"a": 1.0}).plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
