/// @file cuda_agent.hpp
/// Bodies of the CUDA kernels: the work of one thread block on one agent, and the grid loops.
///
/// Private to cuda/src (not part of the public API). The bodies are written against a small
/// execution context `Ctx` (thread and block index, block and grid size, barrier, warp sum,
/// atomic minimum) so that the CUDA kernels (cuda/src/linear_kernels.cu, thin wrappers) and a
/// host emulation of thread blocks (tests/cuda_emulation.hpp), used to test the index arithmetic and
/// the barriers without a GPU, run the same code.
///
/// They reproduce ensemblepp/linear.hpp operation by operation on the same state (U and the
/// mean in double, the factor accumulator F in T), with every vector of a step in double: the same random draws from the same counters, the
/// same formulas evaluated in T in the same order per element; only the order of the terms of
/// the dot products differs (parallel reductions), which changes results at rounding level.
///
/// Preconditions of every body: the block size is a multiple of 32 and at most 256, every thread
/// of the block calls it with the same arguments, and `vec` points to scratch_width(config)
/// elements that no other block uses.
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
constexpr int kMaxWarps = 8;  ///< blocks have at most 256 threads

EPP_HD float m_sqrt(float x) { return sqrtf(x); }
EPP_HD double m_sqrt(double x) { return sqrt(x); }
EPP_HD float m_hypot(float a, float b) { return hypotf(a, b); }
EPP_HD double m_hypot(double a, double b) { return hypot(a, b); }
EPP_HD double m_abs(double x) { return fabs(x); }

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
  double* prec;
  double* mean;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// Device pointers of the whole batch, typed.
template <class T>
struct Batch {
  double* prec;
  double* mean;
  T* factor;
  std::uint64_t* steps;
  const std::uint64_t* stream_ids;
  double* work;
  long n_agents;
  long width;  ///< scratch doubles per agent in work (when the block does not use shared memory)

  EPP_HD Agent<T> agent(const Config& c, long b) const {
    const long d = c.dim, M = c.ensemble_size;
    return Agent<T>{prec + b * d * d, mean + b * d, factor ? factor + b * d * M : nullptr,
                    steps + b, stream_ids[b]};
  }
};

/// Block-shared scratch for reductions across warps, 32 entries each.
template <class T>
struct Reduce {
  double* value;  ///< partial sums and best scores (a T converts to double exactly)
  long long* index;
  int* flags;
};

/// Width of the per-agent scratch vector `vec`, in doubles: three work vectors, and for
/// LinUCB one d-vector per warp (the triangular solves of the scores).
inline long scratch_width(const Config& c) {
  const long n = c.dim > c.ensemble_size ? c.dim : c.ensemble_size;
  return 3L * n + (c.policy == Policy::ucb ? static_cast<long>(kMaxWarps) * c.dim : 0L);
}

/// Sum of v over the block in V's arithmetic, returned to every thread (same bits everywhere).
template <class V, class Ctx>
EPP_BODY V block_sum(Ctx& c, V v, double* red) {
  v = c.warp_sum(v);
  c.sync();  // the previous call's readers of red are done
  if (c.lane() == 0) red[c.warp()] = static_cast<double>(v);
  c.sync();
  V total = V(0);
  for (int w = 0; w < c.nwarps(); ++w) total += static_cast<V>(red[w]);
  return total;
}

/// Gaussian draw of length n at scale @p scale into out, the pairs spread over the threads.
/// Same numbers as draw<T>(Distribution::gaussian, n, 1, scale, stream, out).
template <class Ctx>
EPP_BODY void draw_gaussian(Ctx& c, int n, double scale, const Stream& stream, double* out) {
  for (int j = c.tid(); 2 * j < n; j += c.nthreads()) {
    double a, b;
    normal_pair(stream.block(static_cast<std::uint32_t>(j)), a, b);
    out[2 * j] = a;
    if (2 * j + 1 < n) out[2 * j + 1] = b;
  }
  c.sync();
  const double f = scale / sqrt(static_cast<double>(n));
  for (int i = c.tid(); i < n; i += c.nthreads()) out[i] = out[i] * f;
  c.sync();
}

