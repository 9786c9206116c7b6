"""The CUDA kernels' per-agent bodies, run on a host emulation of a thread block (no GPU needed).

``cuda/include/ensemblepp/cuda_agent.hpp`` holds the code every CUDA block runs for one agent;
``cuda_emulation.hpp`` runs it with emulated threads (coroutines), real barriers and warp sums,
uninitialised scratch filled with NaN, and shuffled or reversed thread order between barriers,
so that a missing barrier or a race shows up as a wrong number, and a barrier reached by part
of a block as an error. The driver below compares it with the CPU drivers (``batch.hpp``) on
random problems: every policy, float64 and float32, shared and per-agent actions, action and
observation masks, several observations per call, exact ties, d and M above the block size,
sample and act_sphere, and bad input (errors reported for the right agent, state unchanged).
A second driver (``PRODUCTION_DRIVER``) does the same for the production-loop bodies
(``cuda/src/cuda_production.hpp``) against ``production.cpp``: action probabilities (random, tied
and masked action sets, shared and global scratch), ragged warm starts (against the CPU and, bit
for bit, against the update kernel row by row) and forgetting over several refresh cycles.

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
PRODUCTION_SOURCE = ROOT / "cpp/src/production.cpp"
HEADERS += [ROOT / "cuda/src/cuda_production.hpp", ROOT / "cpp/include/ensemblepp/production.hpp",
            ROOT / "cpp/src/parallel.hpp"]

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
using emu::rel_diff;
using emu::same_bits;

struct Scenario {
  const char* name;
  int policy, d, M, B, K, n_obs, steps, threads;
  int reference, perturbation, rsparse, psparse;
  bool per_agent, mask_actions, mask_obs, dense_prior;
  emu::Block::Order order;
};

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
  return emu::run_scenarios(scenarios, only, [](const Scenario& sc, auto tag) { run<decltype(tag)>(sc); });
}
"""

