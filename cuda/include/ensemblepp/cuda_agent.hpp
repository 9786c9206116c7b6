/// @file cuda_agent.hpp
/// Bodies of the CUDA kernels: the work of one thread block on one agent, and the grid loops.
///
/// Private to cuda/src (not part of the public API). The bodies are written against a small
/// execution context `Ctx` (thread and block index, block and grid size, barrier, warp sum,
/// atomic minimum) so that the CUDA kernels (cuda/src/linear_kernels.cu, thin wrappers) and a
/// host emulation of thread blocks (cuda_emulation.hpp), used to test the index arithmetic and
/// the barriers without a GPU, run the same code.
///
/// They reproduce ensemblepp/linear.hpp operation by operation: the same random draws from the
/// same counters, the same formulas evaluated in T, only the order of the terms of the dot
/// products differs (parallel reductions), which changes results at rounding level.
///
/// Preconditions of every body: the block size is a multiple of 32, every thread of the block
/// calls it with the same arguments, and `vec` points to 3 max(d, M) elements of scratch that
/// no other block uses.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>

#include "ensemblepp/config.hpp"
#include "ensemblepp/cuda_api.hpp"
#include "ensemblepp/distributions.hpp"
#include "ensemblepp/philox.hpp"

#if defined(__CUDACC__)
#define EPP_BODY __device__ __forceinline__
#define EPP_UNROLL _Pragma("unroll")
#else
#define EPP_BODY inline
#define EPP_UNROLL
#endif

namespace ensemblepp::cuda::detail {

constexpr int kWarp = 32;
constexpr int kEnsemble = 0, kThompson = 1, kEnsembleSampling = 2, kUcb = 3, kGreedy = 4;

EPP_HD float m_sqrt(float x) { return sqrtf(x); }
EPP_HD double m_sqrt(double x) { return sqrt(x); }
EPP_HD float m_hypot(float a, float b) { return hypotf(a, b); }
EPP_HD double m_hypot(double a, double b) { return hypot(a, b); }

// Exponent bits all set means inf or NaN; a bit test cannot be optimised away.
EPP_HD bool is_finite(double x) {
  std::uint64_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}
EPP_HD bool is_finite(float x) {
  std::uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x7f800000u) != 0x7f800000u;
}

/// Pointers to one agent's state (layout of linear.hpp).
template <class T>
struct Agent {
  T* mu;
  T* cov;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// Device pointers of the whole batch, typed.
template <class T>
struct Batch {
  T* mu;
  T* cov;
  T* factor;
  std::uint64_t* steps;
  const std::uint64_t* stream_ids;
  T* work;
  long n_agents;
  long width;  ///< scratch elements per agent in work (when the block does not use shared memory)