/// Solves U sol = g for upper-triangular U (d, d) by back substitution; g is destroyed.
/// Column-oriented: once sol[i] is known, every thread removes it from its rows j < i.
/// Precondition: g is complete (a barrier since its last write). Ends with a barrier.
template <class Ctx>
EPP_BODY void solve_upper(Ctx& c, const double* U, int d, double* g, double* sol) {
  for (int i = d - 1; i >= 0; --i) {
    // g[i] is final: its last change happened before the previous barrier.
    const double si = g[i] / U[static_cast<long>(i) * d + i];
    if (c.tid() == 0) sol[i] = si;
    for (int j = c.tid(); j < i; j += c.nthreads()) g[j] -= U[static_cast<long>(j) * d + i] * si;
    c.sync();
  }
}

/// Solves U^T sol = g (forward substitution with the lower factor U^T); g is destroyed.
/// Precondition: g is complete. Ends with a barrier.
template <class Ctx>
EPP_BODY void solve_upper_transposed(Ctx& c, const double* U, int d, double* g, double* sol) {
  for (int i = 0; i < d; ++i) {
    const double* row = U + static_cast<long>(i) * d;  // column i of U^T
    const double si = g[i] / row[i];
    if (c.tid() == 0) sol[i] = si;
    for (int j = i + 1 + c.tid(); j < d; j += c.nthreads()) g[j] -= row[j] * si;
    c.sync();
  }
}

/// theta <- P^-1 g: U^T w = g, U theta = w; g and w are destroyed (all three of length d).
template <class Ctx>
EPP_BODY void solve_precision(Ctx& c, const double* U, int d, double* g, double* w, double* theta) {
  solve_upper_transposed(c, U, d, g, w);
  solve_upper(c, U, d, w, theta);
}

/// U^T U + v v^T by Givens rotations, as cholesky_update_upper in linear.hpp (same c and s,
/// same skip of a zero v_k); v is destroyed. Precondition: v complete. Ends with a barrier.
template <class Ctx>
EPP_BODY void cholesky_update_upper(Ctx& c, double* U, double* v, int d) {
  for (int k = 0; k < d; ++k) {
    const double vk = v[k];  // the same value in every thread: the skip is uniform
    if (vk == 0.0) continue;
    double* row = U + static_cast<long>(k) * d;
    const double ukk = row[k];
    const double r = m_hypot(ukk, vk);
    const double cs = ukk / r, sn = vk / r;
    c.sync();  // every thread has read row[k] and v[k] before they are overwritten
    if (c.tid() == 0) row[k] = r;
    for (int i = k + 1 + c.tid(); i < d; i += c.nthreads()) {
      const double ri = row[i], wi = v[i];
      row[i] = cs * ri + sn * wi;
      v[i] = cs * wi - sn * ri;
    }
    c.sync();
  }
}

