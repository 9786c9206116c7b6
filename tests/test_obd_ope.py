"""The obd-ope preset: action probabilities of the agents, the reward model, replay, the report."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from conftest import SHARED_DATA

import ensemblepp as epp
from ensemblepp import ope
from ensemblepp.datasets import BanditLog, OBDFeatures, load_obd
from ensemblepp.experiments import PresetContext, get_preset, run_preset
from ensemblepp.experiments import obd_ope as O

needs_data = pytest.mark.skipif(not (SHARED_DATA / "obd").is_dir(), reason=f"{SHARED_DATA}/obd not found")


def _trained(cls: type, d: int = 3, n: int = 20, seed: int = 0, **kw: object) -> epp.LinearPolicy:
    rng = np.random.default_rng(seed)
    agent = cls(d, seed=seed, **kw)
    X = rng.normal(size=(n, d))
    agent.update(X, X @ np.array([0.5, -0.2, 0.1][:d]) + rng.normal(size=n))
    return agent


def test_greedy_probabilities_are_exact_and_break_ties_as_act_does() -> None:
    agent = _trained(epp.LinearGreedy)
    X = np.random.default_rng(0).normal(size=(6, 3))
    p = O.action_probabilities(agent, X)
    np.testing.assert_array_equal(p, np.eye(6)[agent.act(X)])
    # An untrained greedy agent scores every action 0 and act() keeps the first.
    fresh = epp.LinearGreedy(3)
    np.testing.assert_array_equal(O.action_probabilities(fresh, X), np.eye(6)[fresh.act(X)])
    assert fresh.act(X) == 0


def test_ts_two_actions_match_the_normal_cdf_and_leave_the_agent_alone() -> None:
    agent = _trained(epp.LinearTS, n=5)
    X = np.array([[1.0, 0.3, -0.2], [0.2, 0.9, 0.4]])
    diff = X[0] - X[1]
    exact = NormalDist().cdf(diff @ agent.mean / np.sqrt(diff @ agent.covariance @ diff))
    steps, mean = agent.steps, agent.mean
    n = 20000
    p = O.action_probabilities(agent, X, n_samples=n, seed=3)
    se = np.sqrt(exact * (1 - exact) / n)
    assert abs(p[0] - exact) < 4 * se, (p[0], exact, se)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)
    # The acting agent's random stream and state are untouched.
    assert agent.steps == steps
    np.testing.assert_array_equal(agent.mean, mean)


def test_ensemble_probabilities_match_a_numpy_monte_carlo_of_the_same_posterior() -> None:
    agent = _trained(epp.LinearEnsemble, ensemble_size=4, n=8)
    X = np.random.default_rng(1).normal(size=(5, 3))
    n = 20000
    p = O.action_probabilities(agent, X, n_samples=n, seed=9)
    # theta = mu + A zeta, zeta ~ N(0, I_M) (gaussian reference), drawn by NumPy.
    zeta = np.random.default_rng(2).standard_normal((n, 4))
    theta = agent.mean + zeta @ agent.factor.T
    ref = np.bincount(np.argmax(theta @ X.T, axis=1), minlength=5) / n
    se = np.sqrt(ref * (1 - ref) * 2 / n) + 1e-12
    assert np.all(np.abs(p - ref) < 4.5 * se + 1e-9), (p, ref)


def test_mc_probabilities_are_reproducible_and_follow_learning() -> None:
    agent = _trained(epp.LinearEnsemble, ensemble_size=4)
    X = np.random.default_rng(4).normal(size=(6, 3))
    a = O.ActionProbabilities(agent, 64, seed=1)
    first = a(X)
    assert a.method == "monte-carlo (64 draws)"
    # The same state gives the same estimate, and estimating never moves the agent's stream.
    steps = agent.steps
    np.testing.assert_array_equal(first, a(X))
    assert agent.steps == steps
    # After learning that action 0 pays 50 (and the others -50) the policy picks it.
    for _ in range(50):
        agent.update(X, np.where(np.arange(6) == 0, 50.0, -50.0))
    fresh = a(X)
    assert fresh[0] == 1.0 and first[0] < 1.0


def test_probability_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="single agent"):
        O.ActionProbabilities(epp.LinearTS(2, n_agents=2))
    with pytest.raises(ValueError, match="n_samples"):
        O.ActionProbabilities(epp.LinearTS(2), n_samples=0)


def _toy_log(n: int = 12, K: int = 3, seed: int = 0) -> BanditLog:
    rng = np.random.default_rng(seed)
    return BanditLog(
        behaviour="random", campaign="toy", n_actions=K, action=rng.integers(0, K, n),
        position=np.zeros(n, dtype=np.int64), reward=(rng.random(n) < 0.4).astype(float),
        propensity=np.full(n, 1.0 / K), timestamp=np.arange(n).astype("datetime64[s]"),
        user_features=np.full((n, 4), "u"), affinity=rng.integers(0, 3, (n, K)).astype(float),
        item_numeric=rng.normal(size=K), item_categorical=np.array([["a", "b", "c"]] * K))


def test_item_ctr_model_is_cross_fitted_by_hand() -> None:
    log = _toy_log()
    q = O.item_ctr_model(log, strength=2.0)
    for f in (0, 1):
        other = np.arange(len(log)) % 2 != f
        c = log.reward[other].mean()
        for k in range(log.n_actions):
            rows = other & (log.action == k)
            want = (log.reward[rows].sum() + 2.0 * c) / (rows.sum() + 2.0)
            np.testing.assert_allclose(q[np.arange(len(log)) % 2 == f, k], want, rtol=1e-14)


def test_dm_refit_bootstrap_value_and_interval() -> None:
    log = _toy_log(n=400, K=4, seed=2)
    policy = np.random.default_rng(0).dirichlet(np.ones(4), 400)
    est = O.dm_refit_bootstrap(log, policy, strength=5.0, n_bootstrap=300, seed=1)
    plain = ope.dm(policy, O.item_ctr_model(log, strength=5.0))
    assert est.value == pytest.approx(plain.value, rel=1e-12)
    assert est.low < est.value < est.high
    # Refitting carries the model's estimation error: wider than the rows' spread alone.
    assert est.high - est.low > 2 * (plain.high - plain.low)
    assert est == O.dm_refit_bootstrap(log, policy, strength=5.0, n_bootstrap=300, seed=1)


def test_replay_learns_only_on_matched_rounds() -> None:
    log = _toy_log(n=60, K=3, seed=5)
    feats = OBDFeatures(user=np.ones((60, 1)), item=np.eye(3), affinity=log.affinity, user_names=["u"],
                        item_names=["a", "b", "c"])
    agent = epp.LinearEnsemble(feats.dim(), ensemble_size=4, seed=7)
    twin = epp.LinearEnsemble(feats.dim(), ensemble_size=4, seed=7)
    run = O.replay_run(agent, log, feats, n_samples=16, seed=1)
    matched = 0
    for t in range(60):
        X = feats.actions(t)
        a = twin.act(X)
        assert a == run["chosen"][t]
        if a == log.action[t]:
            twin.update(X[a], float(log.reward[t]))
            matched += 1
    assert run["matched"] == matched == int((run["chosen"] == log.action).sum())
    np.testing.assert_array_equal(agent.mean, twin.mean)
    np.testing.assert_allclose(run["policy"].sum(axis=1), 1.0, rtol=1e-14)
    with pytest.raises(ValueError, match="agent: dim"):
        O.replay_run(epp.LinearGreedy(3), log, feats)
    with pytest.raises(ValueError, match="feats"):
        O.replay_run(epp.LinearGreedy(feats.dim()), _toy_log(n=10, K=3), feats)


@needs_data
def test_uniform_from_bts_matches_direct_estimator_calls() -> None:
    report = O.obd_ope_report(("men",), data_dir=SHARED_DATA, download=False, agents=(), log=lambda s: None)
    bts = load_obd("bts", "men", SHARED_DATA, download=False)
    rnd = load_obd("random", "men", SHARED_DATA, download=False)
    K = 34
    ips = ope.ips(bts.reward, bts.propensity, np.full(len(bts), 1 / K))
    (row,) = report["uniform_from_bts"]
    assert row["estimates"]["IPS"]["value"] == ips.value
    assert row["truth"]["value"] == rnd.reward.mean() == 0.0046
    assert row["estimates"]["IPS"]["relative_error"] == pytest.approx((ips.value - 0.0046) / 0.0046)
    on = {(r["behaviour"]): r for r in report["on_policy"]}
    assert on["random"]["clicks"] == 46 and on["bts"]["clicks"] == 69
    assert report["replay"] == []


@needs_data
def test_the_preset_runs_end_to_end_on_a_slice(tmp_path: Path) -> None:
    assert get_preset("obd-ope").driver is not None
    lines: list[str] = []
    ctx = PresetContext(overrides={"campaigns": ["women"], "horizon": 400, "n_samples": 16, "data_dir": str(SHARED_DATA)},
                        output_dir=tmp_path, progress=False, log=lines.append)
    files = run_preset("obd-ope", ctx)
    assert [f.name for f in files] == ["obd-ope.json", "obd-ope.md"]
    doc = json.loads(files[0].read_text())
    assert doc["format"] == "ensemblepp-obd-ope/1"
    assert {r["agent"] for r in doc["replay"]} == set(O.AGENT_SPECS)
    for r in doc["replay"]:
        assert set(r["estimates"]) == {"replay", "IPS", "SNIPS", "DM", "DR"}
        assert r["estimates"]["replay"]["n"] == r["matched"]
        assert 0.0 <= r["estimates"]["replay"]["low"] <= r["estimates"]["replay"]["high"] <= 1.0
    assert "(c) Agents trained by replay" in files[1].read_text()
    from ensemblepp.experiments.runner import ConfigError

    for bad, match in (({"dim": 3}, "unsupported override"), ({"campaigns": ["kids"]}, "campaigns"),
                       ({"n_samples": 0}, "n_samples"), ({"horizon": 1.5}, "horizon"), ({"seeds": []}, "seeds"),
                       ({"agents": "ucb"}, "agents")):
        with pytest.raises(ConfigError, match=match):
            run_preset("obd-ope", PresetContext(overrides=bad, output_dir=tmp_path, log=lines.append))
    with pytest.raises(ValueError, match="campaigns"):
        O.obd_ope_report(("kids",), download=False)
