/// @file cuda_production.hpp
/// Bodies of the CUDA production-loop kernels (issue 12): ragged warm starts with optional
/// forgetting and action probabilities, one thread block per agent. The CPU versions are in
/// cpp/include/ensemblepp/production.hpp and cpp/src/production.cpp.
///
/// Private to cuda/src, written against the same execution context `Ctx` as cuda_agent.hpp (so
/// that tests/cuda_emulation.hpp runs them on the host), with one more member: atomic_add, on
/// unsigned long long and double. The per-agent work calls the bodies of cuda_agent.hpp for the
/// updates and the draws of the mean (observe, update_agent, theta_of, warp_quadratic); the
/// forgetting step and the score map of the probabilities mirror production.hpp and
/// production.cpp operation by operation on the state (L, mu, A) of linear.hpp.
///
/// Preconditions: those of cuda_agent.hpp, with `vec` of the widths given below.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda_agent.hpp"

namespace ensemblepp::cuda::detail {

/// Forgetting of a batch (production.hpp's Forgetting), with the two square roots computed once
/// on the host by forget_of so that every backend uses the same bits.
struct Forget {
  long scratch;            ///< offset in `vec` of the pseudo-features: scratch_width(config)
  double inv_sqrt_gamma;   ///< 1 / sqrt(gamma): L and A are scaled by it
  double sqrt_refresh;     ///< sqrt(w), w = 1 - gamma^d, the weight of a prior refresh
  const double* dirs;      ///< (d, d): row k is the refresh direction r_k
  const double* targets;   ///< (d): r_k . mu_0
  std::uint64_t* updates;  ///< (B): observations each agent has applied (picks k)
};

/// The Forget of factor @p gamma, with production.hpp's expressions.
inline Forget forget_of(const Config& c, double gamma, const double* dirs, const double* targets,
                        std::uint64_t* updates) {
  const double w = 1.0 - std::pow(gamma, c.dim);
  return Forget{scratch_width(c), 1.0 / std::sqrt(gamma), std::sqrt(w), dirs, targets, updates};
}

/// Scratch doubles per agent of the ragged update: observe()'s, plus d for the pseudo-features
/// of the prior refresh when forgetting.
inline long ragged_width(const Config& c, bool forgets) {
  return scratch_width(c) + (forgets ? static_cast<long>(c.dim) : 0L);
}

/// Length of the random vector behind one probability draw: M (Ensemble++, ensemble sampling's
/// models), d (Thompson sampling), 0 for the deterministic policies.
EPP_HD long probability_draw_length(const Config& c) {
  switch (c.policy) {
    case Policy::ensemble:
    case Policy::ensemble_sampling:
      return c.ensemble_size;
    case Policy::thompson:
      return c.dim;
    default:
      return 0;
  }
}

/// Layout of the per-agent scratch of the probability kernel, offsets in doubles from `vec`:
///   [0, vec)            the work vectors of theta_of (scratch_width)
///   counts (K)          unsigned long long: whole votes per action
///   shares (K)          double: split votes of exact ties
///   s0 (K)              T: X mu, or the scores of greedy and LinUCB
///   G (K, n)            T: the map from the random vector to the scores (n = draw length)
///   V (n, threads)      T: one random vector per thread, column t for thread t
/// (Computed on the host for the block size of the launch.)
struct ProbabilityLayout {
  long counts, shares, s0, width;
};

inline ProbabilityLayout probability_layout(const Config& c, long K, long threads) {
  const long base = scratch_width(c), n = probability_draw_length(c);
  const long t_elems = K + K * n + n * threads;  // s0, G, V
  const long t_size = c.dtype == DType::float64 ? 8 : 4;
  const long t_doubles = (t_elems * t_size + 7) / 8;
  return ProbabilityLayout{base, base + K, base + 2 * K, base + 2 * K + t_doubles};
}

/// observe_forgetting of production.hpp: L <- L / sqrt(gamma) and A <- A / sqrt(gamma) (the
/// lower triangle of L, every entry of A); the prior refresh as a pseudo-observation
/// (sqrt(w) r_k, sqrt(w) r_k . mu_0) with unit noise and features in double through observe(),
/// which draws z' at the agent's counter; then the observation (x, r). Returns false when
/// observe() refuses either (the scaling is then applied and @p updates not advanced), as the CPU.
/// @p step and @p updates are held identically by every thread. `vec` holds ragged_width(c, true).
template <class T, class Ctx>
EPP_BODY bool observe_forgetting(Ctx& c, const Config& cfg, const Forget& f, const Agent<T>& a,
                                 std::uint64_t& step, std::uint64_t& updates, const T* x, T r,
                                 double* vec, const Reduce<T>& red) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int tid = c.tid(), nt = c.nthreads();
  const int k = static_cast<int>(updates % static_cast<std::uint64_t>(d));
  const double isg = f.inv_sqrt_gamma, sw = f.sqrt_refresh;
  const double* rk = f.dirs + static_cast<long>(k) * d;
  const long dd = static_cast<long>(d) * d;
  for (long e = tid; e < dd; e += nt)
    if (e % d <= e / d) a.cov_root[e] *= isg;  // row j = e / d, entries i <= j
  if (has_factor(cfg.policy)) {
    const long dm = static_cast<long>(d) * M;
    for (long e = tid; e < dm; e += nt) a.factor[e] = static_cast<T>(static_cast<double>(a.factor[e]) * isg);
  }
  // Beyond observe()'s scratch, since observe() reads the features after it writes its vectors.
  double* v = vec + f.scratch;
  for (int i = tid; i < d; i += nt) v[i] = sw * rk[i];
  c.sync();  // L and A scaled, v complete
  Config pseudo = cfg;
  pseudo.noise_std = 1.0;
  if (!observe(c, pseudo, a, step, static_cast<const double*>(v), sw * f.targets[k], vec, red)) return false;
  if (!observe(c, cfg, a, step, x, r, vec, red)) return false;
  ++updates;
  return true;
}

