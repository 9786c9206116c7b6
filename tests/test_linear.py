"""Linear policies: closed forms, the NumPy reference, statistics, seeding, validation, I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import host

import ensemblepp as epp
from reference import NumpyLinearPolicy, PhiloxDraws

POLICIES = {
    "ensemble": lambda d, **kw: epp.LinearEnsemble(d, ensemble_size=6, **kw),
    "thompson": lambda d, **kw: epp.LinearTS(d, **kw),
    "ensemble_sampling": lambda d, **kw: epp.LinearEnsembleSampling(d, ensemble_size=6, **kw),
    "ucb": lambda d, **kw: epp.LinUCB(d, alpha=0.7, **kw),
    "greedy": lambda d, **kw: epp.LinearGreedy(d, **kw),
}


def problem(d: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1 / math.sqrt(5), 1 / math.sqrt(5), size=(K, d))
    theta = rng.normal(0, math.sqrt(10), size=d)
    return X, theta


def state(agent) -> dict[str, np.ndarray]:
    out = {"mean": host(agent.mean), "cov": host(agent.covariance), "steps": host(agent.steps)}
    if hasattr(agent, "factor"):
        out["factor"] = host(agent.factor)
    return out


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- exact references -------------------------------------------------------------------------
# d = 37, M = 21 cross the kernels' blocks: two of 16 columns (rows) and the 4 + 1 pieces after.
@pytest.mark.parametrize(("d", "M"), [(8, 5), (37, 21)])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 2e-3)])
def test_incremental_update_equals_batch_closed_form(device: str, dtype: str, rtol: float, d: int, M: int) -> None:
    T, eta, s0, seed = 1000, 0.7, 3.0, 42
    rng = np.random.default_rng(1)
    Sigma0 = s0 * np.eye(d) + 0.5 * np.ones((d, d))
    mu0 = rng.normal(size=d)
    agent = epp.LinearEnsemble(d, M, prior_var=Sigma0, prior_mean=mu0, noise_std=eta, seed=seed,
                               perturbation="sphere", device=device, dtype=dtype)
    A0 = host(agent.factor).astype(np.float64)
    X = rng.normal(size=(T, d)) / math.sqrt(d)
    r = X @ rng.normal(size=d) + eta * rng.normal(size=T)
    for t in range(T):
        agent.update(X[t], float(r[t]))
    # The perturbations the core drew: counter values d, d + 1, ... of agent 0.
    Z = epp.draw("sphere", T, M, seed=seed, step=d)
    P0 = np.linalg.inv(Sigma0)
    Sigma = np.linalg.inv(P0 + X.T @ X / eta**2)
    mu = Sigma @ (P0 @ mu0 + X.T @ r / eta**2)
    A = Sigma @ (P0 @ A0 + X.T @ Z / eta)
    np.testing.assert_allclose(host(agent.covariance), Sigma, rtol=rtol, atol=rtol * np.abs(Sigma).max())
    np.testing.assert_allclose(host(agent.mean), mu, rtol=rtol, atol=rtol * np.abs(mu).max())
    np.testing.assert_allclose(host(agent.factor), A, rtol=rtol, atol=rtol * np.abs(A).max())
    cov = host(agent.covariance)
    assert np.array_equal(cov, cov.T)  # the update keeps Sigma exactly symmetric
    # The sweep's vector lanes visit entries right of the diagonal: they must stay exactly zero.
    assert not np.triu(host(agent.covariance_factor), 1).any()


def test_initial_factor_is_prior_root_times_perturbations() -> None:
    d, M = 4, 7
    Sigma0 = np.diag([1.0, 2.0, 3.0, 4.0]) + 0.3
    agent = epp.LinearEnsemble(d, M, prior_var=Sigma0, perturbation="cube", seed=9)
    Z0 = epp.draw("cube", d, M, seed=9)
    # The state's root: upper-triangular C with C C^T = Sigma_0 (the transpose of L_0, Sigma_0 =
    # L_0^T L_0), i.e. the lower Cholesky factor of the index-reversed matrix, reversed back.
    C = np.linalg.cholesky(Sigma0[::-1, ::-1])[::-1, ::-1]
    assert np.allclose(C, np.triu(C)) and np.allclose(C @ C.T, Sigma0, rtol=1e-14)
    np.testing.assert_allclose(agent.covariance_factor, C.T, rtol=1e-14)
    np.testing.assert_allclose(agent.factor, C @ Z0, rtol=1e-14)
    assert agent.steps == d


@pytest.mark.parametrize("d", [6, 37])
@pytest.mark.parametrize("policy", POLICIES)
def test_core_matches_numpy_reference_step_by_step(device: str, policy: str, d: int) -> None:
    K, T, seed = 30, 300, 3
    X, theta_star = problem(d, K)
    rng = np.random.default_rng(5)
    agent = POLICIES[policy](d, seed=seed, noise_std=0.8, prior_var=4.0, device=device)
    kw = {"ensemble_size": 6} if policy in ("ensemble", "ensemble_sampling") else {}
    ref = NumpyLinearPolicy(policy, d, PhiloxDraws(seed), noise_std=0.8, prior_var=4.0, alpha=0.7, **kw)
    for t in range(T):
        mask = rng.random(K) < 0.8 if t % 3 == 0 else None
        a = agent.act(X, mask=mask)
        assert int(a) == ref.act(X, mask), f"step {t}"
        r = float(X[a] @ theta_star + rng.normal())
        agent.update(X[a], r)
        ref.update(X[a], r)
    np.testing.assert_allclose(host(agent.mean), ref.mu, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(host(agent.covariance), ref.Sigma, rtol=1e-8, atol=1e-12)
    if ref.A is not None:
        np.testing.assert_allclose(host(agent.factor), ref.A, rtol=1e-9, atol=1e-11)


def test_linucb_scores_and_per_agent_actions(device: str) -> None:
    d, K, B = 5, 40, 4
    rng = np.random.default_rng(0)
    agent = epp.LinUCB(d, alpha=2.0, n_agents=B, seed=0, device=device)
    for _ in range(20):
        agent.update(rng.normal(size=(B, d)), rng.normal(size=B))
    X = rng.normal(size=(B, K, d))
    mu, Sigma = host(agent.mean), host(agent.covariance)
    expected = [np.argmax(X[b] @ mu[b] + 2.0 * np.sqrt(np.einsum("kd,de,ke->k", X[b], Sigma[b], X[b]))) for b in range(B)]
    np.testing.assert_array_equal(host(agent.act(X)), expected)


# ---- statistics -------------------------------------------------------------------------------
def test_thompson_draws_have_posterior_mean_and_covariance() -> None:
    d, B = 4, 40_000
    rng = np.random.default_rng(2)
    agent = epp.LinearTS(d, n_agents=B, prior_var=2.0, seed=1)
    # Every agent sees the same data, so all share one posterior and their draws are i.i.d.
    for _ in range(15):
        x, r = rng.normal(size=d), rng.normal()
        agent.update(np.tile(x, (B, 1)), np.full(B, r))
    mu, Sigma = agent.mean[0], agent.covariance[0]
    theta = agent.sample()
    se = np.sqrt(np.diag(Sigma) / B)
    np.testing.assert_array_less(np.abs(theta.mean(axis=0) - mu), 5 * se)
    emp = np.cov(theta.T)
    se_cov = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / B)
    np.testing.assert_array_less(np.abs(emp - Sigma), 5 * se_cov)


def test_factor_tracks_covariance_for_large_ensembles() -> None:
    d, M, T = 5, 4000, 200
    rng = np.random.default_rng(3)
    agent = epp.LinearEnsemble(d, M, prior_var=5.0, seed=2)
    for _ in range(T):
        agent.update(rng.normal(size=d), rng.normal())
    A, Sigma = agent.factor, agent.covariance
    rel = np.linalg.norm(A @ A.T - Sigma) / np.linalg.norm(Sigma)
    assert rel < 0.1, rel
    # The reference draws theta = mu + A zeta then have covariance ~ Sigma.
    small = epp.LinearEnsemble(d, 8, prior_var=5.0, seed=3, n_agents=3000)
    x = rng.normal(size=(T, d))
    r = rng.normal(size=T)
    for t in range(T):
        small.update(np.tile(x[t], (3000, 1)), np.full(3000, r[t]))
    AAt = np.einsum("bim,bjm->ij", small.factor, small.factor) / 3000
    Sigma = small.covariance[0]
    assert np.linalg.norm(AAt - Sigma) / np.linalg.norm(Sigma) < 0.05


def test_ensemble_plus_plus_and_ts_beat_greedy_and_uniform() -> None:
    d, K, T, B = 10, 50, 2000, 16
    rng = np.random.default_rng(0)
    X = rng.uniform(-1 / math.sqrt(5), 1 / math.sqrt(5), size=(B, K, d))
    theta = rng.normal(0, math.sqrt(10), size=(B, d))
    means = np.einsum("bkd,bd->bk", X, theta)
    best = means.max(axis=1)
    regret = {}
    for name, agent in {
        "ensemble++": epp.LinearEnsemble(d, 8, n_agents=B, seed=1),
        "ts": epp.LinearTS(d, n_agents=B, seed=1),
        "greedy": epp.LinearGreedy(d, n_agents=B, seed=1),
    }.items():
        noise = np.random.default_rng(9).normal(size=(T, B))
        total = np.zeros(B)
        for t in range(T):
            a = agent.act(X)
            m = means[np.arange(B), a]
            total += best - m
            agent.update(X[np.arange(B), a], m + noise[t])
        regret[name] = total.mean()
    regret["uniform"] = T * (best - means.mean(axis=1)).mean()
    assert regret["ensemble++"] < 0.5 * regret["greedy"], regret
    assert regret["ts"] < 0.5 * regret["greedy"], regret
    assert regret["ensemble++"] < 0.1 * regret["uniform"], regret
    assert regret["ensemble++"] < 1.5 * regret["ts"], regret


# ---- seeding and batching ---------------------------------------------------------------------
def run(agent, X, steps=50, seed=0):
    rng = np.random.default_rng(seed)
    actions = []
    for _ in range(steps):
        a = agent.act(X)
        actions.append(host(a))
        x = X[a] if np.ndim(a) == 0 else X[host(a)]
        r = rng.normal(size=np.shape(a)) if np.ndim(a) else float(rng.normal())
        agent.update(x, r)
    return np.array(actions)


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_trajectory(device: str, policy: str) -> None:
    X, _ = problem(5, 20)
    a1 = run(POLICIES[policy](5, seed=11, device=device), X)
    a2 = run(POLICIES[policy](5, seed=11, device=device), X)
    np.testing.assert_array_equal(a1, a2)
    if policy in ("ensemble", "thompson", "ensemble_sampling"):
        a3 = run(POLICIES[policy](5, seed=12, device=device), X)
        assert not np.array_equal(a1, a3)


def test_batched_agents_are_independent_and_agent_zero_matches_single(device: str) -> None:
    X, _ = problem(5, 20)
    batch = epp.LinearEnsemble(5, 4, n_agents=3, seed=8, device=device)
    single = epp.LinearEnsemble(5, 4, seed=8, device=device)
    np.testing.assert_array_equal(host(batch.factor)[0], host(single.factor))
    assert not np.allclose(host(batch.factor)[0], host(batch.factor)[1])
    x = np.tile(X[0], (3, 1))
    batch.update(x, np.ones(3))
    single.update(X[0], 1.0)
    np.testing.assert_allclose(host(batch.factor)[0], host(single.factor), rtol=1e-14)
    f = host(batch.factor)
    assert not np.allclose(f[1], f[2])


# ---- stream ids: an agent is (seed, stream id), wherever it sits ------------------------------
def _drive(agent, X: np.ndarray, T: int, seed: int) -> list:
    """Acts and updates for T steps with rewards from a fixed generator; the chosen indices."""
    rng = np.random.default_rng(seed)
    batched = agent.n_agents is not None
    out = []
    for _ in range(T):
        a = agent.act(X)
        out.append(host(a).copy() if batched else a)
        x = X[host(a)] if batched else X[a]
        r = rng.normal(size=agent.n_agents) if batched else float(rng.normal())
        agent.update(x, r)
    return out


@pytest.mark.parametrize("policy", ["ensemble", "thompson", "ensemble_sampling"])
def test_agent_is_its_seed_and_stream_id_at_any_position(device: str, policy: str) -> None:
    X, _ = problem(5, 12)
    big = 2**64 - 3  # ids use all 64 bits
    T = 15
    alone = POLICIES[policy](5, seed=4, stream_ids=big, device=device)
    solo = _drive(alone, X, T, seed=0)
    one = POLICIES[policy](5, seed=4, n_agents=1, stream_ids=[big], device=device)
    np.testing.assert_array_equal([int(a[0]) for a in _drive(one, X, T, seed=0)], solo)
    # Position 2 of a batch built with it, and of a batch it was added to later: the same choices
    # when fed the same data, whatever its neighbours see.
    r = np.random.default_rng(1).normal(size=T)
    for late in (False, True):
        ids = [7, 2**40, big]
        batch = POLICIES[policy](5, seed=4, n_agents=2 if late else 3, stream_ids=ids[:2] if late else ids,
                                 device=device)
        if late:
            batch.update(X[:2], np.ones(2))  # the neighbours have a history the new agent lacks
            batch.add_agents([big])
        np.testing.assert_array_equal(host(batch.stream_ids), np.array(ids, np.uint64))
        mine, theirs = [], POLICIES[policy](5, seed=4, stream_ids=big, device=device)
        for t in range(T):
            a = host(batch.act(X))
            mine.append(int(a[2]))
            batch.update(X[a], np.array([-1.0, 2.0, r[t]]))
            b = theirs.act(X)
            theirs.update(X[b], float(r[t]))
            assert b == mine[-1]
    # Another id is another stream.
    other = POLICIES[policy](5, seed=4, stream_ids=big - 1, device=device)
    assert _drive(other, X, T, seed=0) != solo


def test_add_agents_grows_geometrically_and_matches_construction(device: str) -> None:
    full = epp.LinearEnsemble(4, 3, seed=2, n_agents=40, stream_ids=np.arange(100, 140), device=device)
    grown = epp.LinearEnsemble(4, 3, seed=2, n_agents=1, stream_ids=[100], device=device)
    capacities = set()
    for i in range(1, 40, 3):
        grown.add_agents(list(range(100 + i, 100 + min(i + 3, 40))))
        capacities.add(grown._capacity)
    assert grown.n_agents == 40
    assert len(capacities) <= 6  # doubling: 3, 6, 12, 24, 48 (not one allocation per call)
    for k in ("mean", "covariance", "factor", "steps", "stream_ids"):
        np.testing.assert_array_equal(host(getattr(grown, k)), host(getattr(full, k)), err_msg=k)
    X, _ = problem(4, 9)
    np.testing.assert_array_equal(host(grown.act(X)), host(full.act(X)))


@pytest.mark.parametrize("bad", [[1, 1], [1, -1], [1, 2**64], [1.0, 2.0], ["a", "b"], [1, 2, 3], 5, [True, False],
                                 np.array([1, 1], np.uint64), np.array([0.5, 1.5])])
def test_bad_stream_ids_raise_value_error(bad) -> None:
    with pytest.raises(ValueError, match="stream_ids"):
        epp.LinearTS(3, n_agents=2, stream_ids=bad)


def test_bad_single_stream_id_and_add_agents_change_nothing() -> None:
    for bad in (-1, 2**64, 1.5, "3", [3], True):
        with pytest.raises(ValueError, match="stream_ids"):
            epp.LinUCB(3, stream_ids=bad)
    with pytest.raises(ValueError, match="stream_ids"):
        epp.LinearGreedy(3).add_agents([1])
    agent = epp.LinearEnsembleSampling(3, 4, n_agents=2, stream_ids=[5, 6], seed=1)
    before = state(agent)
    for bad in ([6], [7, 7], [8, -1], 9, [[1, 2]], [2**64]):
        with pytest.raises(ValueError, match="stream_ids"):
            agent.add_agents(bad)
        assert agent.n_agents == 2
        assert_same_state(state(agent), before)
    np.testing.assert_array_equal(agent.stream_ids, [5, 6])
    agent.add_agents([])
    assert agent.n_agents == 2


def test_exhausted_stream_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="step"):
        epp.draw("gaussian", 2, 3, step=2**48 - 1)
    np.testing.assert_array_equal(epp.draw("gaussian", 1, 3, step=2**48 - 1).shape, (1, 3))
    with pytest.raises(ValueError, match="dim"):
        epp.LinearTS(2**17 + 1)
    agent = epp.LinearEnsemble(3, 2, n_agents=2, seed=0)
    arrays = agent._state_arrays()
    arrays["steps"] = np.array([5, 2**48 - 1], np.uint64)
    late = epp.LinearEnsemble._from_state(arrays, dim=3, ensemble_size=2, n_agents=2, seed=0)
    late.save(tmp_path / "late.epp")  # a counter near the end of the stream is a valid file
    late = epp.load(tmp_path / "late.epp")
    before = state(late)
    with pytest.raises(ValueError, match="steps: agent 1"):  # two draws, one left
        late.update(np.eye(3)[:2][:, None, :].repeat(2, axis=1), np.zeros((2, 2)))
    assert_same_state(state(late), before)
    late.act(np.eye(3))  # the last draw
    assert host(late.steps)[1] == 2**48
    before = state(late)
    for call in (lambda: late.act(np.eye(3)), lambda: late.sample(), lambda: late.update(np.eye(3)[:2], np.zeros(2))):
        with pytest.raises(ValueError, match="steps: agent 1"):
            call()
        assert_same_state(state(late), before)


def test_save_load_keeps_stream_ids(tmp_path) -> None:
    agent = epp.LinearEnsemble(3, 2, n_agents=2, stream_ids=[2**63 + 5, 11], seed=3)
    agent.save(tmp_path / "b.npz")
    back = epp.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(back.stream_ids, [2**63 + 5, 11])
    single = epp.LinearTS(3, stream_ids=2**50, seed=1)
    single.save(tmp_path / "c.npz")
    assert epp.load(tmp_path / "c.npz").stream_ids == 2**50


def test_several_observations_in_one_call_apply_in_order(device: str) -> None:
    X, _ = problem(4, 10)
    rng = np.random.default_rng(0)
    r = rng.normal(size=6)
    a = epp.LinearEnsemble(4, 3, seed=1, device=device)
    b = epp.LinearEnsemble(4, 3, seed=1, device=device)
    a.update(X[:6], r)
    for i in range(6):
        b.update(X[i], float(r[i]))
    for k in ("mean", "covariance", "factor"):
        np.testing.assert_allclose(host(getattr(a, k)), host(getattr(b, k)), rtol=1e-13, atol=1e-15)
    # Batched: (B, n, d) with a mask that skips some observations.
    c = epp.LinearTS(4, n_agents=2, seed=1, device=device)
    xs = np.stack([X[:3], X[3:6]])
    mask = np.array([[True, False, True], [False, False, False]])
    c.update(xs, np.ones((2, 3)), mask=mask)
    d = epp.LinearTS(4, seed=1, device=device)
    d.update(X[[0, 2]], np.ones(2))
    np.testing.assert_allclose(host(c.mean)[0], host(d.mean), rtol=1e-12)
    np.testing.assert_array_equal(host(c.mean)[1], np.zeros(4))


def test_act_sphere_normalises_the_draw(device: str) -> None:
    agent = epp.LinearEnsemble(6, 4, n_agents=3, seed=2, device=device)
    twin = epp.LinearEnsemble(6, 4, n_agents=3, seed=2, device=device)
    x = host(agent.act_sphere())
    theta = host(twin.sample())
    np.testing.assert_allclose(x, theta / np.linalg.norm(theta, axis=1, keepdims=True), rtol=1e-12)
    with pytest.raises(ValueError, match="actions"):
        epp.LinUCB(3, device=device).act_sphere()


def test_float32_agents_and_array_types() -> None:
    torch = pytest.importorskip("torch")
    X, _ = problem(5, 20)
    agent = epp.LinearEnsemble(5, 4, dtype="float32", seed=0)
    assert agent.mean.dtype == np.float32
    a = agent.act(torch.as_tensor(X))
    agent.update(torch.tensor(X[a], requires_grad=True), torch.tensor(1.0))
    agent.update(X[a].tolist(), 1)
    assert isinstance(a, int)


# ---- bad input leaves state unchanged ---------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_bad_input_raises_and_leaves_state_unchanged(device: str, policy: str) -> None:
    d = 4
    single = POLICIES[policy](d, seed=0, device=device)
    batch = POLICIES[policy](d, n_agents=3, seed=0, device=device)
    X, _ = problem(d, 10)
    for agent in (single, batch):
        agent.update(X[: (1 if agent is single else 3)].reshape(-1, d) if agent is batch else X[0], np.ones(3) if agent is batch else 1.0)
    cases_single = [
        (ValueError, "r: reward", lambda: single.update(X[0], float("nan"))),
        (ValueError, "r: reward", lambda: single.update(X[0], float("inf"))),
        (ValueError, "x: features", lambda: single.update(np.full(d, np.nan), 1.0)),
        (ValueError, "x: expected", lambda: single.update(X[0, :3], 1.0)),
        (ValueError, "r: expected", lambda: single.update(X[:2], np.ones(3))),
        (TypeError, "x: expected a real", lambda: single.update(np.array(["a"] * d), 1.0)),
        (ValueError, "actions: expected shape", lambda: single.act(X[:, :3])),
        (ValueError, "actions: expected shape", lambda: single.act(np.zeros((2, 10, d)))),
        (ValueError, "actions: contains NaN", lambda: single.act(np.vstack([X, np.full((1, d), np.nan)]))),
        (TypeError, "actions: expected a real", lambda: single.act(X.astype(complex))),
        (ValueError, "mask: every action", lambda: single.act(X, mask=np.zeros(10, bool))),
        (ValueError, "mask: expected shape", lambda: single.act(X, mask=np.ones(9, bool))),
        (ValueError, "actions: the action set is empty", lambda: single.act(np.zeros((0, d)))),
    ]
    cases_batch = [
        (ValueError, "r: reward of agent 2", lambda: batch.update(X[:3], np.array([1.0, 2.0, np.nan]))),
        (ValueError, "x: expected shape", lambda: batch.update(X[:2], np.ones(2))),
        (ValueError, "r: expected shape", lambda: batch.update(X[:3], np.ones(4))),
        (ValueError, "mask: expected shape", lambda: batch.update(X[:3], np.ones(3), mask=np.ones(2, bool))),
        (ValueError, "mask: every action of agent 1", lambda: batch.act(X, mask=np.array([[True] * 10, [False] * 10, [True] * 10]))),
        (ValueError, "actions: expected shape", lambda: batch.act(np.zeros((2, 10, d)))),
    ]
    for agent, cases in ((single, cases_single), (batch, cases_batch)):
        before = state(agent)
        for exc, msg, call in cases:
            with pytest.raises(exc, match=msg):
                call()
            assert_same_state(before, state(agent))


def test_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="ensemble_size"):
        epp.LinearEnsemble(3, 0)
    with pytest.raises(ValueError, match="reference: unknown distribution 'normal'"):
        epp.LinearEnsemble(3, 4, reference="normal")
    with pytest.raises(ValueError, match="perturbation: unknown"):
        epp.LinearEnsemble(3, 4, perturbation="ball")
    with pytest.raises(ValueError, match="prior_var: matrix is not positive definite"):
        epp.LinearEnsemble(2, 4, prior_var=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="prior_var: matrix is not symmetric"):
        epp.LinearTS(2, prior_var=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="prior_var: must be finite and > 0"):
        epp.LinearGreedy(2, prior_var=-1.0)
    with pytest.raises(ValueError, match="noise_std"):
        epp.LinearGreedy(2, noise_std=0.0)
    with pytest.raises(ValueError, match="dtype"):
        epp.LinearGreedy(2, dtype="float16")
    with pytest.raises(ValueError, match="device"):
        epp.LinearGreedy(2, device="tpu")
    with pytest.raises(ValueError, match="perturbation_sparsity"):
        epp.LinearEnsemble(3, 4, perturbation="sparse", perturbation_sparsity=5)
    with pytest.raises(ValueError, match="alpha"):
        epp.LinUCB(3, alpha=float("nan"))
    with pytest.raises(ValueError, match="n_agents"):
        epp.LinearTS(3, n_agents=0)


def test_cuda_without_device_is_a_clear_error() -> None:
    if epp.has_cuda():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="device='cuda' is unavailable"):
        epp.LinearEnsemble(3, 4, device="cuda")
    assert epp.available_backends() == ["cpu"]


# ---- persistence ------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_save_load_round_trip_continues_trajectory(tmp_path, device: str, policy: str) -> None:
    X, _ = problem(5, 20)
    agent = POLICIES[policy](5, n_agents=2, seed=4, device=device, dtype="float32" if policy == "greedy" else "float64")
    run(agent, X, steps=20)
    agent.save(tmp_path / "agent.npz")
    loaded = epp.load(tmp_path / "agent.npz", device=device)
    assert type(loaded) is type(agent) and repr(loaded) == repr(agent)
    assert_same_state(state(agent), state(loaded))
    np.testing.assert_array_equal(run(agent, X, seed=3), run(loaded, X, seed=3))
    assert_same_state(state(agent), state(loaded))


def test_load_rejects_other_files(tmp_path) -> None:
    np.savez(tmp_path / "x.npz", __meta__=np.array('{"format": "other"}'))
    with pytest.raises(epp.ModelFileError, match="meta.json: missing"):  # more cases in test_files.py
        epp.load(tmp_path / "x.npz")


def test_a_batch_beyond_the_caches_starts_from_the_same_prior_as_single_agents() -> None:
    # 2500 agents at d=64 hold 82 MB of square-root covariances: above 64 MB the prior copy uses
    # streaming stores (batch.cpp); every agent must still start exactly where it starts alone.
    d, B = 64, 2500
    var = np.diag(np.linspace(0.5, 2.0, d))  # a diagonal prior with distinct variances
    batch = epp.LinearEnsemble(d, 2, n_agents=B, seed=9, prior_var=var)
    L = batch.covariance_factor
    for b in (0, 1, 1250, B - 1):
        alone = epp.LinearEnsemble(d, 2, seed=9, stream_ids=b, prior_var=var)
        np.testing.assert_array_equal(L[b], alone.covariance_factor)
        np.testing.assert_array_equal(batch.factor[b], alone.factor)
    np.testing.assert_array_equal(L, np.broadcast_to(L[0], L.shape))  # no agent's copy is torn


def test_portable_and_avx2_builds_agree() -> None:
    import subprocess
    import sys

    from ensemblepp import _core

    # d = 37, M = 21: the kernels' blocks of 16 and their 4 + 1 remainders, on both lane types.
    code = (
        "import numpy as np, ensemblepp as epp, ensemblepp._core as c;"
        "rng = np.random.default_rng(0); X = rng.normal(size=(50, 37));"
        "a = epp.LinearEnsemble(37, 21, n_agents=40, seed=3); t = epp.LinearTS(37, n_agents=40, seed=3);"
        "[g.update(X[g.act(X)], rng.normal(size=40)) for _ in range(100) for g in (a, t)];"
        "np.save(__import__('sys').stdout.buffer, np.concatenate("
        "[a.factor.ravel(), a.mean.ravel(), t.mean.ravel(), t.covariance.ravel()]))"
    )
    import io
    import os

    probe = subprocess.run([sys.executable, "-c", "import ensemblepp._core as c; print(c.ISA)"],
                           env={k: v for k, v in os.environ.items() if k != "ENSEMBLEPP_ISA"},
                           capture_output=True, text=True, check=True)
    if probe.stdout.strip() != "avx2":
        pytest.skip("no AVX2+FMA build on this CPU or platform: the portable build would be compared with itself")
    out = {}
    for isa in ("generic", "default"):
        env = dict(os.environ, ENSEMBLEPP_ISA=isa)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
        out[isa] = np.load(io.BytesIO(res.stdout))
    np.testing.assert_allclose(out["generic"], out["default"], rtol=1e-9, atol=1e-12)
    assert _core.ISA in ("generic", "avx2")


def test_thread_limit_round_trips_and_keeps_results() -> None:
    before = epp.get_num_threads()
    X, _ = problem(8, 3000)
    runs = []
    try:
        for n in (1, 2):
            epp.set_num_threads(n)
            assert epp.get_num_threads() == n
            agent = epp.LinearEnsemble(8, 4, n_agents=300, seed=1)
            for _ in range(5):
                a = agent.act(X)
                agent.update(X[a], np.ones(300))
            runs.append(agent.mean)
    finally:
        epp.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="n: must be >= 1"):
        epp.set_num_threads(0)


@pytest.mark.parametrize("agent", ["ensemble++", "ts", "es", "linucb", "greedy"])
def test_runner_seed_alone_equals_seed_in_a_multi_seed_run(agent: str) -> None:
    from ensemblepp.envs import ENVIRONMENTS, register_environment
    from ensemblepp.envs.linear import FiniteLinear
    from ensemblepp.experiments import run_experiment

    if "single-finite-linear" not in ENVIRONMENTS:
        register_environment("single-finite-linear", lambda seed=0, **kw: FiniteLinear(seed=seed, **kw),
                             batched=False)

    def regret(env: str, seeds: list[int]) -> np.ndarray:
        cfg = {"name": "s", "horizon": 25, "seeds": seeds, "agent_seed": 3,
               "environment": {"name": env, "dim": 4, "n_actions": 7}, "agents": [{"name": agent}]}
        res = run_experiment(cfg, progress=False)
        return res.regret[res.agents[0]]

    batched = regret("finite-linear", [0, 1])
    looped = regret("single-finite-linear", [0, 1])
    alone = regret("finite-linear", [1])
    np.testing.assert_array_equal(batched[1], alone[0])
    np.testing.assert_array_equal(looped[1], alone[0])  # batched and looped agree too
    np.testing.assert_array_equal(looped[0], batched[0])


# ---- boundaries: byte order, layout, dtype, sizes, threads ----------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_byte_order_layout_and_dtype_are_converted_on_every_entry_point(dtype: str) -> None:
    d, K = 5, 12
    X, theta = problem(d, K)
    prior = np.diag(np.arange(1.0, d + 1)) + 0.25  # exact in float32, as mu0
    mu0 = np.linspace(-1, 1, d)

    def run(convert) -> dict:
        a = epp.LinearEnsemble(d, 4, prior_var=convert(prior), prior_mean=convert(mu0), dtype=dtype, seed=5)
        b = epp.LinearTS(d, n_agents=2, dtype=dtype, seed=5)
        for t in range(20):
            k = a.act(convert(X))
            a.update(convert(X[k]), float(X[k] @ theta))
            kb = b.act(convert(X), mask=convert(np.arange(K) % 3 != t % 3).astype(bool))
            b.update(convert(X[kb]), convert(X[kb] @ theta))
        return {**state(a), **{"b_" + k: v for k, v in state(b).items()}}

    native = run(lambda a: np.asarray(a))
    for name, convert in {
        ">f8": lambda a: np.asarray(a).astype(">f8") if np.asarray(a).dtype.kind == "f" else a,
        ">f4 / other dtype": lambda a: np.asarray(a).astype(">f4" if dtype == "float32" else "<f8")
        if np.asarray(a).dtype.kind == "f" else a,
        "fortran": lambda a: np.asfortranarray(a),
        "negative strides": lambda a: np.asarray(a)[::-1][::-1] if np.ndim(a) == 1 else np.asarray(a)[::-1, ::-1][::-1, ::-1],
    }.items():
        got = run(convert)
        for k in native:
            np.testing.assert_array_equal(got[k], native[k], err_msg=f"{name}: {k}")
    # A big-endian NaN is still a NaN, on the fast paths too.
    agent = epp.LinearGreedy(d, dtype=dtype)
    with pytest.raises(ValueError, match="actions: contains NaN"):
        agent.act(np.vstack([X, np.full((1, d), np.nan)]).astype(">f8"))
    with pytest.raises(ValueError, match="x: features"):
        agent.update(np.full(d, np.nan).astype(">f4"), 1.0)


def test_other_dtypes_are_converted_without_a_try_except() -> None:
    X, _ = problem(4, 6)
    a = epp.LinearEnsemble(4, 3, dtype="float32", seed=1)
    b = epp.LinearEnsemble(4, 3, dtype="float32", seed=1)
    for _ in range(5):
        i, j = a.act(X), b.act(X.astype(np.float32))  # float64 input to a float32 agent: converted
        assert i == j
        a.update(X[i], 0.5)
        b.update(X[j].astype(np.float32), 0.5)
    np.testing.assert_array_equal(a.mean, b.mean)
    a.update((X[0] * 4).astype(np.int64), 1.0)  # integers are real numbers too
    with pytest.raises(TypeError, match="actions: expected a real"):
        a.act(np.array(["1"] * 4).reshape(1, 4))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_beyond_the_representable_range_are_refused_before_any_change(dtype: str) -> None:
    big = 1e12 if dtype == "float32" else 1e150
    for policy in POLICIES:
        agent = POLICIES[policy](3, dtype=dtype, n_agents=2, seed=0)
        agent.update(np.eye(3)[:2], np.ones(2))
        before = state(agent)
        with pytest.raises(ValueError, match="x: features of agent 1 .* beyond"):
            agent.update(np.array([[1.0, 0, 0], [big, 0, 0]]), np.ones(2))
        with pytest.raises(ValueError, match="r: reward of agent 0 .* beyond"):
            agent.update(np.eye(3)[:2], np.array([big, 1.0]))
        assert_same_state(state(agent), before)
    # A Unix timestamp as a float32 feature (issue 9: NaN in 48 of 50 trials) is within range.
    ts = epp.LinearTS(2, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        ts.update(np.array([1.7e9 + rng.normal(), 1.0]), float(rng.normal()))
    assert np.all(np.isfinite(ts.mean)) and np.all(np.isfinite(ts.covariance))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("n_agents", [1, 3])
@pytest.mark.parametrize("source", ["float64", ">f8", "longdouble"])
def test_values_beyond_float32_are_refused_by_name_without_a_cast_warning(source: str, n_agents: int) -> None:
    # float64 1e300 given to a float32 agent: NumPy's cast warns about the overflow, and with warnings
    # as errors that warning replaced the named error (pybind11's converter even reported an internal
    # error on the single-agent path). The library narrows without warning and refuses by name.
    def rows(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=source) if n_agents == 1 else np.tile(np.asarray(v, dtype=source), (n_agents, 1))

    batch = {} if n_agents == 1 else {"n_agents": n_agents}  # one agent: the single-agent fast paths
    for policy in POLICIES:
        agent = POLICIES[policy](3, dtype="float32", seed=0, **batch)
        before = state(agent)
        with pytest.raises(ValueError, match="x: features of agent 0 .* beyond"):
            agent.update(rows([1e300, 0.0, 0.0]), np.ones(n_agents) if n_agents > 1 else 1.0)
        with pytest.raises(ValueError, match="r: reward of agent 0 .* beyond"):
            agent.update(rows([1.0, 0.0, 0.0]), np.full(n_agents, 1e300, dtype=source) if n_agents > 1 else 1e300)
        with pytest.raises(ValueError, match="actions: contains NaN or infinite"):
            agent.act(np.array([[1.0, 0.0, 0.0], [-1e300, 0.0, 0.0]], dtype=source))
        assert_same_state(state(agent), before)
    # Within float32's range the narrowing is NumPy's rounding: the same actions and states.
    a = epp.LinearEnsemble(3, 2, dtype="float32", seed=4, **batch)
    b = epp.LinearEnsemble(3, 2, dtype="float32", seed=4, **batch)
    X = np.random.default_rng(1).normal(size=(5, 3)) * 1e3
    for _ in range(4):
        i, j = a.act(X.astype(source)), b.act(X.astype(np.float32))
        np.testing.assert_array_equal(i, j)
        a.update(X[i].astype(source), np.ones(n_agents) if n_agents > 1 else 1.0)
        b.update(X[j].astype(np.float32), np.ones(n_agents) if n_agents > 1 else 1.0)
    assert_same_state(state(a), state(b))


@pytest.mark.parametrize("policy", POLICIES)
def test_an_update_that_would_overflow_is_refused_before_it_writes(policy: str) -> None:
    # Features within the input bound but x' Sigma x beyond the double range (a prior variance of
    # 1e200): alpha = 1 + x' Sigma x / eta^2 overflows, so observe() must refuse the row.
    agent = POLICIES[policy](2, prior_var=1e200, n_agents=2, seed=0)
    agent.update(np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones(2))
    before = state(agent)
    with pytest.raises(ValueError, match="x: the update of agent 1 would make its posterior non-finite"):
        agent.update(np.array([[1.0, 0.0], [1e140, 0.0]]), np.ones(2))
    after = state(agent)
    # Agent 1 is untouched; agent 0's row was applied (the batch does not roll back).
    for name in after:
        np.testing.assert_array_equal(after[name][1], before[name][1], err_msg=name)
    assert all(np.all(np.isfinite(v)) for v in after.values() if np.asarray(v).dtype.kind == "f")
    single = POLICIES[policy](2, prior_var=1e200, seed=0)
    before = state(single)
    with pytest.raises(ValueError, match="x: the update of agent 0 would make"):
        single.update(np.array([1e140, 0.0]), 1.0)
    assert_same_state(state(single), before)


def test_act_on_a_non_finite_state_names_the_state(tmp_path) -> None:
    agent = epp.LinearEnsemble(3, 2, n_agents=2, seed=0)
    arrays = agent._state_arrays()
    arrays["mean"][1, 0] = np.nan
    # A model file with this state is refused (test_files.py); the private path builds it anyway.
    damaged = epp.LinearEnsemble._from_state(arrays, dim=3, ensemble_size=2, n_agents=2, seed=0)
    before = state(damaged)
    with pytest.raises(ValueError, match="state: agent 1"):
        damaged.act(np.eye(3))
    assert_same_state(state(damaged), before)


def test_memory_error_names_bytes_and_arrays_before_allocating() -> None:
    with pytest.raises(MemoryError, match=r"n_agents: 1000000000 agents .* need (\d+) bytes .*cov_root .*factor"):
        epp.LinearEnsemble(dim=64, ensemble_size=16, n_agents=10**9, dtype="float32")


def test_per_agent_mask_rows_and_lowest_index_ties() -> None:
    # Greedy on equal actions: every score ties, so the lowest available index must win, row by row.
    B, K, d = 4, 6, 3
    X = np.ones((K, d))
    mask = np.array([[False, True, True, False, False, True],
                     [False, False, False, False, True, True],
                     [True, True, True, True, True, True],
                     [False, False, False, True, False, False]])
    for n_agents, device_mask in ((B, mask), (None, mask[1])):
        agent = epp.LinearGreedy(d, n_agents=n_agents, prior_mean=np.ones(d))
        got = agent.act(X, mask=device_mask)
        expect = [1, 4, 0, 3] if n_agents else 4
        np.testing.assert_array_equal(got, expect)
    # Distinct scores: each row's best available action, per-agent actions too.
    rng = np.random.default_rng(2)
    Xb = rng.normal(size=(B, K, d))
    agent = epp.LinUCB(d, alpha=0.0, n_agents=B, prior_mean=np.array([1.0, -0.5, 0.25]))
    scores = Xb @ np.array([1.0, -0.5, 0.25])
    expect = np.where(mask, scores, -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(agent.act(Xb, mask=mask), expect)
    np.testing.assert_array_equal(agent.act(Xb[0], mask=mask), np.where(mask, Xb[0] @ [1.0, -0.5, 0.25], -np.inf).argmax(1))


@pytest.mark.parametrize("policy", POLICIES)
def test_float32_trajectory_follows_float64(policy: str) -> None:
    d, K, T = 6, 20, 400
    X, theta = problem(d, K, seed=3)
    rng = np.random.default_rng(4)
    a32 = POLICIES[policy](d, dtype="float32", seed=2)
    a64 = POLICIES[policy](d, dtype="float64", seed=2)
    same = 0
    for _ in range(T):
        k32, k64 = a32.act(X), a64.act(X)
        same += k32 == k64
        r = float(X[k32] @ theta + rng.normal())
        a32.update(X[k32], r)
        a64.update(X[k32], r)  # the same observations, whatever the float64 agent chose
    m32, m64 = a32._state_arrays()["mean"][0], a64._state_arrays()["mean"][0]
    assert np.linalg.norm(m32 - m64) <= 1e-4 * np.linalg.norm(m64)
    np.testing.assert_allclose(host(a32.covariance), host(a64.covariance), rtol=2e-4, atol=1e-6 * np.abs(host(a64.covariance)).max())
    assert same >= 0.95 * T  # the same draws: float rounding flips only near-ties


def test_agents_of_a_batch_are_statistically_independent() -> None:
    # First draws of B agents with the same seed: i.i.d. N(mu_0, Sigma_0), whatever their ids.
    B, d = 4000, 3
    agent = epp.LinearTS(d, n_agents=B, prior_var=np.diag([1.0, 2.0, 3.0]), seed=11,
                         stream_ids=np.arange(B) * 7919 + 2**40)
    th = agent.sample()
    np.testing.assert_allclose(th.mean(axis=0), 0.0, atol=4 * np.sqrt(3.0 / B))
    np.testing.assert_allclose(np.cov(th.T), np.diag([1.0, 2.0, 3.0]), atol=5 * 3.0 * np.sqrt(2.0 / B))
    # Neighbours (by position and by id) are uncorrelated: |corr| < 4 / sqrt(B) for every pair of coordinates.
    z = th / np.sqrt([1.0, 2.0, 3.0])
    for shift in (1, 2):
        c = (z[:-shift, :, None] * z[shift:, None, :]).mean(axis=0)
        assert np.abs(c).max() < 4 / np.sqrt(B), c
    # Repeated draws of one agent are uncorrelated in time as well.
    one = epp.LinearTS(d, prior_var=np.diag([1.0, 2.0, 3.0]), seed=11)
    seq = np.array([one.sample() for _ in range(B)])
    c = (seq[:-1, :, None] * seq[1:, None, :]).mean(axis=0) / np.sqrt(np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))
    assert np.abs(c).max() < 4 / np.sqrt(B), c


def test_two_threads_on_one_agent_give_the_sequential_result() -> None:
    import threading

    d, n = 160, 2000  # d^2 work above the GIL threshold: the updates run without the GIL
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, n, d)) / np.sqrt(d)
    rs = rng.normal(size=(2, n))
    shared = epp.LinearTS(d, seed=1)
    threads = [threading.Thread(target=lambda i=i: [shared.update(xs[i, t], float(rs[i, t])) for t in range(n)])
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seq = epp.LinearTS(d, seed=1)
    seq.update(xs.reshape(-1, d), rs.reshape(-1))
    # P and the least-squares mean do not depend on the order of the observations.
    np.testing.assert_allclose(shared.mean, seq.mean, rtol=1e-8, atol=1e-10)
    U1, U2 = shared.precision_factor, seq.precision_factor
    np.testing.assert_allclose(U1.T @ U1, U2.T @ U2, rtol=1e-9, atol=1e-9)
    # Concurrent acts take distinct counter values: together they are the sequential draws.
    X = rng.normal(size=(200, d))
    a, b = epp.LinearTS(d, seed=3), epp.LinearTS(d, seed=3)
    got: list = []
    acts = [threading.Thread(target=lambda: got.extend(a.act(X) for _ in range(150))) for _ in range(2)]
    for t in acts:
        t.start()
    for t in acts:
        t.join()
    assert sorted(got) == sorted(b.act(X) for _ in range(300))
    assert a.steps == 300