  EPP_HD Agent<T> agent(const Config& c, long b) const {
    const long d = c.dim, M = c.ensemble_size;
    return Agent<T>{mu + b * d, cov + b * d * d, factor ? factor + b * d * M : nullptr, steps + b,
                    stream_ids[b]};
  }
};

/// Block-shared scratch for reductions across warps, 32 entries each.
template <class T>
struct Reduce {
  T* value;
  long long* index;
  int* flags;
};

/// Width of the per-agent scratch vector `vec`, in elements.
inline long scratch_width(const Config& c) {
  return 3L * (c.dim > c.ensemble_size ? c.dim : c.ensemble_size);
}

/// Sum of v over the block, returned to every thread (same bits everywhere).
template <class T, class Ctx>
EPP_BODY T block_sum(Ctx& c, T v, T* red) {
  v = c.warp_sum(v);
  c.sync();  // the previous call's readers of red are done
  if (c.lane() == 0) red[c.warp()] = v;
  c.sync();
  T total = T(0);
  for (int w = 0; w < c.nwarps(); ++w) total += red[w];
  return total;
}

/// Gaussian draw of length n at scale @p scale into out, the pairs spread over the threads.
/// Same numbers as draw<T>(Distribution::gaussian, n, 1, scale, stream, out).
template <class T, class Ctx>
EPP_BODY void draw_gaussian(Ctx& c, int n, double scale, const Stream& stream, T* out) {
  for (int j = c.tid(); 2 * j < n; j += c.nthreads()) {
    double a, b;
    normal_pair(stream.block(static_cast<std::uint32_t>(j)), a, b);
    out[2 * j] = static_cast<T>(a);
    if (2 * j + 1 < n) out[2 * j + 1] = static_cast<T>(b);
  }
  c.sync();
  const double f = scale / sqrt(static_cast<double>(n));
  for (int i = c.tid(); i < n; i += c.nthreads())
    out[i] = static_cast<T>(static_cast<double>(out[i]) * f);
  c.sync();
}

/// Solves U sol = g for upper-triangular U (d, d) by back substitution; g is destroyed.
/// Column-oriented: once sol[i] is known, every thread removes it from its rows j < i.
template <class T, class Ctx>
EPP_BODY void solve_upper(Ctx& c, const T* U, int d, T* g, T* sol) {
  for (int i = d - 1; i >= 0; --i) {
    // g[i] is final: its last change happened before the previous barrier.
    const T si = g[i] / U[static_cast<long>(i) * d + i];
    if (c.tid() == 0) sol[i] = si;
    for (int j = c.tid(); j < i; j += c.nthreads()) g[j] -= U[static_cast<long>(j) * d + i] * si;
    c.sync();
  }
}

/// Solves U^T sol = g (forward substitution with the lower factor U^T); g is destroyed.
template <class T, class Ctx>
EPP_BODY void solve_upper_transposed(Ctx& c, const T* U, int d, T* g, T* sol) {
  for (int i = 0; i < d; ++i) {
    const T* row = U + static_cast<long>(i) * d;  // column i of U^T
    const T si = g[i] / row[i];
    if (c.tid() == 0) sol[i] = si;
    for (int j = i + 1 + c.tid(); j < d; j += c.nthreads()) g[j] -= row[j] * si;
    c.sync();
  }
}

/// U^T U + v v^T by Givens rotations, as cholesky_update_upper in linear.hpp; v is destroyed.
template <class T, class Ctx>
EPP_BODY void cholesky_update_upper(Ctx& c, T* U, T* v, int d) {
  for (int k = 0; k < d; ++k) {
    T* row = U + static_cast<long>(k) * d;
    const T ukk = row[k], vk = v[k];
    const T r = m_hypot(ukk, vk);
    const T cs = r / ukk, sn = vk / ukk;
    c.sync();  // every thread has read row[k] before it is overwritten
    if (c.tid() == 0) row[k] = r;
    for (int i = k + 1 + c.tid(); i < d; i += c.nthreads()) {
      const T ri = (row[i] + sn * v[i]) / cs;
      row[i] = ri;
      v[i] = cs * v[i] - sn * ri;
    }
    c.sync();
  }
}

/// theta of one agent (sample_theta in linear.hpp) into theta (d); tmp holds 2 max(d, M).
/// Advances @p step (held identically by every thread) once per random vector. Ends with a
/// barrier, after which theta is complete.
template <class T, class Ctx>
EPP_BODY void theta_of(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step, T* theta,
                       T* tmp) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  switch (cfg.policy) {
    case kEnsemble: {
      T* zeta = tmp;
      if (c.tid() == 0) {
        const Stream st{cfg.seed, step, a.stream};
        draw<T>(static_cast<Distribution>(cfg.reference), M, cfg.reference_sparsity,
                sqrt(static_cast<double>(M)), st, zeta);
      }
      ++step;
      c.sync();
      for (int i = c.tid(); i < d; i += c.nthreads()) {
        const T* row = a.factor + static_cast<long>(i) * M;
        T acc = T(0);
        for (int m = 0; m < M; ++m) acc += row[m] * zeta[m];
        theta[i] = a.mu[i] + acc;
      }
      break;
    }
    case kThompson: {
      // theta = mu + U^{-1} g has covariance U^{-1} U^{-T} = P^{-1} = Sigma.
      T* g = tmp;
      T* sol = tmp + d;
      draw_gaussian(c, d, sqrt(static_cast<double>(d)), Stream{cfg.seed, step, a.stream}, g);
      ++step;
      solve_upper(c, a.cov, d, g, sol);
      for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = a.mu[i] + sol[i];
      break;
    }
    case kEnsembleSampling: {
      const std::uint32_t m =
          draw_index(Stream{cfg.seed, step, a.stream}, static_cast<std::uint32_t>(M));
      ++step;
      for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = a.factor[static_cast<long>(i) * M + m];
      break;
    }
    default:  // ucb, greedy: the mean
      for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = a.mu[i];
      break;
  }
  c.sync();
}

