"""Environments: regret accounting, reward distributions, seeding, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblepp.envs import (ENVIRONMENTS, ChangingLinear, CompactLinear, FiniteLinear, NeuralBandit, Quadratic,
                             instance_seeds, make_environment, register_environment)

# Small versions of every finite-action environment (one factory per class and task).
FINITE = {
    "finite": lambda **kw: FiniteLinear(dim=4, n_actions=12, **kw),
    "changing": lambda **kw: ChangingLinear(dim=4, n_actions=12, **kw),
    "quadratic": lambda **kw: Quadratic(dim=6, n_actions=8, n_arms=40, **kw),
    "neural-regression": lambda **kw: NeuralBandit(dim=6, n_actions=8, n_arms=40, hidden=(7, 5), **kw),
    "neural-classification": lambda **kw: NeuralBandit(dim=6, n_actions=8, n_arms=40, hidden=(7, 5),
                                                       task="classification", temperature=0.5, **kw),
}


@pytest.fixture(params=sorted(FINITE))
def make(request: pytest.FixtureRequest):
    return FINITE[request.param]


def _trajectory(env, actions):
    """Actions sets, rewards and regrets along a fixed list of actions."""
    out = []
    for a in actions:
        X = env.actions().copy()
        r, g = env.step(a)
        out.append((X, r, g))
    return out


# -- regret ---------------------------------------------------------------------------------------

def test_regret_zero_for_best_and_positive_otherwise(make):
    env = make(n_instances=3, seed=11)
    for _ in range(15):
        means = env.expected_rewards()
        best = means.argmax(axis=1)
        # Pick, per instance, the best action for step parity 0 and the worst otherwise.
        worst = means.argmin(axis=1)
        gap = means.max(axis=1) - means.min(axis=1)
        if env.t % 2 == 0:
            _, regret = env.step(best)
            np.testing.assert_array_equal(regret, np.zeros(3))
        else:
            _, regret = env.step(worst)
            assert np.all(regret > 0)
            np.testing.assert_allclose(regret, gap, rtol=0, atol=1e-12)


def test_regret_of_every_action_is_best_minus_its_mean(make):
    env = make(seed=4)
    means = env.expected_rewards()
    for a in range(env.n_actions):
        twin = make(seed=4)
        _, regret = twin.step(a)
        assert regret == pytest.approx(means.max() - means[a], abs=1e-12)
        assert (regret == 0.0) == (a == int(means.argmax()))
    assert env.best_value() == pytest.approx(means.max(), abs=0)


def test_compact_regret():
    env = CompactLinear(dim=5, n_instances=2, seed=3)
    theta = env.theta
    best = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    _, regret = env.step(best)
    np.testing.assert_allclose(regret, 0.0, atol=1e-12)
    other = np.roll(best, 1, axis=1)
    _, regret = env.step(other)
    expected = np.linalg.norm(theta, axis=1) - np.einsum("bd,bd->b", other, theta)
    np.testing.assert_allclose(regret, expected, rtol=1e-12)
    assert np.all(regret > 0)
    np.testing.assert_allclose(env.best_value(), np.linalg.norm(theta, axis=1), rtol=1e-14)
    assert env.actions() is None and env.compact


# -- the stated reward models -----------------------------------------------------------------------

def test_finite_linear_model():
    env = FiniteLinear(dim=6, n_actions=50, prior_var=10.0, n_instances=2, seed=0)
    X = env.actions()
    assert X.shape == (2, 50, 6) and X.dtype == np.float64
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(X) <= bound)
    # Uniform on [-b, b]: variance b^2 / 3.
    np.testing.assert_allclose(X.var(), bound**2 / 3, rtol=0.1)
    np.testing.assert_allclose(env.expected_rewards(), np.einsum("bkd,bd->bk", X, env.theta), rtol=1e-13)


def test_theta_prior_variance():
    env = FiniteLinear(dim=5, n_actions=2, prior_var=10.0, n_instances=2000, seed=0)
    theta = env.theta
    # 10,000 draws of N(0, 10): sample variance within 5% (about 3.5 standard errors).
    np.testing.assert_allclose(theta.var(), 10.0, rtol=0.05)
    assert abs(theta.mean()) < 4 * np.sqrt(10.0 / theta.size)


def test_changing_linear_actions_are_fresh_unit_vectors():
    env = ChangingLinear(dim=5, n_actions=7, n_instances=2, seed=1)
    X0 = env.actions().copy()
    np.testing.assert_allclose(np.linalg.norm(X0, axis=2), 1.0, rtol=1e-13)
    env.step(np.zeros(2, dtype=np.int64))
    X1 = env.actions()
    assert not np.allclose(X0, X1)
    np.testing.assert_allclose(env.expected_rewards(), np.einsum("bkd,bd->bk", X1, env.theta), rtol=1e-13)


def test_quadratic_values():
    env = Quadratic(dim=6, n_actions=8, n_arms=40, scale=0.01, n_instances=2, seed=2)
    X = env.actions()
    np.testing.assert_allclose(np.linalg.norm(X, axis=2), 1.0, rtol=1e-13)
    Th = env._Th
    expected = 0.01 * np.einsum("bkd,bde->bke", X, Th) ** 2
    np.testing.assert_allclose(env.expected_rewards(), expected.sum(axis=2), rtol=1e-12)
    # The offered actions are distinct arms of the pool.
    idx = env.offered
    assert all(len(set(row)) == 8 for row in idx.tolist())


def test_neural_bandit_values_match_an_independent_forward_pass():
    env = NeuralBandit(dim=6, n_actions=8, n_arms=40, hidden=(7, 5), n_instances=2, seed=5)
    X = env.actions()
    for b in range(2):
        h = X[b]
        layers = env._weights
        for i, (w, bias) in enumerate(layers):
            h = h @ w[b] + bias[b]
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
        np.testing.assert_allclose(env.expected_rewards()[b], h[:, 0], rtol=1e-12)
    cls = NeuralBandit(dim=6, n_actions=8, n_arms=40, hidden=(7, 5), task="classification",
                       temperature=0.5, seed=5)
    p = cls.expected_rewards()
    assert np.all((p > 0) & (p < 1))


def _residual_draws(env, steps):
    """Rewards minus expected rewards of action 0 over ``steps`` steps of all instances."""
    resid, means = [], []
    zero = np.zeros(env.n_instances, dtype=np.int64)
    for _ in range(steps):
        m = env.expected_rewards()[:, 0].copy()
        r, _ = env.step(zero)
        resid.append(r - m)
        means.append(m)
    return np.concatenate(resid), np.concatenate(means)


@pytest.mark.parametrize("kind", ["finite", "changing", "quadratic", "neural-regression"])
def test_gaussian_rewards_have_stated_mean_and_noise(kind):
    noise = {"finite": 1.0, "changing": 1.0, "quadratic": 0.1, "neural-regression": 0.1}[kind]
    resid, _ = _residual_draws(FINITE[kind](n_instances=400, seed=7), 10)
    n = resid.size
    # Mean within 4 standard errors; standard deviation within 5% (n = 4000 gives s.e. ~1.1%).
    assert abs(resid.mean()) < 4 * noise / np.sqrt(n)
    np.testing.assert_allclose(resid.std(), noise, rtol=0.05)


def test_bernoulli_rewards_have_stated_mean():
    resid, p = _residual_draws(FINITE["neural-classification"](n_instances=400, seed=3), 10)
    reward = resid + p
    np.testing.assert_allclose(np.unique(np.round(reward, 12)), [0.0, 1.0])
    # The sum of Bernoulli(p_i) has mean sum p_i and variance sum p_i (1 - p_i).
    assert abs(resid.sum()) < 4 * np.sqrt((p * (1 - p)).sum())


def test_noise_is_independent_across_steps():
    env = FiniteLinear(dim=3, n_actions=4, noise_std=1.0, seed=0)
    mean = env.expected_rewards()[0]
    r = np.array([env.step(0)[0] for _ in range(3000)]) - mean
    np.testing.assert_allclose(r.std(), 1.0, rtol=0.05)
    # Lag-one autocorrelation of white noise is ~N(0, 1/n).
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 4 / np.sqrt(len(r))


# -- seeding and batching ---------------------------------------------------------------------------

def test_same_seed_same_trajectory_and_different_seed_differs(make):
    rng = np.random.default_rng(0)
    acts = [rng.integers(0, 8, size=3) for _ in range(20)]
    a = _trajectory(make(n_instances=3, seed=5), acts)
    b = _trajectory(make(n_instances=3, seed=5), acts)
    c = _trajectory(make(n_instances=3, seed=6), acts)
    for (xa, ra, ga), (xb, rb, gb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ga, gb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_batched_equals_single_instances(make):
    seeds = [3, 17, 4]
    rng = np.random.default_rng(1)
    # Long enough to cross the block boundaries of the pre-drawn noise and contexts.
    acts = [rng.integers(0, 8, size=3) for _ in range(1100)]
    batched = _trajectory(make(n_instances=3, seed=seeds), acts)
    for i, s in enumerate(seeds):
        single = _trajectory(make(seed=s), [int(a[i]) for a in acts])
        for (xb, rb, gb), (xs, rs, gs) in zip(batched, single):
            np.testing.assert_array_equal(xb[i], xs)
            assert rb[i] == rs and gb[i] == gs


def test_int_seed_expands_to_consecutive_seeds():
    assert instance_seeds(5, 3) == [5, 6, 7]
    assert instance_seeds(5, None) == [5]
    b = FiniteLinear(dim=3, n_actions=4, n_instances=2, seed=10)
    s = FiniteLinear(dim=3, n_actions=4, seed=11)
    np.testing.assert_array_equal(b.actions()[1], s.actions())


def test_compact_batched_equals_single():
    seeds = [2, 9]
    batched = CompactLinear(dim=4, n_instances=2, seed=seeds)
    singles = [CompactLinear(dim=4, seed=s) for s in seeds]
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = rng.standard_normal((2, 4))
        x /= 2 * np.linalg.norm(x, axis=1, keepdims=True)
        rb, gb = batched.step(x)
        for i, env in enumerate(singles):
            r, g = env.step(x[i])
            assert r == rb[i] and g == gb[i]


def test_reset_restores_and_reseeds(make):
    env = make(n_instances=2, seed=1)
    first = _trajectory(env, [np.array([0, 1])] * 5)
    env.reset()
    again = _trajectory(env, [np.array([0, 1])] * 5)
    for (x1, r1, _), (x2, r2, _) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(r1, r2)
    env.reset(seed=[40, 41])
    fresh = make(n_instances=2, seed=40)
    np.testing.assert_array_equal(env.actions(), fresh.actions())
    assert env.t == 0 and env.seeds == [40, 41]


# -- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, exc", [
    (np.array([0, 1]), ValueError),          # wrong shape
    (np.array([0, 1, 12]), ValueError),      # out of range
    (np.array([0, -1, 2]), ValueError),      # negative
    (np.array([0.0, 1.0, 2.0]), TypeError),  # float indices
    (np.array([True, False, True]), TypeError),
    (3, ValueError),                         # a scalar for a batch
])
def test_bad_actions_raise_and_leave_state(bad, exc):
    env = FiniteLinear(dim=3, n_actions=12, n_instances=3, seed=0)
    twin = FiniteLinear(dim=3, n_actions=12, n_instances=3, seed=0)
    with pytest.raises(exc, match="action"):
        env.step(bad)
    assert env.t == 0
    a = np.array([1, 2, 3])
    np.testing.assert_array_equal(env.step(a)[0], twin.step(a)[0])


def test_single_instance_rejects_arrays_and_floats():
    env = FiniteLinear(dim=3, n_actions=5, seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([0, 1]))
    with pytest.raises(TypeError, match="action"):
        env.step(1.0)
    with pytest.raises(ValueError, match="action"):
        env.step(5)
    assert env.t == 0


def test_compact_rejects_bad_vectors():
    env = CompactLinear(dim=3, seed=0)
    with pytest.raises(ValueError, match="unit ball"):
        env.step(np.array([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4))
    assert env.t == 0


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"dim": 0}, ValueError, "dim"),
    ({"dim": 2.5}, TypeError, "dim"),
    ({"n_actions": -1}, ValueError, "n_actions"),
    ({"noise_std": -1.0}, ValueError, "noise_std"),
    ({"prior_var": float("nan")}, ValueError, "prior_var"),
    ({"n_instances": 0}, ValueError, "n_instances"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": [1, 2], "n_instances": 3}, ValueError, "seed"),
])
def test_bad_constructor_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        FiniteLinear(**{"dim": 3, "n_actions": 4, **kwargs})


def test_nonlinear_bad_arguments():
    with pytest.raises(ValueError, match="n_arms"):
        Quadratic(dim=3, n_actions=10, n_arms=5)
    with pytest.raises(ValueError, match="task"):
        NeuralBandit(dim=3, n_actions=2, n_arms=4, task="ranking")
    with pytest.raises(ValueError, match="temperature"):
        NeuralBandit(dim=3, n_actions=2, n_arms=4, temperature=0.0)


# -- registry ---------------------------------------------------------------------------------------

def test_registry_builds_and_validates():
    for name in ("finite-linear", "changing-linear", "compact-linear", "quadratic", "neural-bandit",
                 "neural-classification"):
        assert name in ENVIRONMENTS
    env = make_environment("neural-classification", n_instances=2, seed=0, dim=4, n_actions=3, n_arms=5)
    assert env.task == "classification" and env.n_instances == 2
    with pytest.raises(ValueError, match="unknown environment"):
        make_environment("nope")
    with pytest.raises(ValueError, match="dimm"):
        make_environment("finite-linear", dimm=3)
    with pytest.raises(ValueError, match="already registered"):
        register_environment("finite-linear", FiniteLinear)
