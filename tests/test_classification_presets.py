"""The mushroom and shuttle presets: configurations and a short run through the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from ensemblepp.experiments import ExperimentConfig, preset_configs, run_experiment  # noqa: E402
from ensemblepp.experiments.real_presets import uci_config  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)
    import torch

    torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["mushroom", "shuttle"])
def test_presets_use_the_package_defaults(name: str) -> None:
    from ensemblepp.experiments.presets import TUNED, TUNED_GREEDY_LR

    (cfg,) = preset_configs(name)
    by_name = {a.name: a.options for a in ExperimentConfig.from_dict(cfg).agents}
    for agent, opts in TUNED.items():
        assert by_name[agent] == opts  # one SGD step per observation: no schedule options
    assert by_name["neural-greedy"] == {"lr": TUNED_GREEDY_LR}
    with pytest.raises(ValueError, match="settings"):
        uci_config(name, settings="tuned")


@pytest.mark.parametrize("name, prior, n_updates", [("mushroom", 1.0, 50), ("shuttle", 0.2, 50)])
def test_paper_settings_are_kept(name: str, prior: float, n_updates: int) -> None:
    config = ExperimentConfig.from_dict(uci_config(name, settings="paper"))
    assert config.environment == name
    by_name = {a.name: a.options for a in config.agents}
    assert set(by_name) == {"neural-ensemble++", "ensemble+", "epinet", "neural-greedy",
                            "ensemble++", "ts", "es", "greedy"}
    epp = by_name["neural-ensemble++"]
    assert (epp["ensemble_size"], epp["prior_scale"], epp["posterior_scale"], epp["n_updates"]) == \
        (8, prior, 0.1, n_updates)
    assert by_name["ensemble+"]["prior_scale"] == prior
    assert by_name["epinet"]["n_updates"] == n_updates
    with pytest.raises(ValueError, match="iris"):
        uci_config("iris")


@needs_data
@pytest.mark.parametrize("name, n_actions", [("mushroom", 2), ("shuttle", 7)])
def test_a_short_run_of_every_agent(name: str, n_actions: int) -> None:
    cfg = uci_config(name, horizon=40, n_seeds=2)
    cfg["environment"]["data_dir"] = str(DATA)
    cfg["environment"]["download"] = False
    for agent in cfg["agents"]:
        if "n_updates" in agent:
            # Training starts after 128 steps by default; start early so it is exercised.
            agent.update(n_updates=1, update_start=10)
    results = run_experiment(cfg, progress=False)
    assert len(results.agents) == 8
    for label in results.agents:
        regret = results.regret[label]
        reward = results.reward[label]
        assert regret.shape == (2, 40)
        # Noise-free 0/1 rewards: regret 1 exactly when the reward is 0.
        np.testing.assert_array_equal(regret, 1.0 - reward)
        assert set(np.unique(reward)) <= {0.0, 1.0}