/// The rows offsets[b], ..., offsets[b+1]-1 of x (N, d), r (N) (unmasked ones) of agent b, in
/// order, with forgetting when @p f is not null; a row that observe() refuses stops the agent
/// there and records it in @p refused by atomic minimum, as update_agent does.
template <class T, class Ctx>
EPP_BODY void ragged_agent(Ctx& c, const Config& cfg, const Agent<T>& a, const Forget* f,
                           std::uint64_t* updates, double* vec, const Reduce<T>& red, const T* x,
                           const T* r, const std::uint8_t* mask, long begin, long end,
                           unsigned long long* refused, long b) {
  const long d = cfg.dim;
  if (!f) {
    update_agent(c, cfg, a, vec, red, x + begin * d, r + begin, mask ? mask + begin : nullptr,
                 end - begin, refused, b);
    return;
  }
  std::uint64_t step = *a.step, up = *updates;
  for (long i = begin; i < end; ++i) {
    if (mask && !mask[i]) continue;
    if (!observe_forgetting(c, cfg, *f, a, step, up, x + i * d, r[i], vec, red)) {
      if (c.tid() == 0) c.atomic_min(refused, static_cast<unsigned long long>(b));
      break;
    }
  }
  c.sync();  // every thread has read *a.step and *updates
  if (c.tid() == 0) {
    *a.step = step;
    *updates = up;
  }
}

/// update_ragged_kernel: rows grouped by agent through offsets (B + 1) int64 (checked by the
/// caller); nothing changes when check_grid recorded an error in errors[0]; an agent whose row
/// observe() refuses is recorded in errors[1].
template <class T, class Ctx>
EPP_BODY void update_ragged_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const Forget* f,
                                 const T* x, const T* r, const std::uint8_t* mask,
                                 const std::int64_t* offsets, unsigned long long* errors,
                                 double* smem, const Reduce<T>& red) {
  if (errors[0] != kNoError) return;  // the same for every thread: no barrier is skipped
  for (long b = c.block(); b < s.n_agents; b += c.nblocks())
    ragged_agent(c, cfg, s.agent(cfg, b), f, f ? f->updates + b : nullptr,
                 agent_scratch(s, b, smem), red, x, r, mask, static_cast<long>(offsets[b]),
                 static_cast<long>(offsets[b + 1]), errors + 1, b);
}

/// Scans the available scores of one draw (score(k) in T) as vote() of production.cpp: adds a
/// whole vote to counts[best], or 1 / (number tied) to shares[k] of each tied best action
/// (never with @p ties_first). Returns false on a non-finite score (nothing added).
template <class T, class Ctx, class Score>
EPP_BODY bool vote(Ctx& c, long K, const std::uint8_t* mask, bool ties_first, Score score,
                   unsigned long long* counts, double* shares) {
  long best = -1, tied = 0;
  T top = T(0);
  for (long k = 0; k < K; ++k) {
    if (mask && !mask[k]) continue;
    const T v = score(k);
    if (!is_finite(v)) return false;
    if (best < 0 || v > top) {
      best = k;
      top = v;
      tied = 1;
    } else if (v == top) {
      ++tied;
    }
  }
  if (ties_first || tied == 1) {
    c.atomic_add(&counts[best], 1ull);
    return true;
  }
  const double share = 1.0 / static_cast<double>(tied);
  for (long k = best; k < K; ++k)
    if ((!mask || mask[k]) && score(k) == top) c.atomic_add(&shares[k], share);
  return true;
}

