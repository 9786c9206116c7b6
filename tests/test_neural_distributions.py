"""Moments, supports and seeding of the torch index distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ensemblepp.neural import DISTRIBUTIONS, coordinate_support, draw  # noqa: E402

torch.set_num_threads(1)
M = 5
N = 20000


def _draw(name: str, scale: str = "perturbation", seed: int = 1, **kw) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return draw(name, N, M, generator=gen, scaling=scale, **kw).double().numpy()


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_unit_second_moment_and_isotropy(name: str) -> None:
    v = _draw(name)
    assert v.shape == (N, M)
    # E|v|^2 = 1 and E[v v^T] = I / M; 5 standard errors at N = 20000 are below these tolerances.
    np.testing.assert_allclose((v**2).sum(1).mean(), 1.0, atol=0.02)
    np.testing.assert_allclose(v.T @ v / N, np.eye(M) / M, atol=0.012)
    np.testing.assert_allclose(v.mean(0), np.zeros(M), atol=0.02)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_reference_scale_is_sqrt_m_times_perturbation(name: str) -> None:
    np.testing.assert_allclose(_draw(name, "reference"), math.sqrt(M) * _draw(name), rtol=1e-6)


def test_supports() -> None:
    norms = np.linalg.norm(_draw("sphere"), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    cube = _draw("cube")
    np.testing.assert_allclose(np.abs(cube), 1 / math.sqrt(M), rtol=1e-6)
    coord = _draw("coordinate")
    assert ((coord != 0).sum(1) == 1).all()
    np.testing.assert_allclose(np.abs(coord).sum(1), 1.0, rtol=1e-6)
    # Every coordinate and both signs occur about equally often.
    counts = np.array([[(coord[:, j] == s).sum() for j in range(M)] for s in (-1.0, 1.0)])
    np.testing.assert_allclose(counts / N, np.full((2, M), 0.5 / M), atol=0.01)
    for s in (1, 2, 3):
        sp = _draw("sparse", sparsity=s)
        assert ((sp != 0).sum(1) == s).all()
        np.testing.assert_allclose(np.abs(sp[sp != 0]), 1 / math.sqrt(s), rtol=1e-6)
    # Gaussian: kurtosis of N(0, 1/M) per coordinate, E v^4 = 3 / M^2.
    g = _draw("gaussian")
    np.testing.assert_allclose((g**4).mean(), 3 / M**2, rtol=0.05)


def test_default_sparsity_is_two() -> None:
    assert ((_draw("sparse") != 0).sum(1) == 2).all()
    gen = torch.Generator().manual_seed(0)
    one = draw("sparse", 10, 1, generator=gen)
    np.testing.assert_allclose(one.abs().numpy(), 1.0)


def test_seeded_and_shapes() -> None:
    for name in DISTRIBUTIONS:
        np.testing.assert_array_equal(_draw(name, seed=3), _draw(name, seed=3))
        assert not np.array_equal(_draw(name, seed=3), _draw(name, seed=4))
    gen = torch.Generator().manual_seed(0)
    assert draw("sphere", (2, 3), 4, generator=gen).shape == (2, 3, 4)
    assert draw("sphere", (), 4, generator=gen).shape == (4,)


def test_coordinate_support() -> None:
    s = coordinate_support(3).numpy()
    r3 = math.sqrt(3)
    np.testing.assert_allclose(s, np.concatenate([np.eye(3), -np.eye(3)]) * r3, rtol=1e-6)
    np.testing.assert_allclose(coordinate_support(3, scaling="perturbation").numpy(), s / r3, rtol=1e-6)
    # Uniform over the support has E[z z^T] = I at reference scale.
    np.testing.assert_allclose(s.T @ s / 6, np.eye(3), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "laplace"}, "name"),
    ({"scaling": "unit"}, "scaling"),
    ({"dim": 0}, "dim"),
    ({"name": "sparse", "sparsity": 6}, "sparsity"),
    ({"name": "sparse", "sparsity": 0}, "sparsity"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"name": "gaussian", "size": 3, "dim": M, "generator": torch.Generator()}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        draw(**args)
