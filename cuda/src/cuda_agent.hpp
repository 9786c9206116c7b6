/// @file cuda_agent.hpp
/// Bodies of the CUDA kernels: the work of one thread block on one agent, and the grid loops.
///
/// Private to cuda/src (not part of the public API). The bodies are written against a small
/// execution context `Ctx` (thread and block index, block and grid size, barrier, warp sum,
/// atomic minimum) so that the CUDA kernels (cuda/src/linear_kernels.cu, thin wrappers) and a
/// host emulation of thread blocks (tests/cuda_emulation.hpp), used to test the index arithmetic and
/// the barriers without a GPU, run the same code.
///
/// They reproduce ensemblepp/linear.hpp operation by operation on the same state (the
/// covariance root L and the mean in double, the factor A in T), with every vector of a step in
/// double: the same random draws from the same counters, the same formulas evaluated in the same
/// order per element; only the order of the terms of some dot products differs (parallel
/// reductions), which changes results at rounding level.
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
  double* cov_root;
  double* mean;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// Device pointers of the whole batch, typed.
template <class T>
struct Batch {
  double* cov_root;
  double* mean;
  T* factor;
  std::uint64_t* steps;
  const std::uint64_t* stream_ids;
  double* work;
  long n_agents;
  long width;  ///< scratch doubles per agent in work (when the block does not use shared memory)

  EPP_HD Agent<T> agent(const Config& c, long b) const {
    const long d = c.dim, M = c.ensemble_size;
    return Agent<T>{cov_root + b * d * d, mean + b * d, factor ? factor + b * d * M : nullptr,
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

/// Width of the per-agent scratch vector `vec`, in doubles: observe() uses 5 d + 2 M + 1
/// (u, f, e, the Carlson coefficients b and c, the draw and its residual, alpha), a draw
/// theta plus two work vectors of max(d, M).
inline long scratch_width(const Config& c) {
  const long n = c.dim > c.ensemble_size ? c.dim : c.ensemble_size;
  const long obs = 5L * c.dim + 2L * c.ensemble_size + 1, draw = c.dim + 2L * n;
  return obs > draw ? obs : draw;
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

/// init_agent of linear.hpp: L = L_0, mu = mu_0 and A = L_0^T Z_0, entry (i, m) accumulating
/// L_0[k, i] z_km over k = i, ..., d-1 in increasing k; tmp holds M.
template <class T, class Ctx>
EPP_BODY void init_agent(Ctx& c, const Config& cfg, const Agent<T>& a, const double* L0,
                         const double* mu0, bool diagonal, double* tmp) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const long dd = static_cast<long>(d) * d;
  for (long i = c.tid(); i < dd; i += c.nthreads()) a.cov_root[i] = L0[i];
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
      const double* lrow = L0 + static_cast<long>(k) * d;
      for (long e = c.tid(); e < static_cast<long>(rows) * M; e += c.nthreads()) {
        const int i = i0 + static_cast<int>(e / M), m = static_cast<int>(e % M);
        T& f = a.factor[static_cast<long>(i) * M + m];
        f = static_cast<T>(static_cast<double>(f) + lrow[i] * tmp[m]);
      }
    }
  }
  c.sync();
  if (c.tid() == 0) *a.step = has_factor(cfg.policy) ? static_cast<std::uint64_t>(d) : 0u;
}

/// theta of one agent (sample_theta in linear.hpp) into theta (d); tmp holds 2 max(d, M).
/// Advances @p step (held identically by every thread) once per random vector. Ends with a
/// barrier, after which theta is complete (rounded to T).
template <class T, class Ctx>
EPP_BODY void theta_of(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step,
                       double* theta, double* tmp) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  double* t1 = tmp;
  switch (cfg.policy) {
    case Policy::ensemble: {
      // theta = mu + A zeta, terms in increasing m.
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
        theta[i] = a.mean[i] + acc;
      }
      break;
    }
    case Policy::thompson:
      // theta = mu + L^T g: entry i adds L[j, i] g_j over j = i, ..., d-1 in increasing j.
      draw_gaussian(c, d, sqrt(static_cast<double>(d)), Stream{cfg.seed, step, a.stream}, t1);
      ++step;
      for (int i = c.tid(); i < d; i += c.nthreads()) {
        double acc = a.mean[i];
        for (int j = i; j < d; ++j) acc += a.cov_root[static_cast<long>(j) * d + i] * t1[j];
        theta[i] = acc;
      }
      break;
    case Policy::ensemble_sampling: {
      const std::uint32_t m =
          draw_index(Stream{cfg.seed, step, a.stream}, static_cast<std::uint32_t>(M));
      ++step;
      for (int i = c.tid(); i < d; i += c.nthreads())
        theta[i] = a.mean[i] + static_cast<double>(a.factor[static_cast<long>(i) * M + m]);
      break;
    }
    default:  // ucb, greedy: the mean
      for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = a.mean[i];
      break;
  }
  // Rounded to T once, as the CPU's theta: the scores below use exactly these values.
  for (int i = c.tid(); i < d; i += c.nthreads()) theta[i] = static_cast<double>(static_cast<T>(theta[i]));
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