PRODUCTION_DRIVER = r"""
// Compares the emulated production-loop bodies (cuda_production.hpp) with the CPU drivers
// (production.hpp): action probabilities, ragged warm starts and forgetting.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ensemblepp/production.hpp"
#include "cuda_emulation.hpp"

using namespace ensemblepp;
namespace ec = ensemblepp::cuda;
namespace emu = ensemblepp::cuda::emulation;
using emu::rel_diff;
using emu::same_bits;

struct Scenario {
  const char* name;
  int policy, d, M, B, K, threads, n_samples;
  emu::Block::Order order;
};

template <class T>
struct Agents {
  std::vector<double> root, mean;
  std::vector<T> factor;
  std::vector<std::uint64_t> steps, updates;
  bool operator==(const Agents& o) const {
    return same_bits(root, o.root) && same_bits(mean, o.mean) && same_bits(factor, o.factor) &&
           steps == o.steps && updates == o.updates;
  }
};

template <class T>
int run(const Scenario& sc) {
  std::mt19937_64 rng(4321 + sc.policy * 31 + sc.d);
  std::normal_distribution<double> N(0.0, 1.0);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const long d = sc.d, M = sc.M, B = sc.B, K = sc.K;
  LinearConfig cfg;
  cfg.dim = sc.d; cfg.ensemble_size = sc.M; cfg.policy = static_cast<Policy>(sc.policy);
  cfg.reference = sc.policy == 0 ? Distribution::sphere : Distribution::gaussian;
  cfg.perturbation = Distribution::gaussian;
  cfg.noise_std = 0.7; cfg.alpha = 1.3; cfg.seed = 0x0123456789abcdefull;
  cfg.dtype = sizeof(T) == 8 ? DType::float64 : DType::float32;
  const bool has_f = has_factor(cfg.policy);

  // A dense prior: lower L0 (Sigma_0 = L0^T L0), mu0, and the forgetting directions r_k, the
  // columns of L0^-1 (P_0 = L0^-1 L0^-T = sum_k r_k r_k^T), with targets r_k . mu_0.
  std::vector<double> L0(d * d, 0.0), mu0(d), Linv(d * d, 0.0), dirs(d * d), targets(d, 0.0);
  for (long i = 0; i < d; ++i) {
    mu0[i] = N(rng);
    L0[i * d + i] = 0.5 + U(rng);
    for (long j = 0; j < i; ++j) L0[i * d + j] = 0.3 * N(rng);
  }
  for (long k = 0; k < d; ++k)  // column k of L0^-1 by forward substitution
    for (long i = k; i < d; ++i) {
      double acc = i == k ? 1.0 : 0.0;
      for (long j = k; j < i; ++j) acc -= L0[i * d + j] * Linv[j * d + k];
      Linv[i * d + k] = acc / L0[i * d + i];
    }
  for (long k = 0; k < d; ++k)
    for (long i = 0; i < d; ++i) dirs[k * d + i] = Linv[i * d + k];
  for (long k = 0; k < d; ++k)
    for (long i = 0; i < d; ++i) targets[k] += dirs[k * d + i] * mu0[i];
  const Prior prior{L0.data(), mu0.data(), false};
  std::vector<std::uint64_t> ids(B);
  for (long b = 0; b < B; ++b) ids[b] = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(b + 3);

  Agents<T> cpu;
  cpu.root.assign(B * d * d, 0.0); cpu.mean.assign(B * d, 0.0);
  cpu.factor.assign(has_f ? B * d * M : 0, T(0)); cpu.steps.assign(B, 0); cpu.updates.assign(B, 0);
  auto cstate = [&](Agents<T>& h) {
    return BatchState<T>{h.root.data(), h.mean.data(), has_f ? h.factor.data() : nullptr, h.steps.data(),
                         ids.data(), B};
  };
  auto gstate = [&](Agents<T>& h) {
    return ec::detail::Batch<T>{h.root.data(), h.mean.data(), has_f ? h.factor.data() : nullptr,
                                h.steps.data(), ids.data(), nullptr, B, 0};
  };
  initialize(cfg, cstate(cpu), prior, 0);
  // A few observations on the CPU first, so that the posteriors differ from the prior.
  {
    std::vector<T> x(B * 3 * d), r(B * 3);
    for (auto& v : x) v = T(N(rng));
    for (auto& v : r) v = T(N(rng));
    update(cfg, cstate(cpu), x.data(), r.data(), nullptr, 3);
  }
  emu::Block block(sc.threads, sc.order, 99);
  unsigned long long err[3];

  // ---- action probabilities: random, tied (identical actions) and masked action sets -----------
  Agents<T> gpu = cpu;
  double prob = 0, prob_sum = 0, ties = 0;
  int prob_steps = 0;
  for (int rep = 0; rep < 4; ++rep) {
    const bool per_agent = rep % 2 == 1, global = rep >= 2;
    const long XA = per_agent ? B : 1;
    std::vector<T> X(XA * K * d);
    for (auto& v : X) v = T(N(rng));
    if (rep == 1)  // actions 1 and 2 equal: their scores tie in every draw
      for (long a = 0; a < XA; ++a)
        for (long i = 0; i < d; ++i) X[(a * K + 2) * d + i] = X[(a * K + 1) * d + i];
    std::vector<std::uint8_t> mask(B * K, 1);
    if (rep >= 2)
      for (long b = 0; b < B; ++b) {
        for (long k = 0; k < K; ++k) mask[b * K + k] = U(rng) < 0.6;
        mask[b * K + (rep + b) % K] = 1;
      }
    const std::uint8_t* mp = rep >= 2 ? mask.data() : nullptr;
    emu::Kernels<T> kern(cfg, gstate(gpu), block, global);
    for (int first = 0; first < 2; ++first) {
      std::vector<double> pc(B * K, -1.0), pg(B * K, -1.0);
      action_probabilities(cfg, cstate(cpu), ActionSet<T>{X.data(), K, per_agent, mp, true}, sc.n_samples,
                           first == 1, pc.data());
      kern.action_probabilities(X.data(), K, per_agent, mp, true, sc.n_samples, first == 1, pg.data(), err);
      if (rep == 1)  // the tied pair: equal halves when split, all to the lower index otherwise
        for (long b = 0; b < B; ++b)
          ties = std::max(ties, first ? pg[b * K + 2] : std::abs(pg[b * K + 1] - pg[b * K + 2]));
      if (err[0] != ec::kNoError || err[1] != ec::kNoError || err[2] != ec::kNoError) prob = INFINITY;
      for (long i = 0; i < B * K; ++i) prob = std::max(prob, std::abs(pg[i] - pc[i]));
      for (long b = 0; b < B; ++b) {
        double s = 0;
        for (long k = 0; k < K; ++k) s += pg[b * K + k];
        prob_sum = std::max(prob_sum, std::abs(s - 1.0));
      }
    }
    prob_steps += !(gpu == cpu);  // estimating never moves a counter or the state
  }
  // Bad input: every action of the last agent masked, a NaN action, a non-finite state.
  bool prob_errors = true;
  {
    emu::Kernels<T> kern(cfg, gstate(gpu), block);
    std::vector<T> X(K * d, T(0.25));
    std::vector<double> out(B * K);
    std::vector<std::uint8_t> mask(B * K, 1);
    for (long k = 0; k < K; ++k) mask[(B - 1) * K + k] = 0;
    kern.action_probabilities(X.data(), K, false, mask.data(), true, sc.n_samples, false, out.data(), err);
    prob_errors = prob_errors && err[0] == static_cast<unsigned long long>(B - 1) && err[1] == ec::kNoError;
    X[(K - 1) * d] = std::numeric_limits<T>::quiet_NaN();
    kern.action_probabilities(X.data(), K, false, nullptr, false, sc.n_samples, false, out.data(), err);
    prob_errors = prob_errors && err[1] == 0 && err[0] == ec::kNoError && err[2] == ec::kNoError;
    Agents<T> bad = gpu;
    bad.mean[(B - 1) * d] = std::numeric_limits<double>::quiet_NaN();
    emu::Kernels<T> kb(cfg, gstate(bad), block);
    X[(K - 1) * d] = T(0.25);
    kb.action_probabilities(X.data(), K, false, nullptr, false, sc.n_samples, false, out.data(), err);
    prob_errors = prob_errors && err[2] == static_cast<unsigned long long>(B - 1) && err[1] == ec::kNoError;
  }

  // ---- ragged warm start: rows 0, 5, 2, ... per agent, some masked ------------------------------
  std::vector<std::int64_t> offsets(B + 1, 0);
  for (long b = 0; b < B; ++b) offsets[b + 1] = offsets[b] + (b % 3 == 0 ? (b ? 4 : 0) : (b % 3 == 1 ? 5 : 2));
  const long n_rows = offsets[B];
  std::vector<T> x(n_rows * d), r(n_rows);
  std::vector<std::uint8_t> om(n_rows);
  for (long i = 0; i < n_rows; ++i) {
    for (long j = 0; j < d; ++j) x[i * d + j] = (j % 4 == 1) ? T(0) : T(N(rng));
    r[i] = T(N(rng));
    om[i] = U(rng) < 0.8;
  }
  Agents<T> rc = cpu, rg = cpu, rs = cpu;
  update_ragged(cfg, cstate(rc), nullptr, x.data(), r.data(), om.data(), offsets.data(), n_rows);
  {
    emu::Kernels<T> kern(cfg, gstate(rg), block, sizeof(T) == 4);
    kern.update_ragged(1.0, nullptr, nullptr, nullptr, x.data(), r.data(), om.data(), offsets.data(), n_rows, err);
  }
  const bool ragged_err = err[0] == ec::kNoError && err[1] == ec::kNoError;
  const double ragged = std::max({rel_diff(rg.root, rc.root), rel_diff(rg.mean, rc.mean),
                                  has_f ? rel_diff(rg.factor, rc.factor) : 0.0}) + (rg.steps != rc.steps ? 1.0 : 0.0);
  // Step by step with the update kernel (one row of one agent per call): the same bits.
  {
    emu::Kernels<T> kern(cfg, gstate(rs), block, sizeof(T) == 4);
    for (long b = 0; b < B; ++b)
      for (long i = offsets[b]; i < offsets[b + 1]; ++i) {
        std::vector<T> xs(B * d, T(0)), rs1(B, T(0));
        std::vector<std::uint8_t> ms(B, 0);
        for (long j = 0; j < d; ++j) xs[b * d + j] = x[i * d + j];
        rs1[b] = r[i];
        ms[b] = om[i];
        kern.update(xs.data(), rs1.data(), ms.data(), 1, err);
      }
  }
  const bool ragged_bits = rs == rg;

  // ---- forgetting: several refresh cycles, CPU against the emulated kernel ---------------------
  const double gamma = 0.8;
  const long per = 3 * d + 2;
  std::vector<std::int64_t> foff(B + 1);
  for (long b = 0; b <= B; ++b) foff[b] = b * per;
  std::vector<T> fx(B * per * d), fr(B * per);
  for (auto& v : fx) v = T(N(rng));
  for (auto& v : fr) v = T(N(rng));
  Agents<T> fc = cpu, fg = cpu;
  Forgetting forget{gamma, dirs.data(), targets.data(), fc.updates.data()};
  double forget_diff = 0;
  bool forget_err = true;
  for (int call = 0; call < 2; ++call) {  // two calls: the counters carry over
    update_ragged(cfg, cstate(fc), &forget, fx.data(), fr.data(), nullptr, foff.data(), B * per);
    emu::Kernels<T> kern(cfg, gstate(fg), block, call == 1);
    kern.update_ragged(gamma, dirs.data(), targets.data(), fg.updates.data(), fx.data(), fr.data(), nullptr,
                       foff.data(), B * per, err);
    forget_err = forget_err && err[0] == ec::kNoError && err[1] == ec::kNoError;
    forget_diff = std::max({forget_diff, rel_diff(fg.root, fc.root), rel_diff(fg.mean, fc.mean),
                            has_f ? rel_diff(fg.factor, fc.factor) : 0.0});
  }
  const int forget_counters = (fg.steps != fc.steps) + (fg.updates != fc.updates) +
                              (fc.updates[0] != static_cast<std::uint64_t>(2 * per));
  // Forgetting changed the state compared with no forgetting (the mutant gamma = 1 fails here).
  Agents<T> nf = cpu;
  {
    emu::Kernels<T> kern(cfg, gstate(nf), block);
    kern.update_ragged(1.0, nullptr, nullptr, nullptr, fx.data(), fr.data(), nullptr, foff.data(), B * per, err);
  }
  const double forget_effect = rel_diff(nf.mean, fg.mean);

  // ---- bad rows: the row's key, nothing changes ---------------------------------------------
  Agents<T> before = fg;
  std::vector<T> bx(n_rows * d, T(0.1)), br(n_rows, T(1));
  const long bad_row = offsets[B] - 1;
  bx[bad_row * d + d - 1] = std::numeric_limits<T>::quiet_NaN();
  {
    emu::Kernels<T> kern(cfg, gstate(fg), block);
    kern.update_ragged(gamma, dirs.data(), targets.data(), fg.updates.data(), bx.data(), br.data(), nullptr,
                       offsets.data(), n_rows, err);
  }
  bool x_err = err[0] == 2ull * bad_row + 1;
  bx[bad_row * d + d - 1] = T(0.1);
  br[bad_row] = std::numeric_limits<T>::infinity();
  {
    emu::Kernels<T> kern(cfg, gstate(fg), block);
    kern.update_ragged(1.0, nullptr, nullptr, nullptr, bx.data(), br.data(), nullptr, offsets.data(), n_rows, err);
  }
  const bool r_err = err[0] == 2ull * bad_row;
  const bool unchanged = before == fg;

  std::printf("%s %s prob=%.3e prob_sum=%.3e ties=%.3e prob_steps=%d prob_errors=%d ragged=%.3e "
              "ragged_err=%d ragged_bits=%d forget=%.3e forget_err=%d forget_counters=%d "
              "forget_effect=%.3e x_err=%d r_err=%d unchanged=%d\n",
              sc.name, sizeof(T) == 8 ? "float64" : "float32", prob, prob_sum, ties, prob_steps, prob_errors,
              ragged, ragged_err, ragged_bits, forget_diff, forget_err, forget_counters, forget_effect, x_err,
              r_err, unchanged);
  return 0;
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  using O = emu::Block::Order;
  // One scenario per policy, plus d and M above the block size (thompson_wide, ensemble_wide).
  const Scenario scenarios[] = {
      // name             pol  d   M  B  K  thr samples order
      {"ensemble",          0, 5,  4, 4, 6, 64, 300, O::shuffled},
      {"ensemble_wide",     0, 40, 36, 2, 3, 32, 40, O::reverse},
      {"thompson",          1, 6,  1, 4, 5, 64, 300, O::reverse},
      {"thompson_wide",     1, 35, 1, 2, 4, 32, 40, O::shuffled},
      {"ensemble_sampling", 2, 5,  8, 4, 6, 64, 1, O::shuffled},
      {"ucb",               3, 5,  1, 4, 7, 64, 1, O::reverse},
      {"greedy",            4, 4,  1, 4, 6, 32, 1, O::shuffled},
  };
  return emu::run_scenarios(scenarios, only, [](const Scenario& sc, auto tag) { run<decltype(tag)>(sc); });
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
using emu::rel_diff;
using emu::same_bits;
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

int emu_update_ragged(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
                      long B, int threads, double gamma, std::uintptr_t dirs, std::uintptr_t targets,
                      std::uintptr_t updates, std::uintptr_t x, std::uintptr_t r, std::uintptr_t mask,
                      std::uintptr_t offsets, long n_rows, std::uintptr_t errors) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto tag) {
    using T = decltype(tag);
    k.update_ragged(gamma, reinterpret_cast<const double*>(dirs), reinterpret_cast<const double*>(targets),
                    reinterpret_cast<std::uint64_t*>(updates), reinterpret_cast<const T*>(x),
                    reinterpret_cast<const T*>(r), reinterpret_cast<const std::uint8_t*>(mask),
                    reinterpret_cast<const std::int64_t*>(offsets), n_rows,
                    reinterpret_cast<unsigned long long*>(errors));
  });
}

int emu_action_probabilities(const int* ci, const double* cd, unsigned long long seed, const std::uintptr_t* s,
                             long B, int threads, std::uintptr_t X, long K, int per_agent, std::uintptr_t mask,
                             int mask_per_agent, long n_samples, int ties_first, std::uintptr_t out,
                             std::uintptr_t errors) {
  const ec::Config c = make(ci, cd, seed);
  return dispatch(c, s, B, threads, [&](auto& k, auto tag) {
    using T = decltype(tag);
    k.action_probabilities(reinterpret_cast<const T*>(X), K, per_agent != 0,
                           reinterpret_cast<const std::uint8_t*>(mask), mask_per_agent != 0, n_samples,
                           ties_first != 0, reinterpret_cast<double*>(out),
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


def _build_drivers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compiles both drivers (once per source version, cached): {"step": exe, "production": exe}.

    The four translation units (batch.cpp, production.cpp and the two drivers; the CPU sources
    dominate) are compiled by parallel compiler processes and linked into the two executables.
    """
    cxx = _compiler()
    if cxx is None:
        pytest.skip("needs a C++20 compiler and POSIX ucontext (Linux)")
    eigen = _eigen_include()
    if eigen is None:
        pytest.skip("Eigen headers not found (pip install cmeel-eigen)")
    cache_plugin = getattr(request.config, "cache", None)
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir("ensemblepp_cuda_emulation"))
    else:
        cache = tmp_path_factory.mktemp("ensemblepp_cuda_emulation")
    flags = ["-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-I", str(ROOT / "cpp/include"), "-I", str(ROOT / "cuda/include"),
             "-I", str(ROOT / "cuda/src"), "-I", str(ROOT / "tests"), "-I", eigen]
    headers = hashlib.sha256(" ".join(flags).encode())
    for p in HEADERS:
        headers.update(p.read_bytes())
    # The CPU sources compile in place (they include their neighbours), the drivers from the cache.
    units = {"batch": CPU_SOURCE, "production": PRODUCTION_SOURCE, "step_driver": DRIVER,
             "production_driver": PRODUCTION_DRIVER}
    objects, jobs = {}, []
    for name, unit in units.items():
        text = unit.read_text() if isinstance(unit, Path) else unit
        digest = headers.copy()
        digest.update(text.encode())
        obj = cache / f"{name}-{digest.hexdigest()[:16]}.o"
        objects[name] = obj
        if not obj.exists():
            src = unit if isinstance(unit, Path) else obj.with_suffix(".cpp")
            if not isinstance(unit, Path):
                src.write_text(text)
            jobs.append((obj, subprocess.Popen([cxx, *flags, "-c", str(src), "-o", str(obj) + ".tmp"],
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for obj, job in jobs:
        _, err = job.communicate()
        assert job.returncode == 0, err[-4000:]
        os.replace(str(obj) + ".tmp", obj)
    exes = {}
    for kind, parts in (("step", ["step_driver", "batch"]), ("production", ["production_driver", "batch", "production"])):
        exe = cache / ("driver-" + "-".join(objects[p].stem.rsplit("-", 1)[1] for p in parts))
        if not exe.exists():
            link = subprocess.run([cxx, *(str(objects[p]) for p in parts), "-o", str(exe) + ".tmp"],
                                  capture_output=True, text=True)
            assert link.returncode == 0, link.stderr[-4000:]
            os.replace(str(exe) + ".tmp", exe)
        exes[kind] = exe
    return exes


def _run_driver(exe: Path) -> dict[str, dict[str, float]]:
    """Runs a driver; results by 'name dtype'."""
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    results: dict[str, dict[str, float]] = {}
    for line in run.stdout.splitlines():
        name, kind, *fields = line.split()
        assert kind != "error", line
        results[f"{name} {kind}"] = {k: float(v) for k, v in (f.split("=") for f in fields)}
    return results


@pytest.fixture(scope="module")
def drivers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build_drivers(request, tmp_path_factory)


@pytest.fixture(scope="module")
def emulation(drivers: dict[str, Path]) -> dict[str, dict[str, float]]:
    """The DRIVER's results (the step kernels against batch.cpp)."""
    return _run_driver(drivers["step"])


@pytest.fixture(scope="module")
def production_emulation(drivers: dict[str, Path]) -> dict[str, dict[str, float]]:
    """The PRODUCTION_DRIVER's results (cuda_production.hpp against production.cpp)."""
    return _run_driver(drivers["production"])


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


PRODUCTION_SCENARIOS = ["ensemble", "ensemble_wide", "thompson", "thompson_wide", "ensemble_sampling", "ucb", "greedy"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scenario", PRODUCTION_SCENARIOS)
def test_emulated_production_kernels_match_the_cpu(production_emulation: dict, scenario: str, dtype: str) -> None:
    r = production_emulation[f"{scenario} {dtype}"]
    # Action probabilities: the CPU's numbers from the same draws (the counts agree; a float32
    # score within rounding of another could move one vote, which these problems do not have).
    # Equal actions included: both sides score every row by the same loop, so ties split alike.
    assert r["prob"] <= 1e-12, r
    assert r["prob_sum"] <= 1e-12, r  # rows sum to 1
    assert r["ties"] <= 1e-12, r  # tied actions: equal halves when split, 0 for the higher one when "first"
    assert r["prob_steps"] == 0, r  # estimating changes no counter and no state
    assert r["prob_errors"] == 1, r  # all masked, NaN action, NaN state: the right slot and agent
    # Ragged warm start: the CPU's update_ragged, and bit for bit the update kernel row by row.
    assert r["ragged"] <= TOLERANCE[dtype], r
    assert r["ragged_err"] == 1 and r["ragged_bits"] == 1, r
    # Forgetting: the CPU's exact form over several refresh cycles and two calls.
    assert r["forget"] <= TOLERANCE[dtype], r
    assert r["forget_err"] == 1 and r["forget_counters"] == 0, r
    assert r["forget_effect"] > 1e-3, r  # and it is not the plain update
    for flag in ("x_err", "r_err", "unchanged"):
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
        # The emulated blocks keep their scratch on the host: no device workspace is needed.
        self.ragged_workspace_size = lambda config, forgets: 0
        self.probability_workspace_size = lambda config, n_actions: 0

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

    def update_ragged(self, config: Any, state: Any, gamma: float, dirs: int, targets: int, updates: int, x: int,
                      r: int, mask: int, offsets: int, n_rows: int, work: int, errors: int, stream: int) -> None:
        self._check(self._lib.emu_update_ragged(
            *self._common(config, state), ctypes.c_double(gamma), ctypes.c_size_t(dirs), ctypes.c_size_t(targets),
            ctypes.c_size_t(updates), ctypes.c_size_t(x), ctypes.c_size_t(r), ctypes.c_size_t(mask),
            ctypes.c_size_t(offsets), ctypes.c_long(n_rows), ctypes.c_size_t(errors)))  # fmt: skip

    def action_probabilities(self, config: Any, state: Any, actions: int, n_actions: int, per_agent: bool,
                             mask: int, mask_per_agent: bool, n_samples: int, ties_first: bool, out: int, work: int,
                             errors: int, stream: int) -> None:
        if n_actions < 1:
            raise ValueError("actions: the action set is empty")
        self._check(self._lib.emu_action_probabilities(
            *self._common(config, state), ctypes.c_size_t(actions), ctypes.c_long(n_actions),
            ctypes.c_int(int(per_agent)), ctypes.c_size_t(mask), ctypes.c_int(int(mask_per_agent)),
            ctypes.c_long(n_samples), ctypes.c_int(int(ties_first)), ctypes.c_size_t(out),
            ctypes.c_size_t(errors)))  # fmt: skip


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
