"""The production loop (issue 12): action probabilities, ragged warm starts, forgetting.

References are closed forms (the normal CDF for two-action Thompson sampling, the weighted
precision recursion in float64), NumPy Monte Carlo estimates from the same posterior, and the
step-by-step update of the same agents.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ensemblepp as epp
from ensemblepp import _core
from ensemblepp.distributions import draw as philox_draw

POLICIES = {
    "ensemble": lambda **k: epp.LinearEnsemble(ensemble_size=6, **k),
    "thompson": lambda **k: epp.LinearTS(**k),
    "ensemble_sampling": lambda **k: epp.LinearEnsembleSampling(ensemble_size=5, **k),
    "ucb": lambda **k: epp.LinUCB(alpha=0.7, **k),
    "greedy": lambda **k: epp.LinearGreedy(**k),
}


def _trained(name, d=4, n=30, seed=3, **kw):
    agent = POLICIES[name](dim=d, seed=seed, prior_var=2.0, **kw)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    theta = rng.normal(size=d)
    r = X @ theta + rng.normal(size=n)
    if agent.n_agents is None:
        agent.update(X, r)
    else:
        B = agent.n_agents
        agent.update(np.broadcast_to(X, (B, n, d)), np.broadcast_to(r, (B, n)))
    return agent


def _state(agent):
    return {k: v.copy() for k, v in agent._state_arrays().items()}


def _same_state(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


# ---- action probabilities ---------------------------------------------------------------


def test_thompson_two_actions_equal_the_normal_cdf():
    agent = _trained("thompson", d=3, n=5)
    X = np.array([[1.0, 0.2, -0.3], [0.4, 0.9, 0.1]])
    mu, S = agent.mean, agent.covariance
    diff = X[0] - X[1]
    p0 = 0.5 * math.erfc(-(diff @ mu) / math.sqrt(2.0 * diff @ S @ diff))
    assert 0.1 < p0 < 0.9  # a case where both actions matter
    n = 40000
    p = agent.action_probabilities(X, n_samples=n)
    se = math.sqrt(p0 * (1 - p0) / n)
    assert abs(p[0] - p0) < 4 * se
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_ensemble_matches_numpy_monte_carlo_from_the_same_posterior():
    agent = _trained("ensemble", d=4, n=8)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4))
    n = 20000
    p = agent.action_probabilities(X, n_samples=n)
    # Independent NumPy draws theta = mu + A zeta, zeta ~ N(0, I_M) (the gaussian reference).
    zeta = rng.standard_normal((n, agent.ensemble_size))
    theta = agent.mean + zeta @ agent.factor.T
    q = np.bincount(np.argmax(theta @ X.T, axis=1), minlength=6) / n
    se = np.sqrt(np.maximum(q * (1 - q), 1e-4) * 2 / n)
    assert np.all(np.abs(p - q) < 4 * se), (p, q)


def test_ensemble_probabilities_count_the_documented_draws():
    """The estimate is the argmax count over the draws of stream (probability_key, id)."""
    agent = _trained("ensemble", d=3, n=6, n_agents=2, stream_ids=[7, 11])
    X = np.random.default_rng(1).normal(size=(5, 3))
    n = 300
    p = agent.action_probabilities(X, n_samples=n)
    mean, A = agent.mean, agent.factor
    for b, sid in enumerate([7, 11]):
        key = _core.probability_key(agent.seed, int(agent.steps[b]), sid)
        zeta = philox_draw("gaussian", n, agent.ensemble_size, scaling="reference", seed=key, agent=sid)
        counts = np.bincount(np.argmax((mean[b] + zeta @ A[b].T) @ X.T, axis=1), minlength=5)
        np.testing.assert_allclose(p[b] * n, counts, atol=1.0)  # a near-tie may round differently


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rows_sum_to_one_masked_zero_and_batch_equals_single(name, dtype):
    batch = _trained(name, n_agents=3, stream_ids=[4, 9, 2], dtype=dtype)
    X = np.random.default_rng(2).normal(size=(3, 7, 4))
    mask = np.ones((3, 7), dtype=bool)
    mask[:, 2] = False
    mask[1, 5] = False
    p = batch.action_probabilities(X, mask, n_samples=257)
    assert p.shape == (3, 7) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(p[~mask] == 0)
    for b, sid in enumerate([4, 9, 2]):
        single = _trained(name, stream_ids=sid, dtype=dtype)
        np.testing.assert_array_equal(single.action_probabilities(X[b], mask[b], n_samples=257), p[b])


def test_greedy_and_ucb_are_exact_one_hot_with_ties():
    for name in ("greedy", "ucb"):
        agent = _trained(name)
        X = np.random.default_rng(5).normal(size=(6, 4))
        scores = X @ agent.mean
        if name == "ucb":
            scores = scores + agent.alpha * np.sqrt(np.einsum("kd,de,ke->k", X, agent.covariance, X))
        best = int(np.argmax(scores))
        p = agent.action_probabilities(X)
        np.testing.assert_array_equal(p, np.eye(6)[best])
        Xt = np.vstack([X, X[best], X[best]])  # three identical best actions
        split = agent.action_probabilities(Xt)
        assert split[best] == split[6] == split[7] == pytest.approx(1 / 3)
        first = agent.action_probabilities(Xt, ties="first")
        np.testing.assert_array_equal(first, np.eye(8)[best])
        assert agent.act(Xt) == best


def test_ensemble_sampling_is_the_exact_fraction_of_models():
    agent = _trained("ensemble_sampling")
    X = np.random.default_rng(6).normal(size=(9, 4))
    best = np.argmax(X @ agent.models, axis=0)
    expected = np.bincount(best, minlength=9) / agent.ensemble_size
    np.testing.assert_allclose(agent.action_probabilities(X, n_samples=1), expected, atol=1e-14)


@pytest.mark.parametrize("name", ["ensemble", "thompson", "ensemble_sampling"])
def test_estimating_probabilities_never_changes_the_acting_trajectory(name):
    a, b = _trained(name), _trained(name)
    rng = np.random.default_rng(8)
    for _ in range(5):
        X = rng.normal(size=(5, 4))
        before = a.action_probabilities(X, n_samples=64, ties="first")
        assert np.array_equal(before, a.action_probabilities(X, n_samples=64, ties="first"))  # reproducible
        i, prob = a.act(X, return_probability=True, n_samples=64)
        assert i == b.act(X)
        assert prob == before[i]
        a.update(X[i], 0.5)
        b.update(X[i], 0.5)
    _same_state(a, b)


def test_batched_return_probability():
    agent = _trained("ensemble", n_agents=4)
    X = np.random.default_rng(9).normal(size=(6, 4))
    p = agent.action_probabilities(X, n_samples=128, ties="first")
    chosen, prob = agent.act(X, return_probability=True, n_samples=128)
    np.testing.assert_array_equal(prob, p[np.arange(4), chosen])


def test_probability_bad_input_raises_and_changes_nothing():
    agent = _trained("ensemble", n_agents=2)
    before = _state(agent)
    X = np.ones((3, 4))
    with pytest.raises(ValueError, match="n_samples"):
        agent.action_probabilities(X, n_samples=0)
    with pytest.raises(ValueError, match="ties"):
        agent.action_probabilities(X, ties="last")
    with pytest.raises(ValueError, match="mask"):
        agent.action_probabilities(X, np.zeros(3, dtype=bool))
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="actions"):
        agent.action_probabilities(bad)
    with pytest.raises(ValueError, match="actions"):
        agent.action_probabilities(np.ones((3, 5)))
    with pytest.raises(TypeError, match="n_samples"):
        agent.action_probabilities(X, n_samples=2.0)
    after = _state(agent)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


# ---- ragged warm start --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("forgetting", [1.0, 0.9])
def test_warm_start_equals_step_by_step_updates(name, dtype, forgetting):
    d, counts = 4, [3, 0, 7, 1]
    rng = np.random.default_rng(10)
    N = sum(counts)
    x, r = rng.normal(size=(N, d)), rng.normal(size=N)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    kw = dict(dim=d, seed=5, dtype=dtype, forgetting=forgetting)
    batch = POLICIES[name](n_agents=4, stream_ids=[10, 11, 12, 13], **kw)
    batch.warm_start(x, r, offsets)
    for b in range(4):
        one = POLICIES[name](stream_ids=10 + b, **kw)
        for i in range(offsets[b], offsets[b + 1]):
            one.update(x[i], float(r[i]))
        for key, v in one._state_arrays().items():
            np.testing.assert_array_equal(batch._state_arrays()[key][b], v[0], err_msg=key)


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_warm_start_of_many_rows_is_the_step_by_step_result(name, dtype):
    # max(16, d) rows or more per agent take the closed form in blocked products (production.cpp): the
    # same draws at the same counters, so the state equals step-by-step updates up to rounding.
    rng = np.random.default_rng(12)
    d, counts = 5, [40, 3, 700, 16]  # the closed form for 40, 700 and 16 rows, 3 rows step by step
    N = sum(counts)
    x, r = rng.normal(size=(N, d)), rng.normal(size=N)
    mask = rng.random(N) < 0.9
    offsets = np.concatenate([[0], np.cumsum(counts)])
    prior = np.diag(np.arange(1.0, d + 1)) + 0.3  # a dense prior
    kw = dict(dim=d, seed=8, dtype=dtype, prior_var=prior, noise_std=0.6)
    batch = POLICIES[name](n_agents=4, stream_ids=[20, 21, 22, 23], **kw)
    batch.update(rng.normal(size=(4, d)), rng.normal(size=4))  # not at the prior
    seq = POLICIES[name](n_agents=4, stream_ids=[20, 21, 22, 23], **kw)
    seq._set_state(batch._state_arrays())
    batch.warm_start(x, r, offsets, mask=mask)
    for b in range(4):
        for i in range(offsets[b], offsets[b + 1]):
            xs, rs, ms = np.zeros((4, d)), np.zeros(4), np.zeros(4, bool)
            xs[b], rs[b], ms[b] = x[i], r[i], mask[i]
            seq.update(xs, rs, mask=ms)
    got, want = batch._state_arrays(), seq._state_arrays()
    for key in want:
        tol = 1e-5 if (key == "factor" and dtype == "float32") else 1e-10
        scale = np.abs(want[key]).max() if want[key].dtype.kind == "f" else 1
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)
    np.testing.assert_array_equal(got["steps"], want["steps"])


def test_warm_start_mask_and_single_agent():
    rng = np.random.default_rng(11)
    x, r = rng.normal(size=(6, 3)), rng.normal(size=6)
    mask = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    a = epp.LinearEnsemble(3, 4, seed=2)
    a.warm_start(x, r, mask=mask)
    b = epp.LinearEnsemble(3, 4, seed=2)
    b.update(x[mask], r[mask])
    _same_state(a, b)


def test_warm_start_bad_input_raises_and_changes_nothing():
    agent = epp.LinearEnsemble(3, 4, n_agents=3, seed=1)
    before = _state(agent)
    x, r = np.ones((5, 3)), np.ones(5)
    cases = [
        (np.array([0, 3, 2, 5]), "offsets"),
        (np.array([1, 2, 3, 5]), "offsets"),
        (np.array([0, 2, 3, 6]), "offsets"),
        (np.array([0, 2, 5]), "offsets"),
    ]
    for off, what in cases:
        with pytest.raises(ValueError, match=what):
            agent.warm_start(x, r, off)
    with pytest.raises(TypeError, match="offsets"):
        agent.warm_start(x, r, np.array([0.0, 2, 3, 5]))
    bad = x.copy()
    bad[4, 1] = np.inf  # the last row of the last agent: nothing before it may be applied
    with pytest.raises(ValueError, match="x: features of agent 2"):
        agent.warm_start(bad, r, np.array([0, 2, 3, 5]))
    rb = r.copy()
    rb[4] = np.nan
    with pytest.raises(ValueError, match="r: reward of agent 2"):
        agent.warm_start(x, rb, np.array([0, 2, 3, 5]))
    with pytest.raises(ValueError, match="r"):
        agent.warm_start(x, r[:4], np.array([0, 2, 3, 5]))
    with pytest.raises(ValueError, match="offsets"):
        agent.warm_start(x, r)
    after = _state(agent)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


# ---- forgetting ---------------------------------------------------------------------------


def _forgetting_reference(gamma, prior_cov, prior_mean, noise_std, X, r):
    """The weighted closed form in float64: P_t = gamma P + w r_k r_k^T + x x^T / eta^2."""
    d = prior_cov.shape[0]
    R = np.linalg.inv(np.linalg.cholesky(prior_cov)).T  # P_0 = R R^T
    P = R @ R.T
    b = P @ prior_mean
    w = 1.0 - gamma**d
    for t, (x, y) in enumerate(zip(X, r)):
        rk = R[:, t % d]
        P = gamma * P + w * np.outer(rk, rk) + np.outer(x, x) / noise_std**2
        b = gamma * b + w * (rk @ prior_mean) * rk + x * y / noise_std**2
    return P, b


@pytest.mark.parametrize("name", list(POLICIES))
def test_forgetting_equals_the_weighted_closed_form(name):
    d, n, gamma = 4, 37, 0.8
    rng = np.random.default_rng(12)
    S0 = np.array([[2.0, 0.3, 0, 0], [0.3, 1.0, 0.2, 0], [0, 0.2, 1.5, 0], [0, 0, 0, 0.5]])
    mu0 = rng.normal(size=d)
    X, r = rng.normal(size=(n, d)), rng.normal(size=n)
    agent = POLICIES[name](dim=d, prior_var=S0, prior_mean=mu0, noise_std=0.7, forgetting=gamma, seed=1)
    agent.update(X, r)
    P, b = _forgetting_reference(gamma, S0, mu0, 0.7, X, r)
    np.testing.assert_allclose(agent.covariance, np.linalg.inv(P), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(agent.mean, np.linalg.solve(P, b), rtol=1e-9, atol=1e-12)
    U = agent.precision_factor
    np.testing.assert_allclose(U.T @ U, P, rtol=1e-10, atol=1e-12)


def test_forgetting_one_is_todays_update_bit_for_bit():
    rng = np.random.default_rng(13)
    X, r = rng.normal(size=(20, 3)), rng.normal(size=20)
    a = epp.LinearEnsemble(3, 4, seed=3, forgetting=1.0)
    b = epp.LinearEnsemble(3, 4, seed=3)
    a.update(X, r)
    b.update(X, r)
    _same_state(a, b)
    assert "updates" not in a._state_arrays()


def test_forgetting_keeps_the_second_moments():
    """E[A A^T] = Sigma (Ensemble++) and the models' mean mu and covariance Sigma (ensemble sampling)."""
    d, n, gamma, B = 3, 12, 0.7, 4000
    rng = np.random.default_rng(14)
    X, r = rng.normal(size=(n, d)), rng.normal(size=n)
    P, b = _forgetting_reference(gamma, 2.0 * np.eye(d), np.zeros(d), 1.0, X, r)
    Sigma, mu = np.linalg.inv(P), np.linalg.solve(P, b)
    ens = epp.LinearEnsemble(d, 4, prior_var=2.0, forgetting=gamma, n_agents=B, seed=4, perturbation="gaussian")
    ens.warm_start(np.tile(X, (B, 1)), np.tile(r, B), np.arange(B + 1) * n)
    A = ens.factor
    second = np.einsum("bim,bjm->ij", A, A) / B
    # Entry (i, j) averages B*M products with variance about Sigma_ii Sigma_jj + Sigma_ij^2 (Gaussian).
    se = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / (B * 4))
    assert np.all(np.abs(second - Sigma) < 5 * se), (second, Sigma)
    es = epp.LinearEnsembleSampling(d, 4, prior_var=2.0, forgetting=gamma, n_agents=B, seed=4)
    es.warm_start(np.tile(X, (B, 1)), np.tile(r, B), np.arange(B + 1) * n)
    models = es.models.transpose(0, 2, 1).reshape(-1, d)
    np.testing.assert_array_less(np.abs(models.mean(axis=0) - mu), 5 * np.sqrt(np.diag(Sigma) / len(models)))
    cov = np.cov(models.T)
    assert np.all(np.abs(cov - Sigma) < 5 * se), (cov, Sigma)
    # A mutant that scaled B by gamma instead of sqrt(gamma) would shrink A A^T far below Sigma.
    assert np.all(np.abs(np.diag(second) / np.diag(Sigma) - 1) < 0.1)