/// init_agent of linear.hpp: U = U_0, mu = mu_0 and F = R Z_0, entry (i, m) accumulating
/// R_ik z_km over k = i, ..., d-1 in increasing k; tmp holds M.
template <class T, class Ctx>
EPP_BODY void init_agent(Ctx& c, const Config& cfg, const Agent<T>& a, const double* U0,
                         const double* mu0, const double* R, bool diagonal, double* tmp) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const long dd = static_cast<long>(d) * d;
  for (long i = c.tid(); i < dd; i += c.nthreads()) a.prec[i] = U0[i];
  for (int i = c.tid(); i < d; i += c.nthreads()) a.mean[i] = mu0[i];
  if (has_factor(cfg.policy)) {
    const bool models = cfg.policy == Policy::ensemble_sampling;
    const long dm = static_cast<long>(d) * M;
    for (long e = c.tid(); e < dm; e += c.nthreads()) a.factor[e] = T(0);
    for (int k = 0; k < d; ++k) {
      c.sync();  // the previous row's readers of tmp are done
      if (c.tid() == 0) {
        const Stream st{cfg.seed, static_cast<std::uint64_t>(k), a.stream};
        if (models)
          draw<double>(Distribution::gaussian, M, 1, sqrt(static_cast<double>(M)), st, tmp);
        else
          draw<double>(cfg.perturbation, M, cfg.perturbation_sparsity, 1.0, st, tmp);
      }
      c.sync();
      const int i0 = diagonal ? k : 0, rows = k - i0 + 1;
      for (long e = c.tid(); e < static_cast<long>(rows) * M; e += c.nthreads()) {
        const int i = i0 + static_cast<int>(e / M), m = static_cast<int>(e % M);
        T& f = a.factor[static_cast<long>(i) * M + m];
        f = static_cast<T>(static_cast<double>(f) + R[static_cast<long>(i) * d + k] * tmp[m]);
      }
    }
  }
  c.sync();
  if (c.tid() == 0) *a.step = has_factor(cfg.policy) ? static_cast<std::uint64_t>(d) : 0u;
}

/// theta of one agent (sample_theta in linear.hpp) into theta (d); tmp holds 2 max(d, M).
/// Advances @p step (held identically by every thread) once per random vector. Ends with a
/// barrier, after which theta is complete.
template <class T, class Ctx>
EPP_BODY void theta_of(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step,
                       double* theta, double* tmp) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int n = d > M ? d : M;
  double* t1 = tmp;
  double* t2 = tmp + n;
  switch (cfg.policy) {
    case Policy::ensemble: {
      // theta = mu + P^-1 F zeta.
      if (c.tid() == 0) {
        const Stream st{cfg.seed, step, a.stream};
        draw<double>(cfg.reference, M, cfg.reference_sparsity, sqrt(static_cast<double>(M)), st, t1);
      }
      ++step;
      c.sync();
      for (int i = c.tid(); i < d; i += c.nthreads()) {
        const T* row = a.factor + static_cast<long>(i) * M;
        double acc = 0.0;
        for (int m = 0; m < M; ++m) acc += static_cast<double>(row[m]) * t1[m];
        t2[i] = acc;
      }
      c.sync();
      solve_precision(c, a.prec, d, t2, t1, theta);
      break;
    }
    case Policy::thompson:
      // theta = mu + U^-1 g.
      draw_gaussian(c, d, sqrt(static_cast<double>(d)), Stream{cfg.seed, step, a.stream}, t1);
      ++step;
      solve_upper(c, a.prec, d, t1, theta);
      break;
    case Policy::ensemble_sampling: {
      const std::uint32_t m =
          draw_index(Stream{cfg.seed, step, a.stream}, static_cast<std::uint32_t>(M));
      ++step;
      for (int i = c.tid(); i < d; i += c.nthreads())
        t2[i] = static_cast<double>(a.factor[static_cast<long>(i) * M + m]);
      c.sync();
      solve_precision(c, a.prec, d, t2, t1, theta);
      break;
    }
    default:  // ucb, greedy: the mean
      for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = 0.0;
      break;
  }
  c.sync();
  // Rounded to T once, as the CPU's theta: the scores below use exactly these values.
  for (int i = c.tid(); i < d; i += c.nthreads())
    theta[i] = static_cast<double>(static_cast<T>(a.mean[i] + theta[i]));
  c.sync();
}