/// One posterior draw (or the unit action theta / |theta|) of one agent into out (d).
template <class T, class Ctx>
EPP_BODY void sample_agent(Ctx& c, const Config& cfg, const Agent<T>& a, T* vec,
                           const Reduce<T>& red, T* out, bool unit_norm) {
  const int d = cfg.dim;
  std::uint64_t step = *a.step;
  T* theta = vec;
  theta_of(c, cfg, a, step, theta, vec + d);
  if (unit_norm) {
    T sq = T(0);
    for (int i = c.tid(); i < d; i += c.nthreads()) sq += theta[i] * theta[i];
    sq = block_sum(c, sq, red.value);
    const T n = m_sqrt(sq);
    // theta = 0 makes every unit vector optimal: pick e_1, as the CPU does.
    for (int i = c.tid(); i < d; i += c.nthreads())
      out[i] = n > T(0) ? theta[i] / n : (i == 0 ? T(1) : T(0));
  } else {
    for (int i = c.tid(); i < d; i += c.nthreads()) out[i] = theta[i];
  }
  c.sync();  // every thread has read *a.step and vec
  if (c.tid() == 0) *a.step = step;
}

/// Samples theta, scores the actions X (K, d) of one agent and writes the argmax (ties to the
/// lowest index, -1 when nothing was chosen) to *choice, the counter before the call to *saved,
/// and the agent index @p b to errors[0] (every action masked out) or errors[1] (a NaN or
/// infinite score) by atomic minimum.
/// @tparam Ucb the LinUCB scoring (a separate instantiation, so that its registers do not lower
///             the occupancy of the other policies' act kernels).
template <bool Ucb, class T, class Ctx>
EPP_BODY void act_agent(Ctx& c, const Config& cfg, const Agent<T>& a, T* vec, const Reduce<T>& red,
                        const T* X, long K, const std::uint8_t* mask, T* theta_out,
                        std::int64_t* choice, std::uint64_t* saved, unsigned long long* errors,
                        long b) {
  const int d = cfg.dim;
  const std::uint64_t step0 = *a.step;
  std::uint64_t step = step0;
  T* theta = vec;
  theta_of(c, cfg, a, step, theta, vec + d);
  for (int i = c.tid(); i < d; i += c.nthreads()) theta_out[i] = theta[i];

  // One warp per action: the lanes split the features, so every load of X is coalesced.
  // Each warp sees its actions in increasing k, so keeping the first maximum breaks ties to the
  // lowest index.
  T best = T(0);
  long long best_k = -1;
  bool available = false, bad = false;
  if (!Ucb) {
    for (long k = c.warp(); k < K; k += c.nwarps()) {
      if (mask && !mask[k]) continue;
      available = true;
      const T* xk = X + k * d;
      T acc = T(0);
      for (int i = c.lane(); i < d; i += kWarp) acc += xk[i] * theta[i];
      const T s = c.warp_sum(acc);
      if (!is_finite(s)) {
        bad = true;
        continue;
      }
      if (best_k < 0 || s > best) {
        best = s;
        best_k = k;
      }
    }
  } else {
    // LinUCB: x^T Sigma x = sum_j (sum_i x_i Sigma_ij) x_j, lane-parallel over j, for kGroup
    // actions k0, k0 + nwarps, ... at once so that each pass over Sigma serves all of them.
    constexpr int kGroup = 4;
    const T alpha = static_cast<T>(cfg.alpha);
    const long nw = c.nwarps();
    for (long k0 = c.warp(); k0 < K; k0 += kGroup * nw) {
      const T* xs[kGroup];
      bool on[kGroup];
      T dot[kGroup], quad[kGroup];
      EPP_UNROLL
      for (int g = 0; g < kGroup; ++g) {
        const long k = k0 + g * nw;
        on[g] = k < K && !(mask && !mask[k]);
        xs[g] = on[g] ? X + k * d : X;
        T acc = T(0);
        if (on[g])
          for (int i = c.lane(); i < d; i += kWarp) acc += xs[g][i] * theta[i];
        dot[g] = c.warp_sum(acc);
        quad[g] = T(0);
      }
      for (int j = c.lane(); j < d; j += kWarp) {
        T y[kGroup];
        EPP_UNROLL
        for (int g = 0; g < kGroup; ++g) y[g] = T(0);
        for (int i = 0; i < d; ++i) {
          const T sij = a.cov[static_cast<long>(i) * d + j];
          EPP_UNROLL
          for (int g = 0; g < kGroup; ++g) y[g] += xs[g][i] * sij;
        }
        EPP_UNROLL
        for (int g = 0; g < kGroup; ++g) quad[g] += y[g] * xs[g][j];
      }
      EPP_UNROLL
      for (int g = 0; g < kGroup; ++g) quad[g] = c.warp_sum(quad[g]);
      for (int g = 0; g < kGroup; ++g) {
        if (!on[g]) continue;
        available = true;
        T s = dot[g];
        s += alpha * m_sqrt(quad[g] > T(0) ? quad[g] : T(0));
        if (!is_finite(s)) {
          bad = true;
          continue;
        }
        if (best_k < 0 || s > best) {
          best = s;
          best_k = k0 + g * nw;
        }
      }
    }
  }
  c.sync();
  if (c.lane() == 0) {
    red.value[c.warp()] = best;
    red.index[c.warp()] = best_k;
    red.flags[c.warp()] = (available ? 1 : 0) | (bad ? 2 : 0);
  }
  c.sync();
  if (c.tid() == 0) {
    T v = T(0);
    long long kk = -1;
    int flags = 0;
    for (int w = 0; w < c.nwarps(); ++w) {
      flags |= red.flags[w];
      const long long kw = red.index[w];
      if (kw >= 0 && (kk < 0 || red.value[w] > v || (red.value[w] == v && kw < kk))) {
        v = red.value[w];
        kk = kw;
      }
    }
    *choice = kk;
    *saved = step0;
    *a.step = step;
    if (!(flags & 1))
      c.atomic_min(&errors[0], static_cast<unsigned long long>(b));
    else if (flags & 2)
      c.atomic_min(&errors[1], static_cast<unsigned long long>(b));
  }
  c.sync();
}

