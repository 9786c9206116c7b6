"""DriftingLinear: the random walk and switches of theta*, regret against the current theta*, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblepp.envs import DriftingLinear, FiniteLinear, make_environment


def _trajectory(env: DriftingLinear, steps: int, actions: np.ndarray | None = None) -> np.ndarray:
    thetas = [env.theta]
    for t in range(steps):
        a = 0 if env.n_instances is None else np.zeros(env.n_instances, dtype=np.int64)
        env.step(a if actions is None else actions[t])
        thetas.append(env.theta)
    return np.array(thetas)


def test_random_walk_increments_have_the_stated_variance() -> None:
    env = DriftingLinear(dim=4, n_actions=3, drift_std=0.3, n_instances=50, seed=1)
    theta = _trajectory(env, 400)  # (T+1, B, d)
    steps = np.diff(theta, axis=0)
    assert steps.std() == pytest.approx(0.3, rel=0.02)
    assert abs(steps.mean()) < 4 * 0.3 / np.sqrt(steps.size)
    # Independent increments: lag-1 correlation near zero.
    a, b = steps[:-1].ravel(), steps[1:].ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)


def test_without_drift_it_is_finite_linear() -> None:
    still = DriftingLinear(dim=5, n_actions=7, drift_std=0.0, seed=3)
    plain = FiniteLinear(dim=5, n_actions=7, seed=3)
    np.testing.assert_array_equal(still.actions(), plain.actions())
    np.testing.assert_array_equal(still.theta, plain.theta)
    for a in (0, 3, 6, 2):
        assert still.step(a) == plain.step(a)


def test_regret_is_against_the_current_theta() -> None:
    env = DriftingLinear(dim=3, n_actions=6, drift_std=1.0, noise_std=0.0, seed=4)
    for _ in range(30):
        means = env.actions() @ env.theta
        np.testing.assert_allclose(env.expected_rewards(), means, rtol=1e-12)
        a = int(np.argmin(means))
        reward, regret = env.step(a)
        assert regret == pytest.approx(means.max() - means[a], rel=1e-12)
        assert reward == pytest.approx(means[a], rel=1e-12)  # noise_std = 0


def test_periodic_switches_redraw_from_the_prior() -> None:
    env = DriftingLinear(dim=3, n_actions=4, drift_std=0.0, switch_every=5, prior_var=4.0, n_instances=400, seed=0)
    theta = _trajectory(env, 20)
    changed = np.any(theta[1:] != theta[:-1], axis=2)  # (T, B)
    np.testing.assert_array_equal(changed.all(axis=1), [(t + 1) % 5 == 0 for t in range(20)])
    assert not changed[[t for t in range(20) if (t + 1) % 5]].any()
    np.testing.assert_array_equal(env.switches, 4)
    assert theta[-1].std() == pytest.approx(2.0, rel=0.06)  # sqrt(prior_var), 1200 draws


def test_random_switches_happen_at_the_stated_rate() -> None:
    env = DriftingLinear(dim=2, n_actions=3, drift_std=0.0, switch_prob=0.05, n_instances=100, seed=2)
    switched = []
    for _ in range(200):
        env.step(np.zeros(100, dtype=np.int64))
        switched.append(env.info()["switched"])
    rate = np.mean(switched)
    assert rate == pytest.approx(0.05, abs=4 * np.sqrt(0.05 * 0.95 / 20000))
    assert env.switches.sum() == np.sum(switched)


def test_a_batch_equals_single_instances_seeded_one_by_one() -> None:
    kw = dict(dim=3, n_actions=5, drift_std=0.2, switch_prob=0.1, switch_every=7)
    batch = DriftingLinear(**kw, n_instances=3, seed=10)
    singles = [DriftingLinear(**kw, seed=10 + b) for b in range(3)]
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = rng.integers(0, 5, 3)
        r, g = batch.step(a)
        for b, env in enumerate(singles):
            rb, gb = env.step(int(a[b]))
            assert (r[b], g[b]) == (rb, gb)
    for b, env in enumerate(singles):
        np.testing.assert_array_equal(batch.theta[b], env.theta)
    # reset() replays the same problem, drift included.
    moves = [rng.integers(0, 5, 3) for _ in range(40)]
    batch.reset()
    first = _trajectory(batch, 40, moves)
    batch.reset()
    np.testing.assert_array_equal(_trajectory(batch, 40, moves), first)
    np.testing.assert_array_equal(DriftingLinear(**kw, n_instances=3, seed=10).theta, first[0])


def test_registry_and_bad_options() -> None:
    env = make_environment("drifting-linear", n_instances=2, seed=0, dim=4, n_actions=8, drift_std=0.05)
    assert isinstance(env, DriftingLinear) and env.config()["drift_std"] == 0.05
    with pytest.raises(ValueError, match="drift_std"):
        DriftingLinear(drift_std=-1.0)
    with pytest.raises(ValueError, match="drift_std"):
        DriftingLinear(drift_std=float("nan"))
    with pytest.raises(ValueError, match="switch_prob"):
        DriftingLinear(switch_prob=1.5)
    with pytest.raises(ValueError, match="switch_every"):
        DriftingLinear(switch_every=0)
    with pytest.raises(TypeError, match="switch_every"):
        DriftingLinear(switch_every=2.5)
    env = DriftingLinear(dim=2, n_actions=3, seed=0)
    before = env.theta
    with pytest.raises(ValueError, match="action"):
        env.step(3)
    np.testing.assert_array_equal(env.theta, before)
    assert env.t == 0
