"""The CUDA kernels' per-agent bodies, run on a host emulation of a thread block (no GPU needed).

``cuda/include/ensemblepp/cuda_agent.hpp`` holds the code every CUDA block runs for one agent;
``cuda_emulation.hpp`` runs it with emulated threads (coroutines), real barriers and warp sums,
uninitialised scratch filled with NaN, and shuffled or reversed thread order between barriers,
so that a missing barrier or a race shows up as a wrong number, and a barrier reached by part
of a block as an error. The driver below compares it with the CPU drivers (``batch.hpp``) on
random problems: every policy, float64 and float32, shared and per-agent actions, action and
observation masks, several observations per call, exact ties, d and M above the block size,
sample and act_sphere, and bad input (errors reported for the right agent, state unchanged).

The same bodies also stand in for the device under the whole Python stack: with
``ENSEMBLEPP_EMULATE_CUDA=1`` and this module loaded as a plugin (``-p test_cuda_emulated``),
``cupy`` is replaced by NumPy arrays posing as CuPy arrays and ``_cuda``'s sample, act and update
by the emulated kernels, so that ``linear.py``'s ``device="cuda"`` path, ``_cuda_backend.py`` and
``test_cuda.py`` itself run here::

    ENSEMBLEPP_EMULATE_CUDA=1 ENSEMBLEPP_CUDA_TEST_STEPS=50 PYTHONPATH=tests \
        python -m pytest -p test_cuda_emulated tests/test_cuda.py tests/test_linear.py

The kernels in ``cuda/src/linear_kernels.cu`` are thin wrappers of the same grid bodies, which
the emulator runs with fewer blocks than agents, in shared or global scratch. What this cannot
check: the launch configuration and shared-memory declarations, shuffles and atomics on real
hardware, the device math library, and CuPy itself (``test_cuda.py`` on a GPU does).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADERS = [ROOT / "cuda/src/cuda_agent.hpp", ROOT / "tests/cuda_emulation.hpp", ROOT / "cuda/include/ensemblepp/cuda_api.hpp"]
HEADERS += [ROOT / "cpp/include/ensemblepp" / n
            for n in ("batch.hpp", "linear.hpp", "linear_config.hpp", "distributions.hpp", "philox.hpp", "config.hpp")]
CPU_SOURCE = ROOT / "cpp/src/batch.cpp"

SCENARIOS = ["ensemble", "ensemble_wide", "ensemble_tiny", "thompson", "thompson_33", "ensemble_sampling",
             "ucb", "ucb_40", "greedy"]

#: Largest relative difference |gpu - cpu| / (1 + |cpu|) allowed (rounding of reordered sums).
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}

DRIVER = r"""
// Compares the emulated CUDA bodies with the CPU drivers (batch.hpp) on random problems.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ensemblepp/batch.hpp"
#include "cuda_emulation.hpp"

using namespace ensemblepp;
namespace ec = ensemblepp::cuda;
namespace emu = ensemblepp::cuda::emulation;

struct Scenario {
  const char* name;
  int policy, d, M, B, K, n_obs, steps, threads;
  int reference, perturbation, rsparse, psparse;
  bool per_agent, mask_actions, mask_obs, dense_prior;
  emu::Block::Order order;
};

template <class V>
bool same_bits(const std::vector<V>& a, const std::vector<V>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(V)) == 0;
}

template <class T>
struct Host {
  std::vector<double> root, mean;
  std::vector<T> factor;
  std::vector<std::uint64_t> steps;
  bool operator==(const Host& o) const {
    return same_bits(root, o.root) && same_bits(mean, o.mean) && same_bits(factor, o.factor) &&
           steps == o.steps;
  }
};

template <class T>
double rel_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    m = std::max(m, std::abs(x - y) / (1.0 + std::abs(y)));
  }
  return m;
}