/// observe() of linear.hpp for Ensemble++, ensemble sampling, LinUCB and greedy:
/// u = Sigma x, rank-one updates of mu, Sigma and (for the first two) the factor.
template <class T, class Ctx>
EPP_BODY void observe_gaussian(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step,
                               T eta, const T* x, T r, T* vec, const Reduce<T>& red) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int tid = c.tid(), nt = c.nthreads(), lane = c.lane(), warp = c.warp(), nw = c.nwarps();
  const bool has_factor = cfg.policy == kEnsemble || cfg.policy == kEnsembleSampling;
  T* u = vec;
  T* w = vec + d;
  for (int i = warp; i < d; i += nw) {
    const T* row = a.cov + static_cast<long>(i) * d;
    T acc = T(0);
    for (int k = lane; k < d; k += kWarp) acc += row[k] * x[k];
    acc = c.warp_sum(acc);
    if (lane == 0) u[i] = acc;
  }
  if (has_factor) {
    if (tid == 0) {
      const Stream st{cfg.seed, step, a.stream};
      if (cfg.policy == kEnsemble) {
        // A <- A + k (eta z - A^T x)^T
        draw<T>(static_cast<Distribution>(cfg.perturbation), M, cfg.perturbation_sparsity, 1.0, st, w);
        for (int m = 0; m < M; ++m) w[m] = w[m] * eta;
      } else {
        // theta_m <- theta_m + k (r + w_m - x.theta_m), w_m ~ N(0, eta^2)
        draw<T>(Distribution::gaussian, M, 1, sqrt(static_cast<double>(M)), st, w);
        for (int m = 0; m < M; ++m) w[m] = w[m] * eta + r;
      }
    }
    ++step;
  }
  c.sync();
  T xu = T(0), xm = T(0);
  for (int i = tid; i < d; i += nt) {
    xu += x[i] * u[i];
    xm += x[i] * a.mu[i];
  }
  xu = block_sum(c, xu, red.value);
  xm = block_sum(c, xm, red.value);
  const T denom = eta * eta + xu;
  const T innovation = r - xm;
  if (has_factor) {
    for (int m = warp; m < M; m += nw) {
      T acc = T(0);
      for (int i = lane; i < d; i += kWarp) acc += a.factor[static_cast<long>(i) * M + m] * x[i];
      acc = c.warp_sum(acc);
      if (lane == 0) w[m] -= acc;
    }
    c.sync();  // w complete, and every read of the old factor done
    for (int i = warp; i < d; i += nw) {
      const T ki = u[i] / denom;
      T* row = a.factor + static_cast<long>(i) * M;
      for (int m = lane; m < M; m += kWarp) row[m] += ki * w[m];
    }
  }
  const T gain = innovation / denom;
  for (int i = tid; i < d; i += nt) a.mu[i] += u[i] * gain;
  // (u_i u_j) / denom is the same number for (i, j) and (j, i): Sigma stays exactly symmetric.
  const T inv = T(1) / denom;
  for (int i = warp; i < d; i += nw) {
    const T ui = u[i];
    T* row = a.cov + static_cast<long>(i) * d;
    for (int k = lane; k < d; k += kWarp) row[k] -= (ui * u[k]) * inv;
  }
  c.sync();  // the next observation overwrites u and w and reads the new state
}

