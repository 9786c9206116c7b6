"""Philox generator and the five distributions: known answers, moments, supports, isotropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import ensemblepp as epp
from ensemblepp import _core

N = 40_000


def test_philox_known_answers() -> None:
    # Random123 kat_vectors, philox4x32 10.
    assert _core.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert _core.philox4x32_10([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert _core.philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("name", epp.DISTRIBUTIONS)
@pytest.mark.parametrize("M", [1, 2, 8, 33])
@pytest.mark.parametrize("scaling", ["perturbation", "reference"])
def test_moments_and_isotropy(name: str, M: int, scaling: str) -> None:
    v = epp.draw(name, N, M, scaling=scaling, seed=7)
    scale2 = 1.0 if scaling == "perturbation" else M
    # Second moment: E|v|^2 = 1 (perturbation) or M (reference).
    sq = (v**2).sum(axis=1)
    assert abs(sq.mean() - scale2) < 6 * sq.std() / math.sqrt(N) + 1e-12
    # Mean zero and E[v v^T] = (scale2 / M) I: each entry within ~5 standard errors.
    assert np.abs(v.mean(axis=0)).max() < 5 * math.sqrt(scale2 / M / N) + 1e-12
    cov = v.T @ v / N
    se = np.sqrt(np.maximum((v**2).T @ (v**2) / N - cov**2, 0) / N)
    np.testing.assert_array_less(np.abs(cov - scale2 / M * np.eye(M)), 5 * se + 1e-12)


@pytest.mark.parametrize("M", [1, 5, 16])
def test_supports(M: int) -> None:
    sphere = epp.draw("sphere", 2000, M, seed=1)
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), 1.0, rtol=1e-12)
    ref = epp.draw("sphere", 2000, M, seed=1, scaling="reference")
    np.testing.assert_allclose(ref, math.sqrt(M) * sphere, rtol=1e-13)

    cube = epp.draw("cube", 2000, M, seed=2)
    np.testing.assert_allclose(np.abs(cube), 1 / math.sqrt(M), rtol=1e-14)
    signs = np.sign(cube)
    assert abs(signs.mean()) < 0.05

    coord = epp.draw("coordinate", 2000, M, seed=3)
    assert ((coord != 0).sum(axis=1) == 1).all()
    np.testing.assert_array_equal(np.abs(coord).sum(axis=1), 1.0)

    for s in range(1, M + 1):
        sparse = epp.draw("sparse", 500, M, seed=4, sparsity=s)
        assert ((sparse != 0).sum(axis=1) == s).all()
        np.testing.assert_allclose(np.abs(sparse[sparse != 0]), 1 / math.sqrt(s), rtol=1e-14)


def test_gaussian_is_normal_and_indices_are_uniform() -> None:
    g = epp.draw("gaussian", 5000, 4, seed=11, scaling="reference").ravel()
    assert stats.kstest(g, "norm").pvalue > 1e-3
    M = 7
    coord = epp.draw("coordinate", 14000, M, seed=12)
    counts = np.bincount(np.flatnonzero(coord) % M, minlength=M)
    assert stats.chisquare(counts).pvalue > 1e-3
    sparse = epp.draw("sparse", 14000, M, seed=13, sparsity=3)
    counts = (sparse != 0).sum(axis=0)
    assert stats.chisquare(counts).pvalue > 1e-3


def _box_muller_reference(seed: int, agent: int, step: int, pairs: int) -> np.ndarray:
    """Normals of one draw recomputed from the Philox words with NumPy's log, cos and sin."""
    out = []
    for j in range(pairs):
        counter = [j | ((step >> 32) << 16), step & 0xFFFFFFFF, agent & 0xFFFFFFFF, agent >> 32]
        w0, w1, w2, w3 = _core.philox4x32_10(counter, [seed & 0xFFFFFFFF, seed >> 32])
        k = ((w0 << 20) ^ w1) & (2**52 - 1)  # 52 bits: u1 = (k + 1/2) 2^-52
        f = (((w2 << 22) ^ w3) & (2**52 - 1)) * 2.0**-52 - 0.5
        angle = ((w2 >> 30) + f) * np.pi / 2  # quadrant from the top 2 bits of w2
        r = np.sqrt(-2 * np.log((k + 0.5) * 2.0**-52))
        out += [r * np.cos(angle), r * np.sin(angle)]
    return np.array(out)