/// One posterior draw (or the unit action theta / |theta|) of one agent into out (d).
template <class T, class Ctx>
EPP_BODY void sample_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec,
                           const Reduce<T>& red, T* out, bool unit_norm) {
  const int d = cfg.dim;
  std::uint64_t step = *a.step;
  double* theta = vec;
  theta_of(c, cfg, a, step, theta, vec + d);
  if (unit_norm) {
    T sq = T(0);
    for (int i = c.tid(); i < d; i += c.nthreads()) sq += static_cast<T>(theta[i]) * static_cast<T>(theta[i]);
    sq = block_sum(c, sq, red.value);
    const T n = m_sqrt(sq);
    // theta = 0 makes every unit vector optimal: pick e_1, as the CPU does.
    for (int i = c.tid(); i < d; i += c.nthreads())
      out[i] = n > T(0) ? static_cast<T>(theta[i]) / n : (i == 0 ? T(1) : T(0));
  } else {
    for (int i = c.tid(); i < d; i += c.nthreads()) out[i] = static_cast<T>(theta[i]);
  }
  c.sync();  // every thread has read *a.step and vec
  if (c.tid() == 0) *a.step = step;
}

/// |U^-T x|^2 by one warp: forward substitution, lane l holding the residuals x_j - sum_i<j
/// U_ij y_i of the coordinates j = l, l + 32, ... in y (its own entries only, so no barrier);
/// each y_i reaches every lane by a warp sum of one nonzero term (exact).
template <class T, class Ctx>
EPP_BODY double warp_quadratic(Ctx& c, const double* U, int d, const T* x, double* y) {
  const int lane = c.lane();
  for (int j = lane; j < d; j += kWarp) y[j] = static_cast<double>(x[j]);
  double q = 0.0;
  for (int i = 0; i < d; ++i) {
    const double* row = U + static_cast<long>(i) * d;
    const double mine = (i % kWarp == lane) ? y[i] / row[i] : 0.0;
    const double yi = c.warp_sum(mine);
    q += yi * yi;
    for (int j = lane; j < d; j += kWarp)
      if (j > i) y[j] -= row[j] * yi;
  }
  return q;
}

/// Samples theta, scores the actions X (K, d) of one agent and writes the argmax (ties to the
/// lowest index, -1 when nothing was chosen) to *choice, the counter before the call to *saved,
/// and the agent index @p b to errors[0] (every action masked out), errors[1] (a NaN or
/// infinite score) or errors[2] (a NaN or infinite theta: the state is not finite) by atomic
/// minimum.
/// @tparam Ucb the LinUCB scoring (a separate instantiation, so that its registers and its
///             per-warp solves do not weigh on the other policies' act kernels).
template <bool Ucb, class T, class Ctx>
EPP_BODY void act_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec, const Reduce<T>& red,
                        const T* X, long K, const std::uint8_t* mask, T* theta_out,
                        std::int64_t* choice, std::uint64_t* saved, unsigned long long* errors,
                        long b) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const std::uint64_t step0 = *a.step;
  std::uint64_t step = step0;
  double* theta = vec;
  theta_of(c, cfg, a, step, theta, vec + d);
  for (int i = c.tid(); i < d; i += c.nthreads()) theta_out[i] = static_cast<T>(theta[i]);
  bool theta_ok = true;
  for (int i = 0; i < d; ++i) theta_ok = theta_ok && is_finite(theta[i]);

  // One warp per action: the lanes split the features, so every load of X is coalesced.
  // Each warp sees its actions in increasing k, so keeping the first maximum breaks ties to the
  // lowest index.
  T best = T(0);
  long long best_k = -1;
  bool available = false, bad = false;
  double* y = vec + 3L * (d > M ? d : M) + static_cast<long>(c.warp()) * d;  // Ucb only
  for (long k = c.warp(); k < K; k += c.nwarps()) {
    if (mask && !mask[k]) continue;
    available = true;
    const T* xk = X + k * d;
    T acc = T(0);
    for (int i = c.lane(); i < d; i += kWarp) acc += xk[i] * static_cast<T>(theta[i]);
    T s = c.warp_sum(acc);
    if (Ucb)
      s = static_cast<T>(static_cast<double>(s) + cfg.alpha * m_sqrt(warp_quadratic(c, a.prec, d, xk, y)));
    if (!is_finite(s)) {
      bad = true;
      continue;
    }
    if (best_k < 0 || s > best) {
      best = s;
      best_k = k;
    }
  }
  c.sync();
  if (c.lane() == 0) {
    red.value[c.warp()] = static_cast<double>(best);
    red.index[c.warp()] = best_k;
    red.flags[c.warp()] = (available ? 1 : 0) | (bad ? 2 : 0);
  }
  c.sync();
  if (c.tid() == 0) {
    double v = 0.0;
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
    if (!theta_ok)
      c.atomic_min(&errors[2], static_cast<unsigned long long>(b));
    else if (!(flags & 1))
      c.atomic_min(&errors[0], static_cast<unsigned long long>(b));
    else if (flags & 2)
      c.atomic_min(&errors[1], static_cast<unsigned long long>(b));
  }
  c.sync();
}