/// x' Sigma x = |L x|^2 by one warp: lane l computes the entries j = l, l + 32, ... of L x
/// (each a dot product over i <= j in increasing i) and the squares are summed across the warp.
template <class T, class Ctx>
EPP_BODY double warp_quadratic(Ctx& c, const double* L, int d, const T* x) {
  double q = 0.0;
  for (int j = c.lane(); j < d; j += kWarp) {
    const double* row = L + static_cast<long>(j) * d;
    double f = 0.0;
    for (int i = 0; i <= j; ++i) f += row[i] * static_cast<double>(x[i]);
    q += f * f;
  }
  return c.warp_sum(q);
}

/// Samples theta, scores the actions X (K, d) of one agent and writes the argmax (ties to the
/// lowest index, -1 when nothing was chosen) to *choice, the counter before the call to *saved,
/// and the agent index @p b to errors[0] (every action masked out), errors[1] (a NaN or
/// infinite score) or errors[2] (a NaN or infinite theta: the state is not finite) by atomic
/// minimum.
/// @tparam Ucb the LinUCB scoring (a separate instantiation, so that its registers and its
///             per-warp quadratic forms do not weigh on the other policies' act kernels).
template <bool Ucb, class T, class Ctx>
EPP_BODY void act_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec, const Reduce<T>& red,
                        const T* X, long K, const std::uint8_t* mask, T* theta_out,
                        std::int64_t* choice, std::uint64_t* saved, unsigned long long* errors,
                        long b) {
  const int d = cfg.dim;
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
  for (long k = c.warp(); k < K; k += c.nwarps()) {
    if (mask && !mask[k]) continue;
    available = true;
    const T* xk = X + k * d;
    T acc = T(0);
    for (int i = c.lane(); i < d; i += kWarp) acc += xk[i] * static_cast<T>(theta[i]);
    T s = c.warp_sum(acc);
    if (Ucb)
      s = static_cast<T>(static_cast<double>(s) + cfg.alpha * m_sqrt(warp_quadratic(c, a.cov_root, d, xk)));
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

/// observe() of linear.hpp: u = x / eta, f = L u, alpha = 1 + |f|^2, Carlson's step on L
/// (thread i walks column i of L over the rows j >= i, keeping e_i), mu += e (r / eta - u.mu) /
/// alpha in double, A += (e / alpha)(z - A^T u)^T. Returns false, having written nothing, when
/// alpha or the innovation is not finite (the same decision in every thread).
/// @tparam X the type of the features and reward: T, or double for the pseudo-observations of
///           forgetting (cuda_production.hpp), as observe<T, X> of linear.hpp.
template <class T, class Ctx, class X = T>
EPP_BODY bool observe(Ctx& c, const Config& cfg, const Agent<T>& a, std::uint64_t& step,
                      const X* x, X r, double* vec, const Reduce<T>& red) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int tid = c.tid(), nt = c.nthreads();
  const double inv_eta = 1.0 / cfg.noise_std;
  double* u = vec;
  double* f = vec + d;
  double* e = vec + 2 * d;
  double* bj = vec + 3 * d;
  double* cj = vec + 4 * d;
  double* g = vec + 5 * d;
  double* alpha_out = vec + 5 * d + 2 * M;
  for (int i = tid; i < d; i += nt) u[i] = static_cast<double>(x[i]) * inv_eta;
  c.sync();
  for (int j = tid; j < d; j += nt) {
    const double* row = a.cov_root + static_cast<long>(j) * d;
    double acc = 0.0;
    for (int i = 0; i <= j; ++i) acc += row[i] * u[i];
    f[j] = acc;
  }
  c.sync();
  if (tid == 0) {
    // The scalar recursion of Carlson's step, in the CPU's order.
    double alpha = 1.0;
    for (int j = 0; j < d; ++j) alpha += f[j] * f[j];
    double a_prev = 1.0;
    for (int j = 0; j < d; ++j) {
      const double fj = f[j];
      if (fj == 0.0) {
        bj[j] = 1.0;
        cj[j] = 0.0;
        continue;
      }
      const double a_next = a_prev + fj * fj;
      const double q = 1.0 / sqrt(a_prev * a_next);
      bj[j] = a_prev * q;
      cj[j] = fj * q;
      a_prev = a_next;
    }
    *alpha_out = is_finite(alpha) ? a_prev : alpha;
  }
  double um = 0.0;
  for (int i = tid; i < d; i += nt) um += u[i] * a.mean[i];
  um = block_sum(c, um, red.value);  // its barriers also publish bj, cj and alpha
  const double alpha = *alpha_out;
  const double innovation = static_cast<double>(r) * inv_eta - um;
  if (!(is_finite(alpha) && is_finite(innovation))) {
    c.sync();
    return false;
  }
  for (int i = tid; i < d; i += nt) {
    double ei = 0.0;
    for (int j = i; j < d; ++j) {
      const double fj = f[j];
      if (fj == 0.0) continue;
      double& lji = a.cov_root[static_cast<long>(j) * d + i];
      const double l = lji;
      lji = bj[j] * l - cj[j] * ei;
      ei += fj * l;
    }
    e[i] = ei;
  }
  const double inv_alpha = 1.0 / alpha;
  const double gain = innovation * inv_alpha;
  for (int i = tid; i < d; i += nt) a.mean[i] += e[i] * gain;
  if (has_factor(cfg.policy)) {
    if (tid == 0) {
      const Stream st{cfg.seed, step, a.stream};
      if (cfg.policy == Policy::ensemble)
        draw<double>(cfg.perturbation, M, cfg.perturbation_sparsity, 1.0, st, g);
      else
        draw<double>(Distribution::gaussian, M, 1, sqrt(static_cast<double>(M)), st, g);
    }
    ++step;
    c.sync();  // g drawn, e complete
    double* resid = g + M;
    for (int m = tid; m < M; m += nt) {
      double acc = g[m];
      for (int i = 0; i < d; ++i) acc -= u[i] * static_cast<double>(a.factor[static_cast<long>(i) * M + m]);
      resid[m] = acc;
    }
    c.sync();
    const long dm = static_cast<long>(d) * M;
    for (long el = tid; el < dm; el += nt) {
      const double ki = e[el / M] * inv_alpha;
      a.factor[el] = static_cast<T>(static_cast<double>(a.factor[el]) + ki * resid[el % M]);
    }
  }
  c.sync();  // the next observation overwrites the scratch
  return true;
}

/// Applies the unmasked observations x (n, d), r (n) of one agent in order; an observation that
/// observe() refuses stops the agent there and records it in refused by atomic minimum.
template <class T, class Ctx>
EPP_BODY void update_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec,
                           const Reduce<T>& red, const T* x, const T* r, const std::uint8_t* mask,
                           long n, unsigned long long* refused, long b) {
  const int d = cfg.dim;
  std::uint64_t step = *a.step;
  for (long j = 0; j < n; ++j) {
    if (mask && !mask[j]) continue;
    if (!observe(c, cfg, a, step, x + j * d, r[j], vec, red)) {
      if (c.tid() == 0) c.atomic_min(refused, static_cast<unsigned long long>(b));
      break;
    }
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
EPP_BODY void init_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const double* L0,
                        const double* mu0, bool diagonal, long first, double* smem) {
  for (long b = first + c.block(); b < s.n_agents; b += c.nblocks())
    init_agent(c, cfg, s.agent(cfg, b), L0, mu0, diagonal, agent_scratch(s, b, smem));
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
/// check_grid recorded an error in errors[0]; an agent whose update observe() refuses is
/// recorded in errors[1].
template <class T, class Ctx>
EPP_BODY void update_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* x, const T* r,
                          const std::uint8_t* mask, long n, unsigned long long* errors,
                          double* smem, const Reduce<T>& red) {
  if (errors[0] != kNoError) return;  // the same for every thread: no barrier is skipped
  const long d = cfg.dim;
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    update_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, x + b * n * d, r + b * n,
                 mask ? mask + b * n : nullptr, n, errors + 1, b);
}

}  // namespace ensemblepp::cuda::detail