def test_forgetting_float32_stays_valid_and_bounded():
    d, n, gamma = 6, 20000, 0.99
    rng = np.random.default_rng(15)
    X = np.zeros((n, d))
    X[:, :3] = rng.normal(size=(n, 3))  # the last three directions are never excited
    r = X @ rng.normal(size=d) + rng.normal(size=n)
    a32 = epp.LinearTS(d, prior_var=1.0, forgetting=gamma, dtype="float32", seed=0)
    a64 = epp.LinearTS(d, prior_var=1.0, forgetting=gamma, seed=0)
    a32.update(X, r)
    a64.update(X, r)
    S32, S64 = a32.covariance.astype(np.float64), a64.covariance
    assert np.all(np.isfinite(S32)) and np.linalg.eigvalsh(S32).min() > 0
    np.testing.assert_allclose(S32, S64, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(a32.mean, a64.mean, rtol=2e-3, atol=1e-4)
    # Unexcited directions: Sigma_0 / gamma^(d-1) at most, never the wound-up gamma^-t.
    assert np.all(np.diag(S64)[3:] <= 1.0 / gamma ** (d - 1) + 1e-12)
    assert np.all(np.diag(S64)[3:] >= 1.0 - 1e-12)


def test_forgetting_validation_and_persistence(tmp_path):
    for bad in (0.0, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match="forgetting"):
            epp.LinearTS(3, forgetting=bad)
    with pytest.raises(TypeError, match="forgetting"):
        epp.LinearTS(3, forgetting=True)
    agent = epp.LinearEnsemble(3, 4, forgetting=0.95, n_agents=2, seed=6)
    rng = np.random.default_rng(16)
    agent.update(rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5)))
    agent.save(tmp_path / "a.npz")
    loaded = epp.load(tmp_path / "a.npz")
    assert loaded.forgetting == 0.95
    _same_state(agent, loaded)
    x, y = rng.normal(size=(2, 3)), rng.normal(size=2)
    agent.update(x, y)
    loaded.update(x, y)
    _same_state(agent, loaded)
    agent.add_agents([9])
    assert agent._state_arrays()["updates"][2] == 0