@pytest.mark.parametrize("seed, agent, step", [(0, 0, 0), (2**64 - 1, 2**63 + 5, 2**40 + 3), (12345, 7, 99)])
def test_gaussian_draws_are_box_muller_of_the_philox_words(seed: int, agent: int, step: int) -> None:
    # The polynomial log/sin/cos of the compiled map (vectorised on AVX2 hosts) against libm's,
    # at the same uniforms: 4e-15 measured; 17 pairs cover two vector lane sets and a tail.
    n = 34
    got = epp.draw("gaussian", 1, n, scaling="reference", seed=seed, agent=agent, step=step)[0]
    np.testing.assert_allclose(got, _box_muller_reference(seed, agent, step, n // 2), rtol=0, atol=2e-14)


VECTOR_LANES_DRIVER = r"""
#include <cstdio>
#include "ensemblepp/philox.hpp"
using namespace ensemblepp;
int main() {
#if !defined(EPP_SIMD_NORMALS)
  std::puts("no vector lanes");
  return 1;
#else
  long mismatches = 0, pairs = 0;
  for (int count = 1; count <= 21; ++count)      // one lane set, two, and tails of each
    for (std::uint64_t s = 0; s < 300; ++s) {
      const Stream st{s * 0x9E3779B97F4A7C15ull, (s << 33) | s, ~s * 3};
      double a[21], b[21];
      normal_pairs(st, 65530, count, a, b);     // the block index wraps at 2^16 inside the run
      for (int i = 0; i < count; ++i, ++pairs) {
        double x, y;
        normal_pair(st.block(65530 + static_cast<std::uint32_t>(i)), x, y);
        mismatches += (x != a[i]) + (y != b[i]);
      }
    }
  std::printf("%ld %ld\n", mismatches, pairs);
  return 0;
#endif
}
"""


def test_vector_lanes_draw_the_scalar_map_bit_for_bit(tmp_path) -> None:
    # The CPU evaluates box_muller on four AVX2 lanes, the GPU and the portable build one pair at
    # a time: the same fused steps must give the same bits, or CPU and GPU runs would part.
    import os
    import platform
    import shutil
    import subprocess
    from pathlib import Path

    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if platform.machine() not in ("x86_64", "AMD64") or cxx is None:
        pytest.skip("needs an x86-64 host with a C++ compiler")
    if "avx2" not in _core.ISA and _core.ISA != "native":
        pytest.skip(f"this CPU runs the {_core.ISA} build, without AVX2 + FMA lanes")
    src = tmp_path / "lanes.cpp"
    src.write_text(VECTOR_LANES_DRIVER)
    include = Path(__file__).resolve().parents[1] / "cpp" / "include"
    subprocess.run([cxx, "-std=c++17", "-O2", "-mavx2", "-mfma", "-I", str(include), str(src), "-o",
                    str(tmp_path / "lanes")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(tmp_path / "lanes")], check=True, capture_output=True, text=True).stdout.split()
    assert int(out[1]) == 21 * 22 // 2 * 300 and int(out[0]) == 0


def test_gaussian_tails_and_kurtosis() -> None:
    g = epp.draw("gaussian", 10_000, 40, seed=21, scaling="reference").ravel()
    assert stats.kstest(g, "norm").pvalue > 1e-3
    n = g.size  # 4e5: kurtosis 3 has standard error sqrt(96 / n) = 0.015
    assert abs((g**4).mean() - 3) < 5 * math.sqrt(96 / n)
    p = 2 * stats.norm.sf(3.5)  # 4.65e-4: about 186 expected beyond 3.5 sigma
    assert abs((np.abs(g) > 3.5).mean() - p) < 5 * math.sqrt(p / n)


def test_sphere_is_uniform_beyond_second_moments() -> None:
    # Archimedes: on S^2 every coordinate is uniform on [-1, 1]; the angle around an axis too.
    v = epp.draw("sphere", 20000, 3, seed=21)
    for i in range(3):
        assert stats.kstest(v[:, i], "uniform", args=(-1, 2)).pvalue > 1e-3
    phi = np.arctan2(v[:, 1], v[:, 0])
    assert stats.kstest(phi, "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 1e-3
    # On S^(n-1): E[v_i^4] = 3 / (n (n + 2)), E[v_i^2 v_j^2] = 1 / (n (n + 2)), odd moments zero.
    n, N = 8, 40000
    w = epp.draw("sphere", N, n, seed=22)
    m4, m22 = (w**4).mean(axis=0), (w[:, 0] ** 2 * w[:, 1] ** 2).mean()
    se4 = (w**4).std(axis=0) / np.sqrt(N)
    np.testing.assert_array_less(np.abs(m4 - 3 / (n * (n + 2))), 5 * se4)
    assert abs(m22 - 1 / (n * (n + 2))) < 5 * (w[:, 0] ** 2 * w[:, 1] ** 2).std() / np.sqrt(N)
    assert abs((w[:, 0] ** 3).mean()) < 5 * (w[:, 0] ** 3).std() / np.sqrt(N)
    # The squared first coordinate is Beta(1/2, (n - 1)/2).
    assert stats.kstest(w[:, 0] ** 2, "beta", args=(0.5, (n - 1) / 2)).pvalue > 1e-3


def test_stream_ids_use_all_64_bits() -> None:
    a = epp.draw("gaussian", 4, 6, seed=5, agent=2**63 + 1)
    b = epp.draw("gaussian", 4, 6, seed=5, agent=1)
    c = epp.draw("gaussian", 4, 6, seed=5, agent=2**32 + 1)
    assert not np.allclose(a, b) and not np.allclose(b, c) and not np.allclose(a, c)
    with pytest.raises(ValueError, match="agent"):
        epp.draw("gaussian", 1, 2, agent=2**64)


def test_streams_are_reproducible_and_independent() -> None:
    a = epp.draw("gaussian", 10, 6, seed=5, agent=3, step=100)
    np.testing.assert_array_equal(a, epp.draw("gaussian", 10, 6, seed=5, agent=3, step=100))
    # Draw i of a call is the draw at counter step + i.
    np.testing.assert_array_equal(a[4:], epp.draw("gaussian", 6, 6, seed=5, agent=3, step=104))
    others = [epp.draw("gaussian", 10, 6, seed=6, agent=3, step=100),
              epp.draw("gaussian", 10, 6, seed=5, agent=4, step=100)]
    for b in others:
        assert not np.any(a == b)
    # Independent streams: correlation between agents is at the noise level.
    x = epp.draw("gaussian", 20000, 2, seed=5, agent=0).ravel()
    y = epp.draw("gaussian", 20000, 2, seed=5, agent=1).ravel()
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(x.size)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="name: unknown distribution 'normal'"):
        epp.draw("normal", 3, 4)
    with pytest.raises(ValueError, match="scaling"):
        epp.draw("gaussian", 3, 4, scaling="unit")
    with pytest.raises(ValueError, match="sparsity"):
        epp.draw("sparse", 3, 4, sparsity=5)
    with pytest.raises(ValueError, match="dim"):
        epp.draw("sphere", 3, 0)
    with pytest.raises(TypeError, match="size"):
        epp.draw("sphere", 2.5, 3)
