"""ClassificationBandit: encoding, rewards, regrets, seeding and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensemblepp.envs import ClassificationBandit, make_environment
from ensemblepp.envs.classification import disjoint_actions

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLEPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENSEMBLEPP_DATA", raising=False)


def toy() -> ClassificationBandit:
    X = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])
    y = np.array(["b", "a", "c", "a"])
    return ClassificationBandit(X=X, y=y, seed=3)


def test_disjoint_encoding_by_hand() -> None:
    f = np.array([1.0, 2.0])
    expected = np.array([[1, 2, 0, 0, 0, 0], [0, 0, 1, 2, 0, 0], [0, 0, 0, 0, 1, 2]], dtype=float)
    np.testing.assert_array_equal(disjoint_actions(f, 3), expected)
    batch = disjoint_actions(np.array([[1.0, 2.0], [3.0, 4.0]]), 3)
    assert batch.shape == (2, 3, 6)
    np.testing.assert_array_equal(batch[1, 2], [0, 0, 0, 0, 3, 4])


def test_hand_made_rows_features_rewards_and_regrets() -> None:
    env = toy()
    # Column 0 standardised, column 1 constant (dropped), then the intercept.
    z = (np.arange(4.0) - 1.5) / np.std(np.arange(4.0))
    np.testing.assert_allclose(env.features, np.stack([z, np.ones(4)], axis=1), rtol=0, atol=1e-12)
    assert env.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(env.labels, [1, 0, 2, 0])
    assert (env.dim, env.n_actions, env.feature_dim) == (6, 3, 2)
    seen = []
    for _ in range(4):
        row, label = env.row, env.label()
        seen.append(row)
        assert label == env.labels[row]
        np.testing.assert_allclose(env.actions(), disjoint_actions(env.features[row], 3), rtol=0, atol=0)
        np.testing.assert_array_equal(env.expected_rewards(), np.eye(3)[label])
        assert env.best_value() == 1.0
        wrong = (label + 1) % 3
        assert env.step(label if row % 2 == 0 else wrong) == ((1.0, 0.0) if row % 2 == 0 else (0.0, 1.0))
    # One epoch shows every row exactly once.
    assert sorted(seen) == [0, 1, 2, 3]
    assert env.t == 4


def test_epochs_reshuffle_and_the_seed_fixes_the_order() -> None:
    X = np.arange(50.0)[:, None]
    y = np.arange(50) % 2
    a = ClassificationBandit(X=X, y=y, seed=1)
    b = ClassificationBandit(X=X, y=y, seed=1)
    c = ClassificationBandit(X=X, y=y, seed=2)

    def rows(env: ClassificationBandit, n: int) -> list[int]:
        out = []
        for _ in range(n):
            out.append(env.row)
            env.step(0)
        return out

    ra, rb, rc = rows(a, 100), rows(b, 100), rows(c, 100)
    assert ra == rb and ra != rc
    assert sorted(ra[:50]) == list(range(50)) and sorted(ra[50:]) == list(range(50))
    assert ra[:50] != ra[50:]
    a.reset()
    assert rows(a, 100) == ra


def test_reward_noise_statistics() -> None:
    X = np.arange(40.0)[:, None]
    y = np.arange(40) % 4
    env = ClassificationBandit(X=X, y=y, noise_std=0.5, seed=0)
    noise = []
    for t in range(4000):
        label = env.label()
        a = t % 4
        r, g = env.step(a)
        assert g == (0.0 if a == label else 1.0)
        noise.append(r - (1.0 if a == label else 0.0))
    noise = np.asarray(noise)
    # 4000 draws of N(0, 0.25): the mean's s.e. is 0.0079, the variance's 0.0056.
    assert abs(noise.mean()) < 0.035
    assert abs(noise.var() - 0.25) < 0.025


def test_batched_instances_equal_single_ones() -> None:
    X = np.random.default_rng(0).standard_normal((30, 3))
    y = np.random.default_rng(1).integers(0, 3, 30)
    batched = ClassificationBandit(X=X, y=y, noise_std=0.1, n_instances=3, seed=[5, 6, 7])
    singles = [ClassificationBandit(X=X, y=y, noise_std=0.1, seed=s) for s in (5, 6, 7)]
    assert batched.actions().shape == (3, 3, 12)
    rng = np.random.default_rng(2)
    for _ in range(70):
        a = rng.integers(0, 3, 3)
        acts = batched.actions()
        for b, env in enumerate(singles):
            np.testing.assert_array_equal(acts[b], env.actions())
        r, g = batched.step(a)
        for b, env in enumerate(singles):
            rs, gs = env.step(int(a[b]))
            assert r[b] == rs and g[b] == gs


def test_subset_of_rows() -> None:
    X = np.arange(100.0)[:, None]
    y = np.arange(100) % 2
    env = ClassificationBandit(X=X, y=y, n_rows=10, seed=4)
    rows = set()
    for _ in range(30):
        rows.add(env.row)
        env.step(0)
    assert len(rows) == 10


def test_bad_actions_leave_the_state_unchanged() -> None:
    env = toy()
    row, t = env.row, env.t
    for bad, exc in [(3, ValueError), (-1, ValueError), (1.0, TypeError), (np.array([0, 1]), ValueError),
                     (True, TypeError)]:
        with pytest.raises(exc, match="action"):
            env.step(bad)
        assert (env.row, env.t) == (row, t)


def test_bad_construction_arguments() -> None:
    X = np.zeros((4, 2))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="give dataset="):
        ClassificationBandit()
    with pytest.raises(ValueError, match="not both"):
        ClassificationBandit("mushroom", X=X, y=y)
    with pytest.raises(ValueError, match="name='iris'"):
        ClassificationBandit("iris")
    with pytest.raises(ValueError, match="y must be 1-d"):
        ClassificationBandit(X=X, y=y[:3])
    with pytest.raises(ValueError, match="X must be a 2-d"):
        ClassificationBandit(X=np.zeros(4), y=y)
    with pytest.raises(ValueError, match="at least two classes"):
        ClassificationBandit(X=np.arange(4.0)[:, None], y=np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        ClassificationBandit(X=np.array([[0.0], [np.nan], [1.0], [2.0]]), y=y)
    with pytest.raises(ValueError, match="NaN"):
        ClassificationBandit(X=np.array([[0.0], [np.nan], [1.0], [2.0]]), y=y, encode=False)
    with pytest.raises(ValueError, match="n_rows"):
        ClassificationBandit(X=np.arange(4.0)[:, None], y=y, n_rows=5)
    with pytest.raises(ValueError, match="noise_std"):
        ClassificationBandit(X=np.arange(4.0)[:, None], y=y, noise_std=-1.0)


def test_encode_false_uses_features_as_given() -> None:
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    env = ClassificationBandit(X=X, y=[0, 1], encode=False, intercept=False, seed=0)
    np.testing.assert_array_equal(env.features, X)
    assert env.dim == 4


@needs_data
@pytest.mark.parametrize("name, n_actions, feature_dim", [("mushroom", 2, 117), ("shuttle", 7, 10)])
def test_uci_encodings_have_the_stated_shapes(name: str, n_actions: int, feature_dim: int) -> None:
    env = make_environment(name, seed=0, data_dir=str(DATA), download=False)
    assert isinstance(env, ClassificationBandit)
    assert (env.n_actions, env.feature_dim, env.dim) == (n_actions, feature_dim, n_actions * feature_dim)
    assert env.actions().shape == (n_actions, n_actions * feature_dim)
    batched = make_environment(name, n_instances=4, seed=0, data_dir=str(DATA), download=False)
    assert batched.actions().shape == (4, n_actions, n_actions * feature_dim)
    r, g = batched.step(batched.label())
    np.testing.assert_array_equal(r, 1.0)
    np.testing.assert_array_equal(g, 0.0)


@needs_data
def test_mushroom_is_learnable_by_least_squares_on_the_encoding() -> None:
    # Greedy ridge regression on the disjoint encoding: if the encoding lost
    # information, accuracy would stay near the majority rate (52%).
    env = ClassificationBandit("mushroom", data_dir=DATA, download=False, seed=0)
    d = env.dim
    P = np.eye(d)  # inverse of (I + sum x x^T)
    b = np.zeros(d)
    hits = []
    for _ in range(1500):
        X = env.actions()
        a = int(np.argmax(X @ (P @ b)))
        x = X[a]
        r, g = env.step(a)
        Px = P @ x
        P -= np.outer(Px, Px) / (1.0 + x @ Px)
        b += r * x
        hits.append(g == 0.0)
    assert np.mean(hits[-500:]) > 0.95