def test_drift_forgetting_preset_builds_forgetting_agents():
    from ensemblepp.experiments.agents import make_agent
    from ensemblepp.experiments.presets import preset_configs

    (cfg,) = preset_configs("drift-forgetting")
    assert cfg["environment"]["name"] == "drifting-linear"
    gammas = set()
    for spec in cfg["agents"]:
        opts = {k: v for k, v in spec.items() if k not in ("name", "label")}
        agent = make_agent(spec["name"], 10, 2, 0, **opts)
        assert agent.forgetting == spec["forgetting"]
        gammas.add(agent.forgetting)
    assert {1.0, 0.99, 0.95} <= gammas


def test_threads_give_the_one_thread_result():
    """Agents split across threads (probabilities and warm start) give the same bits as one thread."""
    rng = np.random.default_rng(17)
    B, d = 12, 16  # enough work (rows x d x (d + M)) for the drivers to split it
    counts = rng.integers(0, 800, size=B)
    counts[3] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)])
    x, r = rng.normal(size=(offsets[-1], d)), rng.normal(size=offsets[-1])
    X = rng.normal(size=(30, d))
    before = _core.max_threads()
    results = []
    try:
        for threads in (1, 2):
            _core.set_max_threads(threads)
            agent = epp.LinearEnsemble(d, 8, n_agents=B, seed=2, forgetting=0.97)
            agent.warm_start(x, r, offsets)
            results.append((agent._state_arrays(), agent.action_probabilities(X, n_samples=4096)))
    finally:
        _core.set_max_threads(before)
    (s1, p1), (s2, p2) = results
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("policy", ["ensemble", "thompson"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_equal_actions_split_their_votes_evenly(policy: str, dtype: str) -> None:
    # Two identical rows among others (d = 40, where blocked matrix products used to round equal
    # rows differently: 0.29 vs 0.20): every draw scores them bit for bit alike, so "split" gives
    # them exactly equal probabilities and "first" gives the later one nothing.
    rng = np.random.default_rng(5)
    d, K = 40, 3
    agent = (epp.LinearEnsemble(dim=d, ensemble_size=36, seed=2, dtype=dtype) if policy == "ensemble"
             else epp.LinearTS(dim=d, seed=2, dtype=dtype))
    agent.update(rng.normal(size=(50, d)), rng.normal(size=50))
    X = rng.normal(size=(K, d))
    X[2] = X[1]
    split = agent.action_probabilities(X, n_samples=2000, ties="split")
    assert split[1] == split[2] and split[1] > 0.1
    first = agent.action_probabilities(X, n_samples=2000, ties="first")
    assert first[2] == 0.0
    np.testing.assert_allclose(first[1], split[1] + split[2], atol=1e-12)