/// observe() of linear.hpp for Thompson sampling: cov holds U with P = U^T U.
template <class T, class Ctx>
EPP_BODY void observe_thompson(Ctx& c, const Config& cfg, const Agent<T>& a, T eta, const T* x,
                               T r, T* vec, const Reduce<T>& red) {
  const int d = cfg.dim, tid = c.tid(), nt = c.nthreads();
  T* g = vec;
  T* u = vec + d;
  T* v = vec + 2 * d;
  for (int i = tid; i < d; i += nt) g[i] = x[i];
  c.sync();
  // Sigma x = U^{-1} U^{-T} x; s = eta^2 + x^T Sigma x = eta^2 + |U^{-T} x|^2.
  solve_upper_transposed(c, a.cov, d, g, u);
  T sq = T(0);
  for (int i = tid; i < d; i += nt) sq += u[i] * u[i];
  sq = block_sum(c, sq, red.value);
  const T denom = eta * eta + sq;
  for (int i = tid; i < d; i += nt) g[i] = u[i];
  c.sync();
  solve_upper(c, a.cov, d, g, v);  // v = Sigma x
  T xm = T(0);
  for (int i = tid; i < d; i += nt) xm += x[i] * a.mu[i];
  xm = block_sum(c, xm, red.value);
  const T gain = (r - xm) / denom;
  for (int i = tid; i < d; i += nt) a.mu[i] += v[i] * gain;
  c.sync();
  for (int i = tid; i < d; i += nt) v[i] = x[i] / eta;
  c.sync();
  cholesky_update_upper(c, a.cov, v, d);
}

/// Applies the unmasked observations x (n, d), r (n) of one agent in order.
template <class T, class Ctx>
EPP_BODY void update_agent(Ctx& c, const Config& cfg, const Agent<T>& a, T* vec,
                           const Reduce<T>& red, const T* x, const T* r, const std::uint8_t* mask,
                           long n) {
  const int d = cfg.dim;
  const T eta = static_cast<T>(cfg.noise_std);
  std::uint64_t step = *a.step;
  for (long j = 0; j < n; ++j) {
    if (mask && !mask[j]) continue;
    if (cfg.policy == kThompson)
      observe_thompson(c, cfg, a, eta, x + j * d, r[j], vec, red);
    else
      observe_gaussian(c, cfg, a, step, eta, x + j * d, r[j], vec, red);
  }
  c.sync();  // every thread has read *a.step
  if (c.tid() == 0) *a.step = step;
}