/// observe() of linear.hpp: the gain k = U^-1 U^-T x / s from the old U, mu += k (r - x.mu) in
/// double, U absorbs x / eta, and F += x w^T with w = z / eta (Ensemble++) or g / eta (ensemble
/// sampling).
template <class T, class Ctx>
EPP_BODY void observe(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step,
                      const T* x, T r, double* vec, const Reduce<T>& red) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int tid = c.tid(), nt = c.nthreads();
  const double eta = cfg.noise_std;
  const double inv_eta = 1.0 / eta;
  double* g = vec;          // x, destroyed by the solves
  double* u = vec + d;      // U^-T x, then (destroyed) the right-hand side of U k = u
  double* w = vec + 2 * d;  // the gain k, then the factor's w
  for (int i = tid; i < d; i += nt) g[i] = static_cast<double>(x[i]);
  c.sync();
  solve_upper_transposed(c, a.prec, d, g, u);
  double sq = 0.0;
  for (int i = tid; i < d; i += nt) sq += u[i] * u[i];
  sq = block_sum(c, sq, red.value);
  const double denom = eta * eta + sq;
  solve_upper(c, a.prec, d, u, w);  // w = k * denom
  double xm = 0.0;
  for (int i = tid; i < d; i += nt) xm += static_cast<double>(x[i]) * a.mean[i];
  xm = block_sum(c, xm, red.value);
  const double gain = (static_cast<double>(r) - xm) / denom;
  for (int i = tid; i < d; i += nt) a.mean[i] += w[i] * gain;
  for (int i = tid; i < d; i += nt) g[i] = static_cast<double>(x[i]) * inv_eta;
  c.sync();  // g complete, w read
  cholesky_update_upper(c, a.prec, g, d);
  if (has_factor(cfg.policy)) {
    if (tid == 0) {
      const Stream st{cfg.seed, step, a.stream};
      if (cfg.policy == Policy::ensemble)
        draw<double>(cfg.perturbation, M, cfg.perturbation_sparsity, 1.0, st, w);
      else
        draw<double>(Distribution::gaussian, M, 1, sqrt(static_cast<double>(M)), st, w);
      for (int m = 0; m < M; ++m) w[m] *= inv_eta;
    }
    ++step;
    c.sync();
    const long dm = static_cast<long>(d) * M;
    for (long e = tid; e < dm; e += nt)
      a.factor[e] = static_cast<T>(static_cast<double>(a.factor[e]) + static_cast<double>(x[e / M]) * w[e % M]);
  }
  c.sync();  // the next observation overwrites the scratch
}

/// Applies the unmasked observations x (n, d), r (n) of one agent in order.
template <class T, class Ctx>
EPP_BODY void update_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec,
                           const Reduce<T>& red, const T* x, const T* r, const std::uint8_t* mask,
                           long n) {
  const int d = cfg.dim;
  std::uint64_t step = *a.step;
  for (long j = 0; j < n; ++j) {
    if (mask && !mask[j]) continue;
    observe(c, cfg, a, step, x + j * d, r[j], vec, red);
  }
  c.sync();  // every thread has read *a.step
  if (c.tid() == 0) *a.step = step;
}