template <class T>
int run(const Scenario& sc) {
  std::mt19937_64 rng(1234 + sc.policy * 17 + sc.d);
  std::normal_distribution<double> N(0.0, 1.0);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const long d = sc.d, M = sc.M, B = sc.B, K = sc.K, n = sc.n_obs;
  LinearConfig cfg;
  cfg.dim = sc.d; cfg.ensemble_size = sc.M; cfg.policy = static_cast<Policy>(sc.policy);
  cfg.reference = static_cast<Distribution>(sc.reference);
  cfg.perturbation = static_cast<Distribution>(sc.perturbation);
  cfg.reference_sparsity = sc.rsparse; cfg.perturbation_sparsity = sc.psparse;
  cfg.noise_std = 0.7; cfg.alpha = 1.3; cfg.seed = 0x1234567890abcdefull;
  cfg.dtype = sizeof(T) == 8 ? DType::float64 : DType::float32;

  // A prior: lower L0 with a positive diagonal (Sigma_0 = L0^T L0), mu0.
  std::vector<double> L0(d * d, 0.0), mu0(d);
  for (long i = 0; i < d; ++i) {
    mu0[i] = N(rng);
    L0[i * d + i] = 0.5 + U(rng);
    if (sc.dense_prior)
      for (long j = 0; j < i; ++j) L0[i * d + j] = 0.3 * N(rng);
  }
  const Prior prior{L0.data(), mu0.data(), !sc.dense_prior};
  const bool has_f = has_factor(cfg.policy);
  Host<T> cpu, gpu;
  for (Host<T>* h : {&cpu, &gpu}) {
    h->root.assign(B * d * d, -3.0);  // garbage that the initialisation must overwrite
    h->mean.assign(B * d, -3.0);
    h->factor.assign(has_f ? B * d * M : 0, T(-3));
    h->steps.assign(B, 77);
  }
  // Stream ids far apart and above 2^32, as the runner's environment seeds may be.
  std::vector<std::uint64_t> ids(B);
  for (long b = 0; b < B; ++b) ids[b] = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(b + 1);
  BatchState<T> cs{cpu.root.data(), cpu.mean.data(), has_f ? cpu.factor.data() : nullptr,
                   cpu.steps.data(), ids.data(), B};
  ec::detail::Batch<T> gs{gpu.root.data(), gpu.mean.data(), has_f ? gpu.factor.data() : nullptr,
                          gpu.steps.data(), ids.data(), nullptr, B, 0};
  emu::Block block(sc.threads, sc.order, 99);
  // float32 runs keep the per-agent vectors in the global workspace, float64 in shared memory.
  emu::Kernels<T> kern(cfg, gs, block, sizeof(T) == 4);
  initialize(cfg, cs, prior, 0);
  kern.initialize(L0.data(), mu0.data(), !sc.dense_prior, 0);
  const double max_init = std::max({rel_diff(gpu.root, cpu.root), rel_diff(gpu.mean, cpu.mean),
                                    has_f ? rel_diff(gpu.factor, cpu.factor) : 0.0});
  int step_mismatch = 0;
  for (long b = 0; b < B; ++b) step_mismatch += cpu.steps[b] != gpu.steps[b];

  double max_state = 0, max_theta = 0;
  int choice_mismatch = 0, error_mismatch = 0;
  std::vector<T> theta_c(B * d), theta_g(B * d);
  std::vector<std::int64_t> ch_c(B), ch_g(B);
  unsigned long long err[3];
  const long XA = sc.per_agent ? B : 1;
  for (int t = 0; t < sc.steps; ++t) {
    std::vector<T> X(XA * K * d);
    for (auto& v : X) v = T(N(rng));
    if (t % 4 == 3)  // all actions equal: every score ties, the lowest available index wins
      for (long a = 0; a < XA; ++a)
        for (long k = 1; k < K; ++k)
          for (long i = 0; i < d; ++i) X[(a * K + k) * d + i] = X[a * K * d + i];
    std::vector<std::uint8_t> mask;
    if (sc.mask_actions) {
      mask.resize(B * K);
      for (long b = 0; b < B; ++b) {
        for (long k = 0; k < K; ++k) mask[b * K + k] = U(rng) < 0.6;
        mask[b * K + (t + b) % K] = 1;
      }
    }
    ActionSet<T> as{X.data(), K, sc.per_agent, mask.empty() ? nullptr : mask.data(), true};
    if (sc.policy == 3 || sc.policy == 4 || t % 3 != 1) {
      act(cfg, cs, as, ch_c.data(), theta_c.data());
      kern.act(X.data(), K, sc.per_agent, mask.empty() ? nullptr : mask.data(), true,
               theta_g.data(), ch_g.data(), err);
      if (err[0] != ec::kNoError || err[1] != ec::kNoError || err[2] != ec::kNoError) ++error_mismatch;
      max_theta = std::max(max_theta, rel_diff(theta_g, theta_c));
    } else {  // sometimes a plain sample instead, and act_sphere
      sample(cfg, cs, theta_c.data());
      kern.sample(theta_g.data(), false);
      max_theta = std::max(max_theta, rel_diff(theta_g, theta_c));
      act_sphere(cfg, cs, theta_c.data());
      kern.sample(theta_g.data(), true);
      max_theta = std::max(max_theta, rel_diff(theta_g, theta_c));
      for (long b = 0; b < B; ++b) ch_c[b] = ch_g[b] = (t + b) % K;
    }
    for (long b = 0; b < B; ++b) choice_mismatch += ch_c[b] != ch_g[b];
    // Observations: the CPU's choice (so that a mismatch does not hide later state errors),
    // plus extra random ones when n_obs > 1, one of them with zero features (a skipped rotation).
    std::vector<T> x(B * n * d), r(B * n);
    std::vector<std::uint8_t> om;
    for (long b = 0; b < B; ++b)
      for (long j = 0; j < n; ++j) {
        const T* src = X.data() + (sc.per_agent ? b * K * d : 0) + ch_c[b] * d;
        for (long i = 0; i < d; ++i)
          x[(b * n + j) * d + i] = j == 0 ? src[i] : (i % 3 == 0 ? T(0) : T(N(rng)));
        r[b * n + j] = T(N(rng));
      }
    if (sc.mask_obs) {
      om.resize(B * n);
      for (auto& v : om) v = U(rng) < 0.7;
    }
    update(cfg, cs, x.data(), r.data(), om.empty() ? nullptr : om.data(), n);
    kern.update(x.data(), r.data(), om.empty() ? nullptr : om.data(), n, err);
    if (err[0] != ec::kNoError) ++error_mismatch;
    for (long b = 0; b < B; ++b) step_mismatch += cpu.steps[b] != gpu.steps[b];
    max_state = std::max({max_state, rel_diff(gpu.root, cpu.root), rel_diff(gpu.mean, cpu.mean),
                          has_f ? rel_diff(gpu.factor, cpu.factor) : 0.0});
  }

  // Bad input: the same error as the CPU's and no change of state.
  Host<T> before = gpu;
  std::vector<T> x(B * d, T(0.1)), r(B, T(1));
  const long bad = B > 1 ? 1 : 0;
  x[bad * d + d - 1] = std::numeric_limits<T>::quiet_NaN();
  kern.update(x.data(), r.data(), nullptr, 1, err);
  bool x_err = err[0] == 2ull * bad + 1;
  x[bad * d + d - 1] = T(sizeof(T) == 4 ? 1e12 : 1e150);  // finite, but beyond the input bound
  kern.update(x.data(), r.data(), nullptr, 1, err);
  x_err = x_err && err[0] == 2ull * bad + 1;
  x[bad * d + d - 1] = T(0.1);
  r[bad] = std::numeric_limits<T>::infinity();
  kern.update(x.data(), r.data(), nullptr, 1, err);
  const bool r_err = err[0] == 2ull * bad;
  std::vector<T> X(K * d, T(0.5));
  X[(K - 1) * d] = std::numeric_limits<T>::quiet_NaN();
  kern.act(X.data(), K, false, nullptr, false, theta_g.data(), ch_g.data(), err);
  // Every agent scores the NaN action: the lowest offender is agent 0.
  const bool nan_err = err[1] == 0 && err[0] == ec::kNoError && err[2] == ec::kNoError;
  std::vector<std::uint8_t> m(B * K, 1);
  for (long k = 0; k < K; ++k) m[(B - 1) * K + k] = 0;
  std::vector<T> Xok(K * d, T(0.5));
  kern.act(Xok.data(), K, false, m.data(), true, theta_g.data(), ch_g.data(), err);
  const bool mask_err = err[0] == static_cast<unsigned long long>(B - 1);
  bool unchanged = before == gpu;
  // A non-finite state (a damaged file): act names the agent and changes nothing.
  gpu.mean[(B - 1) * d] = std::numeric_limits<double>::quiet_NaN();
  before = gpu;
  kern.act(Xok.data(), K, false, nullptr, false, theta_g.data(), ch_g.data(), err);
  const bool state_err = err[2] == static_cast<unsigned long long>(B - 1);
  unchanged = unchanged && before == gpu;

  std::printf("%s %s init=%.3e state=%.3e theta=%.3e choices=%d steps=%d errors=%d x_err=%d "
              "r_err=%d nan_err=%d mask_err=%d state_err=%d unchanged=%d\n",
              sc.name, sizeof(T) == 8 ? "float64" : "float32", max_init, max_state, max_theta,
              choice_mismatch, step_mismatch, error_mismatch, x_err, r_err, nan_err, mask_err,
              state_err, unchanged);
  return 0;
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  using O = emu::Block::Order;
  // Few scenarios, each covering several things: every policy and both action layouts, masks,
  // several observations per call, d above the warp and the block size, M above d, dense and
  // diagonal priors, every distribution, d = 1, 32 to 128 threads, every thread order.
  const Scenario scenarios[] = {
      // name             pol  d   M  B  K  n st thr ref pert rs ps per_agent maskA maskO dense order
      {"ensemble",          0, 5,  4, 3, 6, 1, 6, 64, 0, 1, 2, 2, false, true,  false, true,  O::shuffled},
      {"ensemble_wide",     0, 70, 40, 2, 3, 2, 2, 64, 2, 4, 2, 3, true,  false, true,  false, O::reverse},
      {"ensemble_tiny",     0, 1,  3, 2, 2, 1, 4, 32, 3, 3, 1, 1, false, true,  false, true,  O::shuffled},
      {"thompson",          1, 6,  1, 3, 5, 2, 5, 64, 0, 1, 1, 1, true,  true,  true,  true,  O::reverse},
      {"thompson_33",       1, 33, 1, 2, 9, 1, 3, 96, 0, 1, 1, 1, false, false, false, true,  O::shuffled},
      {"ensemble_sampling", 2, 5,  4, 3, 6, 2, 5, 64, 0, 1, 1, 1, true,  true,  true,  true,  O::shuffled},
      {"ucb",               3, 5,  1, 3, 9, 1, 5, 128, 0, 1, 1, 1, false, true, false, true,  O::shuffled},
      {"ucb_40",            3, 40, 1, 2, 5, 2, 3, 64, 0, 1, 1, 1, true,  false, true,  false, O::reverse},
      {"greedy",            4, 5,  1, 3, 6, 1, 5, 64, 0, 1, 1, 1, false, true,  true,  true,  O::reverse},
  };
  for (const auto& sc : scenarios) {
    if (!only.empty() && only != sc.name) continue;
    try {
      run<double>(sc);
      run<float>(sc);
    } catch (const std::exception& e) {
      std::printf("%s error %s\n", sc.name, e.what());
    }
  }
  return 0;
}
"""


LIBRARY = r"""
// C ABI over the emulated kernels: the _cuda step functions on host memory, for ctypes.
#include <cstdint>
#include <cstdio>
#include <exception>

