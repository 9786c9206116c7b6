"""Off-policy estimators: hand-computed cases, bias and interval coverage on simulated logs."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from ensemblepp import ope

Z95 = NormalDist().inv_cdf(0.975)

# A hand-sized log: 4 rounds, 2 actions.
R = np.array([1.0, 0.0, 1.0, 0.0])
P = np.array([0.5, 0.25, 0.2, 0.5])
A = np.array([0, 0, 0, 0])
POLICY = np.array([[1.0, 0.0], [0.5, 0.5], [0.4, 0.6], [0.0, 1.0]])
TARGET = POLICY[np.arange(4), A]  # [1, 0.5, 0.4, 0]
Q = np.array([[0.5, 0.1], [0.2, 0.4], [1.0, 0.0], [0.3, 0.3]])


def test_ips_by_hand() -> None:
    # w = [2, 2, 2, 0], w r = [2, 0, 2, 0]: mean 1, sample sd sqrt(4/3), se sqrt(4/3)/2.
    est = ope.ips(R, P, TARGET)
    assert est.value == pytest.approx(1.0, abs=1e-15)
    assert est.stderr == pytest.approx(np.sqrt(4 / 3) / 2, rel=1e-12)
    assert est.low == pytest.approx(1.0 - Z95 * np.sqrt(4 / 3) / 2, rel=1e-12)
    assert est.high == pytest.approx(1.0 + Z95 * np.sqrt(4 / 3) / 2, rel=1e-12)
    assert (est.n, est.level, est.interval, est.estimator) == (4, 0.95, "normal", "ips")


def test_snips_by_hand() -> None:
    # sum(w r) / sum(w) = 4 / 6; delta method: w (r - V) = [2/3, -4/3, 2/3, 0],
    # se = sqrt(4/9 + 16/9 + 4/9) / 6.
    est = ope.snips(R, P, TARGET)
    assert est.value == pytest.approx(2 / 3, rel=1e-14)
    assert est.stderr == pytest.approx(np.sqrt(24 / 9) / 6, rel=1e-12)


def test_dm_by_hand() -> None:
    # Per row sum_a pi q: 0.5, 0.3, 0.4, 0.3.
    est = ope.dm(POLICY, Q)
    assert est.value == pytest.approx(0.375, rel=1e-14)
    assert est.stderr == pytest.approx(np.std([0.5, 0.3, 0.4, 0.3], ddof=1) / 2, rel=1e-12)


def test_dr_by_hand() -> None:
    # DM terms 0.5, 0.3, 0.4, 0.3 plus w (r - q[a]) = 2*0.5, 2*(-0.2), 2*0, 0*(-0.3).
    terms = [1.5, -0.1, 0.4, 0.3]
    est = ope.dr(R, P, A, POLICY, Q)
    assert est.value == pytest.approx(0.525, rel=1e-14)
    assert est.stderr == pytest.approx(np.std(terms, ddof=1) / 2, rel=1e-12)


def test_replay_by_hand() -> None:
    est = ope.replay([1.0, 0.0, 1.0, 0.0, 1.0], [0, 1, 2, 1, 0], [0, 1, 0, 1, 0])
    # Matched rounds 0, 1, 3, 4 with rewards 1, 0, 0, 1.
    assert est.value == pytest.approx(0.5) and est.n == 4
    assert est.stderr == pytest.approx(np.sqrt(1 / 3) / 2, rel=1e-12)


@pytest.mark.parametrize("clicks, n", [(0, 50), (1, 4), (46, 10000), (4, 4)])
def test_wilson_bounds_solve_the_score_equation(clicks: int, n: int) -> None:
    # The Wilson bounds are the roots in pi of (p - pi)^2 = z^2 pi (1 - pi) / n.
    r = np.zeros(n)
    r[:clicks] = 1.0
    est = ope.wilson(r)
    p, z2 = clicks / n, Z95**2
    roots = np.sort(np.roots([1 + z2 / n, -(2 * p + z2 / n), p * p]).real)
    assert est.value == p
    assert est.low == pytest.approx(roots[0], abs=1e-12)
    assert est.high == pytest.approx(roots[1], abs=1e-12)
    assert est.interval == "wilson"
    if clicks == 0:
        assert est.low == 0.0 and est.high == pytest.approx(z2 / (n + z2), rel=1e-12)
    replayed = ope.replay(r, np.zeros(n, dtype=int), np.zeros(n, dtype=int), interval="wilson")
    assert (replayed.low, replayed.high) == (est.low, est.high)
    with pytest.raises(ValueError, match="0 or 1"):
        ope.wilson(r + 0.5)
    with pytest.raises(ValueError, match="interval"):
        ope.ips(r, np.ones(n), np.ones(n), interval="wilson")


def test_dr_with_the_true_model_and_dm_agree_and_ips_with_target_equal_to_logging_is_the_mean() -> None:
    rng = np.random.default_rng(3)
    n, k = 500, 3
    r = rng.binomial(1, 0.3, n).astype(float)
    p = np.full(n, 1 / k)
    assert ope.ips(r, p, p).value == pytest.approx(r.mean(), rel=1e-13)
    assert ope.snips(r, p, p).value == pytest.approx(r.mean(), rel=1e-13)
    # With a zero reward model DR is IPS.
    pol = rng.dirichlet(np.ones(k), n)
    a = rng.integers(0, k, n)
    t = pol[np.arange(n), a]
    assert ope.dr(r, p, a, pol, np.zeros((n, k))).value == pytest.approx(ope.ips(r, p, t).value, rel=1e-13)


# ---- simulated logs with a known policy value -------------------------------------------

C, K = 5, 4
_RNG = np.random.default_rng(20240713)
QTRUE = _RNG.uniform(0.05, 0.6, size=(C, K))          # click probability per (context, action)
LOGGING = _RNG.dirichlet(np.full(K, 2.0), size=C)     # every action has positive probability
EVALUATED = _RNG.dirichlet(np.full(K, 0.7), size=C)   # a different, more peaked policy
TRUTH = float(np.mean((EVALUATED * QTRUE).sum(axis=1)))  # contexts are uniform


def simulate(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, C, n)
    u = rng.random(n)
    a = (u[:, None] > np.cumsum(LOGGING[x], axis=1)).sum(axis=1)
    a = np.minimum(a, K - 1)
    r = (rng.random(n) < QTRUE[x, a]).astype(float)
    return {"x": x, "a": a, "r": r, "p": LOGGING[x, a], "t": EVALUATED[x, a], "policy": EVALUATED[x]}


def _estimates(name: str, log: dict[str, np.ndarray]) -> ope.Estimate:
    wrong = 0.9 - QTRUE[log["x"]]  # a wrong reward model: it ranks the actions backwards
    if name == "ips":
        return ope.ips(log["r"], log["p"], log["t"])
    if name == "snips":
        return ope.snips(log["r"], log["p"], log["t"])
    if name == "dm-true":
        return ope.dm(log["policy"], QTRUE[log["x"]])
    if name == "dm-wrong":
        return ope.dm(log["policy"], wrong)
    if name == "dr-wrong":
        return ope.dr(log["r"], log["p"], log["a"], log["policy"], wrong)
    raise AssertionError(name)


N_SEEDS, N_ROUNDS = 400, 1000


@pytest.fixture(scope="module")
def runs() -> dict[str, list[ope.Estimate]]:
    logs = [simulate(s, N_ROUNDS) for s in range(N_SEEDS)]
    names = ["ips", "snips", "dm-true", "dm-wrong", "dr-wrong"]
    return {name: [_estimates(name, log) for log in logs] for name in names}


def test_the_simulator_logs_the_logging_policy() -> None:
    log = simulate(0, 200_000)
    freq = np.bincount(log["x"] * K + log["a"], minlength=C * K).reshape(C, K)
    np.testing.assert_allclose(freq / freq.sum(axis=1, keepdims=True), LOGGING, atol=0.01)


@pytest.mark.parametrize("name", ["ips", "snips", "dm-true", "dr-wrong"])
def test_unbiased_within_four_standard_errors_of_the_mean(runs: dict[str, list[ope.Estimate]], name: str) -> None:
    values = np.array([e.value for e in runs[name]])
    se_of_mean = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - TRUTH) < 4 * se_of_mean, (values.mean(), TRUTH, se_of_mean)


def test_dm_with_a_wrong_model_is_biased_and_dr_repairs_it(runs: dict[str, list[ope.Estimate]]) -> None:
    dm_wrong = np.array([e.value for e in runs["dm-wrong"]])
    dr_wrong = np.array([e.value for e in runs["dr-wrong"]])
    assert abs(dm_wrong.mean() - TRUTH) > 0.1  # the model's bias, 0.9 - 2 * TRUTH
    assert abs(dr_wrong.mean() - TRUTH) < 0.005


@pytest.mark.parametrize("name", ["ips", "snips", "dm-true", "dr-wrong"])
def test_normal_interval_coverage_is_near_95_percent(runs: dict[str, list[ope.Estimate]], name: str) -> None:
    # 400 seeds: the binomial sd of the coverage is 1.1 points, so [0.91, 0.985] is
    # about -3.5 / +3 sd around 0.95.
    coverage = np.mean([e.covers(TRUTH) for e in runs[name]])
    assert 0.91 <= coverage <= 0.985, coverage


def test_standard_errors_match_the_spread_over_seeds(runs: dict[str, list[ope.Estimate]]) -> None:
    for name in ("ips", "snips", "dr-wrong"):
        values = np.array([e.value for e in runs[name]])
        mean_se = np.mean([e.stderr for e in runs[name]])
        assert mean_se == pytest.approx(values.std(ddof=1), rel=0.1), name


def test_bootstrap_interval_is_seeded_and_agrees_with_the_normal_one() -> None:
    log = simulate(11, 3000)
    normal = ope.ips(log["r"], log["p"], log["t"])
    boot = ope.ips(log["r"], log["p"], log["t"], interval="bootstrap", n_bootstrap=1000, seed=5)
    again = ope.ips(log["r"], log["p"], log["t"], interval="bootstrap", n_bootstrap=1000, seed=5)
    other = ope.ips(log["r"], log["p"], log["t"], interval="bootstrap", n_bootstrap=1000, seed=6)
    assert boot == again and boot != other
    assert boot.value == normal.value and boot.interval == "bootstrap"
    assert boot.stderr == pytest.approx(normal.stderr, rel=0.1)
    assert boot.low == pytest.approx(normal.low, abs=0.5 * normal.stderr)
    assert boot.high == pytest.approx(normal.high, abs=0.5 * normal.stderr)
    for fn, args in ((ope.snips, (log["r"], log["p"], log["t"])),
                     (ope.dr, (log["r"], log["p"], log["a"], log["policy"], np.full((3000, K), 0.3))),
                     (ope.dm, (log["policy"], QTRUE[log["x"]]))):
        n_est = fn(*args)
        b_est = fn(*args, interval="bootstrap", n_bootstrap=1000, seed=1)
        assert b_est.stderr == pytest.approx(n_est.stderr, rel=0.15), fn.__name__


def test_replay_recovers_a_deterministic_policy_under_uniform_logging() -> None:
    # Uniform logging over K actions; the evaluated policy picks argmax_a QTRUE[x, a].
    best = QTRUE.argmax(axis=1)
    truth = QTRUE.max(axis=1).mean()
    covered, values = [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, C, 2000)
        a = rng.integers(0, K, 2000)
        r = (rng.random(2000) < QTRUE[x, a]).astype(float)
        est = ope.replay(r, a, best[x])
        covered.append(est.covers(truth))
        values.append(est.value)
    assert abs(np.mean(values) - truth) < 4 * np.std(values) / np.sqrt(300)
    assert 0.91 <= np.mean(covered) <= 0.985


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: ope.ips([1.0, 0.0], [0.5], [1.0, 0.0]), "propensity: expected 2"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.0], [1.0, 0.0]), r"propensity: .*\(0, 1\]"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 1.5], [1.0, 0.0]), "propensity"),
    (lambda: ope.ips([1.0, np.nan], [0.5, 0.5], [1.0, 0.0]), "reward: contains NaN"),
    (lambda: ope.ips([1.0, 0.0], [0.5, np.inf], [1.0, 0.0]), "propensity: contains NaN"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.5], [1.0, -0.1]), "target: probabilities"),
    (lambda: ope.ips([[1.0, 0.0]], [0.5, 0.5], [1.0, 0.0]), "reward: expected a 1-d"),
    (lambda: ope.ips([1.0], [0.5], [1.0]), "at least 2"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], level=1.0), "level"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], interval="wald"), "interval"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], interval="bootstrap", n_bootstrap=5), "n_bootstrap"),
    (lambda: ope.ips([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], seed=-1), "seed"),
    (lambda: ope.snips([1.0, 0.0], [0.5, 0.5], [0.0, 0.0]), "target: .*probability 0"),
    (lambda: ope.dm(POLICY * 0.5, Q), "policy: every row must sum to 1, row 0 sums to 0.5"),
    (lambda: ope.dm(POLICY, Q[:, :1]), r"predicted: expected shape \(4, 2\)"),
    (lambda: ope.dm(POLICY[0], Q), "policy: expected shape"),
    (lambda: ope.dr(R, P, [0, 0, 0, 2], POLICY, Q), r"action: indices must lie in \[0, 2\)"),
    (lambda: ope.dr(R, P, [0.0, 0, 0, 0], POLICY, Q), "action: expected integer"),
    (lambda: ope.dr(R, P, A, -POLICY, Q), r"policy: probabilities must lie in \[0, 1\], found -"),
    (lambda: ope.dm(POLICY * 1e308, Q), r"policy: probabilities must lie in \[0, 1\], found \d"),
    (lambda: ope.replay(R, A, [1, 1, 1, 1]), "only 0 round"),
    (lambda: ope.replay(R, A, [1, 1]), r"chosen: expected shape \(4,\)"),
    (lambda: ope.ips(np.array(["a", "b"]), P[:2], TARGET[:2]), "reward: expected real numbers"),
    (lambda: ope.ips([1e308, 1e308], [1e-3, 1e-3], [1.0, 1.0]), "reward: .*overflow"),
    (lambda: ope.snips([1e308, -1e308], [1e-3, 1e-3], [1.0, 1.0]), "reward: .*overflow"),
    (lambda: ope.dm(POLICY, Q * 1e307 * 9), "predicted: .*overflow"),
    (lambda: ope.dr([1e308, 0.0], [1e-3, 1.0], [0, 0], POLICY[:2], Q[:2]), "reward: .*overflow"),
])
@pytest.mark.filterwarnings("error")  # refused with the named error alone, no overflow warning on the way
def test_bad_input_names_the_argument(call, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_estimate_helpers() -> None:
    est = ope.ips(R, P, TARGET)
    assert est.relative_error(0.5) == pytest.approx(1.0)
    assert est.covers(1.0) and not est.covers(100.0)
    with pytest.raises(ValueError, match="truth"):
        est.relative_error(0.0)
    assert "ips: 1" in str(est)


def test_bootstrap_blocks_do_not_change_the_answer_for_small_logs() -> None:
    # Below 4M indices the resamples come in one block: the result equals a direct computation.
    log = simulate(4, 500)
    terms = log["t"] / log["p"] * log["r"]
    boot = np.random.default_rng(3).integers(0, 500, size=(400, 500))
    direct = terms[boot].mean(axis=1)
    est = ope.ips(log["r"], log["p"], log["t"], interval="bootstrap", n_bootstrap=400, seed=3)
    assert est.stderr == pytest.approx(direct.std(ddof=1), rel=1e-12)
    lo, hi = np.quantile(direct, [0.025, 0.975])
    assert (est.low, est.high) == pytest.approx((lo, hi), rel=1e-12)
    # A large log is resampled in blocks, so its memory stays bounded.
    big = simulate(5, 50_000)
    est = ope.ips(big["r"], big["p"], big["t"], interval="bootstrap", n_bootstrap=200, seed=0)
    normal = ope.ips(big["r"], big["p"], big["t"])
    assert est.stderr == pytest.approx(normal.stderr, rel=0.2)