/// Validation of one observation i (thread-level), as check_observation in linear.hpp: 2 i when
/// |r| / eta is NaN or beyond input_bound, else 2 i + 1 when a feature is, else kNoError.
template <class T>
EPP_HD unsigned long long check_observation(const T* x, const T* r, long i, int d, double eta) {
  const double bound = input_bound<T>();
  if (!(m_abs(static_cast<double>(r[i])) / eta <= bound)) return 2ull * static_cast<unsigned long long>(i);
  const T* xi = x + i * d;
  for (int k = 0; k < d; ++k)
    if (!(m_abs(static_cast<double>(xi[k])) / eta <= bound)) return 2ull * static_cast<unsigned long long>(i) + 1ull;
  return kNoError;
}

// ---- whole kernels: the grid loops ----------------------------------------------------------
// Ctx also gives block() and nblocks() (blockIdx.x, gridDim.x); a block strides over agents.
// `smem` is the block's dynamic shared scratch, or nullptr to use row b of Batch::work.

template <class T>
EPP_HD double* agent_scratch(const Batch<T>& s, long b, double* smem) {
  return smem ? smem : s.work + b * s.width;
}

/// init_kernel: the prior state of agents first, ..., B-1.
template <class T, class Ctx>
EPP_BODY void init_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const double* U0,
                        const double* b0, const double* R, bool diagonal, long first, double* smem) {
  for (long b = first + c.block(); b < s.n_agents; b += c.nblocks())
    init_agent(c, cfg, s.agent(cfg, b), U0, b0, R, diagonal, agent_scratch(s, b, smem));
}

/// sample_kernel: one draw (or unit action) per agent into out (B, d).
template <class T, class Ctx>
EPP_BODY void sample_grid(Ctx& c, const Config& cfg, const Batch<T>& s, T* out, bool unit_norm,
                          double* smem, const Reduce<T>& red) {
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    sample_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, out + b * cfg.dim,
                 unit_norm);
}

/// act_kernel: actions X (K, d) shared or (B, K, d) per agent, mask 0, (K) or (B, K); theta
/// (B, d), choice (B), saved (B) and errors (3) as in cuda_api.hpp.
template <bool Ucb, class T, class Ctx>
EPP_BODY void act_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* X, long K,
                       bool per_agent, const std::uint8_t* mask, bool mask_per_agent, T* theta,
                       std::int64_t* choice, std::uint64_t* saved, unsigned long long* errors,
                       double* smem, const Reduce<T>& red) {
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
  if (errors[0] == kNoError && errors[1] == kNoError && errors[2] == kNoError) return;
  const long stride = static_cast<long>(c.nblocks()) * c.nthreads();
  for (long b = static_cast<long>(c.block()) * c.nthreads() + c.tid(); b < B; b += stride)
    steps[b] = saved[b];
}

/// check_kernel (one thread per observation): the smallest error key into errors[0].
template <class T, class Ctx>
EPP_BODY void check_grid(Ctx& c, const T* x, const T* r, const std::uint8_t* mask, long n_total,
                         int d, double eta, unsigned long long* errors) {
  const long stride = static_cast<long>(c.nblocks()) * c.nthreads();
  for (long i = static_cast<long>(c.block()) * c.nthreads() + c.tid(); i < n_total; i += stride) {
    if (mask && !mask[i]) continue;
    const unsigned long long key = check_observation(x, r, i, d, eta);
    if (key != kNoError) c.atomic_min(errors, key);
  }
}

/// update_kernel: observations x (B, n, d), r (B, n), mask 0 or (B, n); nothing changes when
/// check_grid recorded an error.
template <class T, class Ctx>
EPP_BODY void update_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* x, const T* r,
                          const std::uint8_t* mask, long n, const unsigned long long* errors,
                          double* smem, const Reduce<T>& red) {
  if (errors[0] != kNoError) return;  // the same for every thread: no barrier is skipped
  const long d = cfg.dim;
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    update_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, x + b * n * d, r + b * n,
                 mask ? mask + b * n : nullptr, n);
}

}  // namespace ensemblepp::cuda::detail