#include "cuda_emulation.hpp"

namespace ec = ensemblepp::cuda;
namespace emu = ensemblepp::cuda::emulation;
using ensemblepp::Distribution;
using ensemblepp::Policy;

namespace {

ec::Config make(const int* ci, const double* cd, unsigned long long seed) {
  ec::Config c;
  c.policy = static_cast<Policy>(ci[0]);
  c.dim = ci[1];
  c.ensemble_size = ci[2];
  c.reference = static_cast<Distribution>(ci[3]);
  c.perturbation = static_cast<Distribution>(ci[4]);
  c.reference_sparsity = ci[5];
  c.perturbation_sparsity = ci[6];
  c.dtype = ci[7] ? ec::DType::float64 : ec::DType::float32;
  c.noise_std = cd[0];
  c.alpha = cd[1];
  c.seed = seed;
  return c;
}

template <class T>
ec::detail::Batch<T> batch(const std::uintptr_t* s, long B) {
  return ec::detail::Batch<T>{reinterpret_cast<double*>(s[0]), reinterpret_cast<double*>(s[1]),
                              reinterpret_cast<T*>(s[2]), reinterpret_cast<std::uint64_t*>(s[3]),
                              reinterpret_cast<const std::uint64_t*>(s[4]), nullptr, B, 0};
}

// Runs f(kernels, T{}) for the configured element type; 0 on success.
template <class F>
int dispatch(const ec::Config& c, const std::uintptr_t* s, long B, int threads, F&& f) {
  try {
    // One block per size for the whole process: its stacks are made once.
    static std::unique_ptr<emu::Block> blocks[8];
    auto& slot = blocks[threads / 32 - 1];
    if (!slot) slot = std::make_unique<emu::Block>(threads, emu::Block::Order::shuffled, 7);
    emu::Block& block = *slot;
    if (c.dtype == ec::DType::float64) {
      emu::Kernels<double> k(c, batch<double>(s, B), block);
      f(k, double{});
    } else {
      emu::Kernels<float> k(c, batch<float>(s, B), block);
      f(k, float{});
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated kernel: %s\n", e.what());
    return 1;
  }
}

}  // namespace

extern "C" {

int emu_initialize(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
                   long B, int threads, std::uintptr_t L0, std::uintptr_t mu0, int diagonal, long first) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto) {
    k.initialize(reinterpret_cast<const double*>(L0), reinterpret_cast<const double*>(mu0), diagonal != 0,
                 first);
  });
}