/// Validation of one observation i (thread-level): 2 i when r is not finite, else 2 i + 1 when
/// a feature is not finite, else kNoError.
template <class T>
EPP_HD unsigned long long check_observation(const T* x, const T* r, long i, int d) {
  if (!is_finite(r[i])) return 2ull * static_cast<unsigned long long>(i);
  const T* xi = x + i * d;
  for (int k = 0; k < d; ++k)
    if (!is_finite(xi[k])) return 2ull * static_cast<unsigned long long>(i) + 1ull;
  return kNoError;
}

// ---- whole kernels: the grid loops ----------------------------------------------------------
// Ctx also gives block() and nblocks() (blockIdx.x, gridDim.x); a block strides over agents.
// `smem` is the block's dynamic shared scratch, or nullptr to use row b of Batch::work.

template <class T>
EPP_HD T* agent_scratch(const Batch<T>& s, long b, T* smem) {
  return smem ? smem : s.work + b * s.width;
}

/// sample_kernel: one draw (or unit action) per agent into out (B, d).
template <class T, class Ctx>
EPP_BODY void sample_grid(Ctx& c, const Config& cfg, const Batch<T>& s, T* out, bool unit_norm,
                          T* smem, const Reduce<T>& red) {
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    sample_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, out + b * cfg.dim,
                 unit_norm);
}

/// act_kernel: actions X (K, d) shared or (B, K, d) per agent, mask 0, (K) or (B, K); theta
/// (B, d), choice (B), saved (B) and errors (2) as in cuda_api.hpp.
template <bool Ucb, class T, class Ctx>
EPP_BODY void act_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* X, long K,
                       bool per_agent, const std::uint8_t* mask, bool mask_per_agent, T* theta,
                       std::int64_t* choice, std::uint64_t* saved, unsigned long long* errors,
                       T* smem, const Reduce<T>& red) {
  const long d = cfg.dim;
  for (long b = c.block(); b < s.n_agents; b += c.nblocks()) {
    const T* Xb = per_agent ? X + b * K * d : X;
    const std::uint8_t* mb = mask ? (mask_per_agent ? mask + b * K : mask) : nullptr;
    act_agent<Ucb>(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, Xb, K, mb,
                   theta + b * d, choice + b, saved + b, errors, b);
  }
}

/// restore_steps_kernel (one thread per agent): a failed act leaves every counter as it was.
template <class Ctx>
EPP_BODY void restore_steps_grid(Ctx& c, std::uint64_t* steps, const std::uint64_t* saved,
                                 const unsigned long long* errors, long B) {
  if (errors[0] == kNoError && errors[1] == kNoError) return;
  const long stride = static_cast<long>(c.nblocks()) * c.nthreads();
  for (long b = static_cast<long>(c.block()) * c.nthreads() + c.tid(); b < B; b += stride)
    steps[b] = saved[b];
}

/// check_kernel (one thread per observation): the smallest error key into errors[0].
template <class T, class Ctx>
EPP_BODY void check_grid(Ctx& c, const T* x, const T* r, const std::uint8_t* mask, long n_total,
                         int d, unsigned long long* errors) {
  const long stride = static_cast<long>(c.nblocks()) * c.nthreads();
  for (long i = static_cast<long>(c.block()) * c.nthreads() + c.tid(); i < n_total; i += stride) {
    if (mask && !mask[i]) continue;
    const unsigned long long key = check_observation(x, r, i, d);
    if (key != kNoError) c.atomic_min(errors, key);
  }
}

/// update_kernel: observations x (B, n, d), r (B, n), mask 0 or (B, n); nothing changes when
/// check_grid recorded an error.
template <class T, class Ctx>
EPP_BODY void update_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* x, const T* r,
                          const std::uint8_t* mask, long n, const unsigned long long* errors,
                          T* smem, const Reduce<T>& red) {
  if (errors[0] != kNoError) return;  // the same for every thread: no barrier is skipped
  const long d = cfg.dim;
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    update_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, x + b * n * d, r + b * n,
                 mask ? mask + b * n : nullptr, n);
}

}  // namespace ensemblepp::cuda::detail