/// Probabilities of one agent into out (K), as agent_probabilities of production.cpp: greedy
/// and LinUCB one-hot on act()'s scores (theta_of, warp_quadratic), ensemble sampling exact over
/// its M models, Ensemble++ and Thompson sampling from @p n_samples draws of the stream keyed by
/// probability_key(seed, step, id), drawn in T as the CPU's. Scores are linear in the random
/// vector v, s0 + G v (G = X A, or X L^T for Thompson sampling; s0 = X mu), so G and s0 are
/// formed once, in double, and each thread then scores its own draws against every action.
/// Bad input goes to errors by atomic minimum of @p b: slot 0 every action masked out, slot 1
/// a non-finite available action or score, slot 2 a non-finite state; out is then left as is.
template <class T, class Ctx>
EPP_BODY void probability_agent(Ctx& c, const Config& cfg, const Agent<T>& a, double* vec,
                                const Reduce<T>& red, const ProbabilityLayout& L, const T* X, long K,
                                const std::uint8_t* mask, long n_samples, bool ties_first,
                                double* out, unsigned long long* errors, long b) {
  const int d = cfg.dim, M = cfg.ensemble_size;
  const int tid = c.tid(), nt = c.nthreads();
  const long n = probability_draw_length(cfg);
  auto* counts = reinterpret_cast<unsigned long long*>(vec + L.counts);
  double* shares = vec + L.shares;
  T* s0 = reinterpret_cast<T*>(vec + L.s0);
  T* G = s0 + K;
  T* V = G + K * n;

  bool any = false;  // every thread scans the mask: the branch below is uniform
  for (long k = 0; k < K && !any; ++k) any = !mask || mask[k];
  if (!any) {
    if (tid == 0) c.atomic_min(&errors[0], static_cast<unsigned long long>(b));
    return;
  }
  double bad = 0.0;
  for (long e = tid; e < K * d; e += nt)
    if ((!mask || mask[e / d]) && !is_finite(X[e])) bad = 1.0;
  if (block_sum(c, bad, red.value) > 0.0) {
    if (tid == 0) c.atomic_min(&errors[1], static_cast<unsigned long long>(b));
    return;
  }
  for (long k = tid; k < K; k += nt) {
    counts[k] = 0;
    shares[k] = 0.0;
  }

  if (n == 0) {  // greedy, LinUCB: act()'s scores of the mean, one warp per action
    std::uint64_t step = *a.step;  // no draw: the counter is untouched
    double* theta = vec;
    theta_of(c, cfg, a, step, theta, vec + d);
    bool theta_ok = true;
    for (int i = 0; i < d; ++i) theta_ok = theta_ok && is_finite(theta[i]);
    if (!theta_ok) {
      if (tid == 0) c.atomic_min(&errors[2], static_cast<unsigned long long>(b));
      return;
    }
    for (long k = c.warp(); k < K; k += c.nwarps()) {
      if (mask && !mask[k]) continue;
      const T* xk = X + k * d;
      T acc = T(0);
      for (int i = c.lane(); i < d; i += kWarp) acc += xk[i] * static_cast<T>(theta[i]);
      T s = c.warp_sum(acc);
      if (cfg.policy == Policy::ucb)
        s = static_cast<T>(static_cast<double>(s) + cfg.alpha * m_sqrt(warp_quadratic(c, a.cov_root, d, xk)));
      if (c.lane() == 0) s0[k] = s;
    }
    c.sync();
    bool ok = true;
    if (tid == 0) ok = vote<T>(c, K, mask, ties_first, [&](long k) { return s0[k]; }, counts, shares);
    if (block_sum(c, ok ? 0.0 : 1.0, red.value) > 0.0) {
      if (tid == 0) c.atomic_min(&errors[1], static_cast<unsigned long long>(b));
      return;
    }
    for (long k = tid; k < K; k += nt) out[k] = static_cast<double>(counts[k]) + shares[k];
    c.sync();
    return;
  }

  // G and s0 of the available actions in double, rounded to T: an element per thread.
  //   Thompson sampling, theta = mu + L^T g:  G[k, j] = (L x_k)_j = sum_{i <= j} L[j, i] x_k[i]
  //   Ensemble++ / ensemble sampling, theta = mu + A zeta:  G[k, m] = sum_i x_k[i] A[i, m]
  for (long e = tid; e < K * n; e += nt) {
    const long k = e / n;
    const int j = static_cast<int>(e % n);
    if (mask && !mask[k]) continue;
    const T* xk = X + k * d;
    double acc = 0.0;
    if (cfg.policy == Policy::thompson) {
      const double* row = a.cov_root + static_cast<long>(j) * d;
      for (int i = 0; i <= j; ++i) acc += row[i] * static_cast<double>(xk[i]);
    } else {
      for (int i = 0; i < d; ++i) acc += static_cast<double>(xk[i]) * static_cast<double>(a.factor[static_cast<long>(i) * M + j]);
    }
    G[e] = static_cast<T>(acc);
  }
  for (long k = tid; k < K; k += nt) {
    if (mask && !mask[k]) continue;
    const T* xk = X + k * d;
    double acc = 0.0;
    for (int i = 0; i < d; ++i) acc += static_cast<double>(xk[i]) * a.mean[i];
    s0[k] = static_cast<T>(acc);
  }
  c.sync();
  bad = 0.0;
  for (long e = tid; e < K * (n + 1); e += nt) {  // s0, then G, of the available actions
    const long k = e < K ? e : (e - K) / n;
    if ((!mask || mask[k]) && !is_finite(e < K ? s0[e] : G[e - K])) bad = 1.0;
  }
  if (block_sum(c, bad, red.value) > 0.0) {
    if (tid == 0) c.atomic_min(&errors[2], static_cast<unsigned long long>(b));
    return;
  }

  bool ok = true;
  long total = n_samples;
  if (cfg.policy == Policy::ensemble_sampling) {
    total = M;  // exact: the vote of each model m, scores s0 + G e_m
    for (long m = tid; m < M && ok; m += nt)
      ok = vote<T>(c, K, mask, ties_first, [&](long k) { return G[k * n + m] + s0[k]; }, counts, shares);
  } else {
    const std::uint64_t key = probability_key(cfg.seed, *a.step, a.stream);
    const bool ts = cfg.policy == Policy::thompson;
    const Distribution dist = ts ? Distribution::gaussian : cfg.reference;
    const int sparsity = ts ? 1 : cfg.reference_sparsity;
    const double scale = sqrt(static_cast<double>(n));
    T* v = V + tid;  // this thread's draw, stride nt
    for (long i = tid; i < n_samples && ok; i += nt) {
      draw<T>(dist, static_cast<int>(n), sparsity, scale, Stream{key, static_cast<std::uint64_t>(i), a.stream}, v, nt);
      ok = vote<T>(c, K, mask, ties_first,
                   [&](long k) {
                     const T* Gk = G + k * n;
                     T acc = T(0);
                     for (long j = 0; j < n; ++j) acc += Gk[j] * v[j * nt];
                     return acc + s0[k];
                   },
                   counts, shares);
    }
  }
  if (block_sum(c, ok ? 0.0 : 1.0, red.value) > 0.0) {
    if (tid == 0) c.atomic_min(&errors[1], static_cast<unsigned long long>(b));
    return;
  }
  // Counts first, one division at the end, as the CPU.
  const double inv = static_cast<double>(total);
  for (long k = tid; k < K; k += nt) out[k] = (static_cast<double>(counts[k]) + shares[k]) / inv;
  c.sync();
}

/// probabilities_kernel: actions X (K, d) shared or (B, K, d), mask 0, (K) or (B, K), out
/// (B, K) float64, errors (3) as in probability_agent, L = probability_layout(cfg, K, block size).
template <class T, class Ctx>
EPP_BODY void probability_grid(Ctx& c, const Config& cfg, const Batch<T>& s, const T* X, long K,
                               bool per_agent, const std::uint8_t* mask, bool mask_per_agent,
                               long n_samples, bool ties_first, double* out,
                               unsigned long long* errors, const ProbabilityLayout& L, double* smem,
                               const Reduce<T>& red) {
  const long d = cfg.dim;
  for (long b = c.block(); b < s.n_agents; b += c.nblocks()) {
    const T* Xb = per_agent ? X + b * K * d : X;
    const std::uint8_t* mb = mask ? (mask_per_agent ? mask + b * K : mask) : nullptr;
    probability_agent(c, cfg, s.agent(cfg, b), agent_scratch(s, b, smem), red, L, Xb, K, mb,
                      n_samples, ties_first, out + b * K, errors, b);
  }
}

}  // namespace ensemblepp::cuda::detail