int emu_sample(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
               long B, int threads, std::uintptr_t out, int unit) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto tag) {
    using T = decltype(tag);
    k.sample(reinterpret_cast<T*>(out), unit != 0);
  });
}

int emu_act(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
            long B, int threads, std::uintptr_t X, long K, int per_agent, std::uintptr_t mask,
            int mask_per_agent, std::uintptr_t choice, std::uintptr_t theta,
            std::uintptr_t errors) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto tag) {
    using T = decltype(tag);
    k.act(reinterpret_cast<const T*>(X), K, per_agent != 0,
          reinterpret_cast<const std::uint8_t*>(mask), mask_per_agent != 0,
          reinterpret_cast<T*>(theta), reinterpret_cast<std::int64_t*>(choice),
          reinterpret_cast<unsigned long long*>(errors));
  });
}

int emu_update(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
               long B, int threads, std::uintptr_t x, std::uintptr_t r, std::uintptr_t mask,
               long n, std::uintptr_t errors) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto tag) {
    using T = decltype(tag);
    k.update(reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(r),
             reinterpret_cast<const std::uint8_t*>(mask), n,
             reinterpret_cast<unsigned long long*>(errors));
  });
}

}  // extern "C"
"""


def _compiler() -> str | None:
    if platform.system() != "Linux":
        return None
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _eigen_include() -> str | None:
    for cand in (os.environ.get("EIGEN3_INCLUDE_DIR"), "/usr/include/eigen3", "/usr/local/include/eigen3"):
        if cand and (Path(cand) / "Eigen" / "Core").exists():
            return cand
    try:
        prefix = subprocess.run([sys.executable, "-m", "cmeel", "cmake"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    cand = Path(prefix) / "include" / "eigen3"
    return str(cand) if (cand / "Eigen" / "Core").exists() else None


@pytest.fixture(scope="module")
def emulation(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Builds (once per source version, cached) and runs the driver; results by 'name dtype'."""
    cxx = _compiler()
    if cxx is None:
        pytest.skip("needs a C++20 compiler and POSIX ucontext (Linux)")
    eigen = _eigen_include()
    if eigen is None:
        pytest.skip("Eigen headers not found (pip install cmeel-eigen)")
    digest = hashlib.sha256(DRIVER.encode())
    for p in [*HEADERS, CPU_SOURCE]:
        digest.update(p.read_bytes())
    cache_plugin = getattr(request.config, "cache", None)
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir("ensemblepp_cuda_emulation"))
    else:
        cache = tmp_path_factory.mktemp("ensemblepp_cuda_emulation")
    exe = cache / f"driver-{digest.hexdigest()[:16]}"
    if not exe.exists():
        src = cache / "driver.cpp"
        src.write_text(DRIVER)
        cmd = [cxx, "-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-I", str(ROOT / "cpp/include"), "-I", str(ROOT / "cuda/include"),
               "-I", str(ROOT / "cuda/src"), "-I", str(ROOT / "tests"), "-I", eigen, str(src), str(CPU_SOURCE), "-o", str(exe) + ".tmp"]
        build = subprocess.run(cmd, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr[-4000:]
        os.replace(str(exe) + ".tmp", exe)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    results: dict[str, dict[str, float]] = {}
    for line in run.stdout.splitlines():
        name, kind, *fields = line.split()
        assert kind != "error", line
        results[f"{name} {kind}"] = {k: float(v) for k, v in (f.split("=") for f in fields)}
    return results


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_emulated_block_matches_cpu(emulation: dict, scenario: str, dtype: str) -> None:
    r = emulation[f"{scenario} {dtype}"]
    assert r["state"] <= TOLERANCE[dtype], r
    assert r["theta"] <= TOLERANCE[dtype], r
    assert r["choices"] == 0, r  # same argmax, ties to the lowest index
    assert r["steps"] == 0, r  # same Philox counters
    assert r["errors"] == 0, r  # no spurious error on finite input
    assert r["init"] <= TOLERANCE[dtype], r  # the same prior state
    for flag in ("x_err", "r_err", "nan_err", "mask_err", "state_err", "unchanged"):
        assert r[flag] == 1, (flag, r)


# ---- the emulated device under the Python stack -----------------------------------------------
def _build_library() -> Path:
    """Compiles LIBRARY (once per source version) into a temporary cache directory."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("the CUDA emulation needs a C++20 compiler and POSIX ucontext (Linux)")
    digest = hashlib.sha256(LIBRARY.encode())
    for p in HEADERS[:3] + HEADERS[5:]:
        digest.update(p.read_bytes())
    cache = Path(tempfile.gettempdir()) / "ensemblepp-cuda-emulation"
    cache.mkdir(exist_ok=True)
    lib = cache / f"libemulated-{digest.hexdigest()[:16]}.so"
    if not lib.exists():
        src = cache / f"emulated-{os.getpid()}.cpp"
        src.write_text(LIBRARY)
        tmp = str(lib) + f".{os.getpid()}.tmp"
        cmd = [cxx, "-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-shared", "-fPIC", "-I", str(ROOT / "cpp/include"),
               "-I", str(ROOT / "cuda/include"), "-I", str(ROOT / "cuda/src"), "-I", str(ROOT / "tests"), str(src), "-o", tmp]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    return lib


class FakeCupyArray(np.ndarray):
    """A NumPy array posing as a ``cupy.ndarray``: ``.data.ptr``, ``.get()``, module ``cupy``."""

    @property
    def data(self) -> Any:  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def get(self, stream: Any = None) -> np.ndarray:
        return np.array(self)

    @property
    def device(self) -> Any:  # type: ignore[override]
        return types.SimpleNamespace(id=0)  # the one emulated device


FakeCupyArray.__module__ = "cupy"


def _fake(obj: Any) -> Any:
    if isinstance(obj, np.ndarray) and not isinstance(obj, FakeCupyArray):
        return obj.view(FakeCupyArray)
    return obj


class _FakeNamespace(types.ModuleType):
    """NumPy (or a NumPy submodule) whose array results come back as FakeCupyArray."""

    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name)
        self._target = target

    def __getattr__(self, name: str) -> Any:
        obj = getattr(self._target, name)
        if isinstance(obj, types.ModuleType):
            return _FakeNamespace(f"{self.__name__}.{name}", obj)
        if callable(obj) and not isinstance(obj, type):
            return lambda *a, **k: _fake(obj(*a, **k))
        return obj


class _FakeStream:
    ptr = 0

    def __init__(self, non_blocking: bool = False) -> None:
        pass

    def __enter__(self) -> _FakeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass


def _fake_cupy() -> types.ModuleType:
    cp = _FakeNamespace("cupy", np)
    cp.ndarray = FakeCupyArray
    cp.cuda = types.SimpleNamespace(get_current_stream=lambda: _FakeStream(), Stream=_FakeStream,
                                    runtime=types.SimpleNamespace(memGetInfo=lambda: (2**40, 2**40),
                                                                  getDevice=lambda: 0))
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)
    return cp


def _host_workspace_size(c: Any) -> int:
    # Mirrors ensemblepp::cuda::workspace_size: 3 max(d, M) (+ 8 d for LinUCB) doubles beyond 40 KiB.
    width = 3 * max(c.dim, c.ensemble_size) + (8 * c.dim if c.policy == 3 else 0)
    return 0 if width * 8 <= 40 * 1024 else width


class EmulatedCuda(types.ModuleType):
    """``ensemblepp._cuda`` with sample, act and update run by the emulated kernels.

    Config, State, workspace_size and the codes are the real module's host code where it is
    built, else plain Python stand-ins; the blocks have 64 threads (128 for d > 64), half the
    CUDA launch, to keep the emulation quick.
    """

    def __init__(self, real: types.ModuleType | None, lib_path: Path) -> None:
        super().__init__("ensemblepp._cuda")
        self._lib = ctypes.CDLL(str(lib_path))
        if real is not None:
            self.LinearConfig, self.State, self.workspace_size = real.LinearConfig, real.State, real.workspace_size
            self.POLICIES, self.NO_ERROR = real.POLICIES, real.NO_ERROR
        else:  # the CPU module's LinearConfig is the same struct with the same checks
            from ensemblepp import _core  # noqa: PLC0415

            self.LinearConfig, self.State, self.workspace_size = _core.LinearConfig, types.SimpleNamespace, _host_workspace_size
            self.POLICIES = dict(_core.POLICIES)
            self.NO_ERROR = 2**64 - 1

    def device_count(self) -> int:
        return 1

    def device_info(self, device: int = 0) -> dict:
        return {"name": "host emulation", "compute_capability": (0, 0), "total_memory": 0,
                "peak_bandwidth_gbs": float("nan")}  # fmt: skip

    def _common(self, c: Any, s: Any) -> list:
        ci = (ctypes.c_int * 8)(c.policy, c.dim, c.ensemble_size, c.reference, c.perturbation,
                                c.reference_sparsity, c.perturbation_sparsity, c.dtype)  # fmt: skip
        cd = (ctypes.c_double * 2)(c.noise_std, c.alpha)
        ptrs = (ctypes.c_size_t * 5)(s.cov_root, s.mean, s.factor, s.steps, s.stream_ids)
        if c.policy in (0, 2) and not s.factor:
            raise ValueError("factor: this policy needs a (B, d, M) factor")
        return [ci, cd, ctypes.c_ulonglong(c.seed), ptrs, ctypes.c_long(s.n_agents),
                ctypes.c_int(64 if c.dim <= 64 else 128)]  # fmt: skip

    @staticmethod
    def _check(rc: int) -> None:
        if rc != 0:
            raise RuntimeError("emulated kernel failed (see stderr)")

    def initialize(self, config: Any, state: Any, prior_cov_root: int, prior_mean: int, diagonal: bool,
                   first: int, stream: int) -> None:
        self._check(self._lib.emu_initialize(
            *self._common(config, state), ctypes.c_size_t(prior_cov_root), ctypes.c_size_t(prior_mean),
            ctypes.c_int(int(diagonal)), ctypes.c_long(first)))  # fmt: skip

    def sample(self, config: Any, state: Any, theta: int, unit_norm: bool, stream: int) -> None:
        self._check(self._lib.emu_sample(*self._common(config, state), ctypes.c_size_t(theta),
                                         ctypes.c_int(int(unit_norm))))

    def act(self, config: Any, state: Any, actions: int, n_actions: int, per_agent: bool, mask: int,
            mask_per_agent: bool, choice: int, theta: int, saved_steps: int, errors: int, stream: int) -> None:
        if n_actions < 1:
            raise ValueError("actions: the action set is empty")
        self._check(self._lib.emu_act(
            *self._common(config, state), ctypes.c_size_t(actions), ctypes.c_long(n_actions),
            ctypes.c_int(int(per_agent)), ctypes.c_size_t(mask), ctypes.c_int(int(mask_per_agent)),
            ctypes.c_size_t(choice), ctypes.c_size_t(theta), ctypes.c_size_t(errors)))  # fmt: skip

    def update(self, config: Any, state: Any, x: int, r: int, mask: int, n_obs: int, errors: int, stream: int) -> None:
        self._check(self._lib.emu_update(
            *self._common(config, state), ctypes.c_size_t(x), ctypes.c_size_t(r), ctypes.c_size_t(mask),
            ctypes.c_long(n_obs), ctypes.c_size_t(errors)))  # fmt: skip


def install_emulated_cuda() -> None:
    """Makes ``has_cuda()`` true with the fakes above (for ENSEMBLEPP_EMULATE_CUDA=1 runs)."""
    from ensemblepp import _backend  # noqa: PLC0415

    try:
        from ensemblepp import _cuda as real  # noqa: PLC0415
    except ImportError:  # built without nvcc: the Python stand-ins take over
        real = None
    fake = EmulatedCuda(real, _build_library())
    sys.modules["cupy"] = _fake_cupy()
    _backend._probe_cuda = lambda index=0: (fake, "")


if os.environ.get("ENSEMBLEPP_EMULATE_CUDA") == "1":
    install_emulated_cuda()


@pytest.mark.slow
def test_python_stack_on_the_emulated_device() -> None:
    """test_cuda.py and the linear suite's cuda cases, on the emulated device (short runs)."""
    if _compiler() is None:
        pytest.skip("needs a C++20 compiler and POSIX ucontext (Linux)")
    env = dict(os.environ, ENSEMBLEPP_EMULATE_CUDA="1", ENSEMBLEPP_CUDA_TEST_STEPS="20",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "-p", "test_cuda_emulated", "-q", "-p", "no:cacheprovider",
           "tests/test_cuda.py", "tests/test_linear.py", "-k", "cuda and not large_dimension"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 80 and "failed" not in summary, tail
