// Batched CPU drivers (see ensemblepp/batch.hpp). Parallel over agents for large batches and
// over action chunks for a single agent with a large action set.
#include "ensemblepp/batch.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ensemblepp {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_max_threads(int n) {
  if (n < 1) throw std::invalid_argument("n: must be >= 1");
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

void check_steps(const std::uint64_t* steps, long n_agents, std::uint64_t draws) {
  if (draws == 0) return;
  for (long b = 0; b < n_agents; ++b)
    if (steps[b] >= kMaxSteps || kMaxSteps - steps[b] < draws)
      throw std::invalid_argument("steps: agent " + std::to_string(b) +
                                  " has used up its random stream (2**48 draws)");
}

namespace {

using detail::parallel_ranges;
using detail::threads_for;

using detail::scratch_buffer;

struct Best {
  long index = -1;
  double value = -std::numeric_limits<double>::infinity();
  bool finite = true;
};

// Argmax over scores[0..n) of the available entries; ties go to the lowest index.
template <class T>
inline void scan(const T* scores, long n, long offset, const std::uint8_t* mask, Best& best) {
  for (long k = 0; k < n; ++k) {
    const T v = scores[k];
    if (mask && !mask[offset + k]) continue;
    if (!std::isfinite(v)) {
      best.finite = false;
      continue;
    }
    if (best.index < 0 || v > best.value) {
      best.value = v;
      best.index = offset + k;
    }
  }
}

inline void merge(Best& into, const Best& other) {
  into.finite = into.finite && other.finite;
  if (other.index >= 0 && (into.index < 0 || other.value > into.value ||
                           (other.value == into.value && other.index < into.index))) {
    into.index = other.index;
    into.value = other.value;
  }
}

template <class T>
void check_mask(long B, const ActionSet<T>& a) {
  if (!a.mask) return;
  const long rows = a.mask_per_agent ? B : 1;
  for (long b = 0; b < rows; ++b) {
    const std::uint8_t* m = a.mask + b * a.n_actions;
    if (std::none_of(m, m + a.n_actions, [](std::uint8_t v) { return v != 0; }))
      throw std::invalid_argument("mask: every action of agent " + std::to_string(b) +
                                  " is masked out");
  }
}

// Scores of actions X (K, d) for one agent: theta.x, or the LinUCB index x.mu + alpha |L x|
// (theta is then mu; |L x|^2 = x' Sigma x), by one triangular product per chunk of actions.
template <class T>
void score_block(const LinearConfig& c, const AgentState<T>& s, const T* theta, const T* X,
                 long K, T* scores, std::vector<double>& work) {
  const int d = c.dim;
  ConstMatrixMap<T> Xm(X, K, d);
  VectorMap<T> out(scores, K);
  out.noalias() = Xm * ConstVectorMap<T>(theta, d);
  if (c.policy != Policy::ucb) return;
  constexpr long kChunk = 256;
  work.resize(static_cast<size_t>(std::min(K, kChunk)) * d * 2);
  const auto L = ConstMatrixMap<double>(s.cov_root, d, d).triangularView<Eigen::Lower>();
  const double alpha = c.alpha;
  for (long k0 = 0; k0 < K; k0 += kChunk) {
    const long n = std::min(kChunk, K - k0);
    // Column k of Y (d, n), column-major, is x_{k0+k}: the same layout as the rows of X.
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>> Y(work.data(), d, n);
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>> Z(work.data() + d * n, d, n);
    Y = Xm.middleRows(k0, n).transpose().template cast<double>();
    Z.noalias() = L * Y;
    for (long k = 0; k < n; ++k)
      scores[k0 + k] = static_cast<T>(static_cast<double>(scores[k0 + k]) + alpha * Z.col(k).norm());
  }
}

template <class T>
bool finite_vector(const T* v, long n) {
  for (long i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

}  // namespace

template <class T>
void initialize(const LinearConfig& c, const BatchState<T>& s, const Prior& prior, long first) {
  const long B = s.n_agents, d = c.dim;
  const double work = double(B - first) * d * (d + (prior.diagonal ? 1.0 : d / 2.0) * c.ensemble_size);
  // A batch whose roots outgrow the caches (64 MB: more than the last-level cache a core gets on
  // common servers) makes the prior copy a pure store stream: bypass the cache.
  const bool bypass = double(B - first) * d * d * sizeof(double) > 64e6;
  parallel_ranges(B - first, threads_for(work), [&](long lo, long hi) {
    double* scratch = scratch_buffer<double>(0, scratch_size(c)).data();
    for (long b = first + lo; b < first + hi; ++b) init_agent(c, prior, s.agent(c, b), scratch, bypass);
#if defined(__AVX2__)
    if (bypass) _mm_sfence();  // streaming stores are weakly ordered: publish them before returning
#endif
  });
}

template <class T>
void posterior_covariance(const LinearConfig& c, const BatchState<T>& s, T* out) {
  const long d = c.dim;
  parallel_ranges(s.n_agents, threads_for(double(d) * d * d * s.n_agents), [&](long lo, long hi) {
    for (long b = lo; b < hi; ++b) {
      const auto L = ConstMatrixMap<double>(s.cov_root + b * d * d, d, d);
      RowMatrix<double> S = L.transpose() * L.triangularView<Eigen::Lower>();
      MatrixMap<T> o(out + b * d * d, d, d);
      for (long i = 0; i < d; ++i)
        for (long j = 0; j <= i; ++j) o(i, j) = o(j, i) = static_cast<T>(S(j, i));
    }
  });
}

template <class T>
void posterior_factor(const LinearConfig& c, const BatchState<T>& s, T* out) {
  const long d = c.dim, M = c.ensemble_size;
  if (!s.factor) throw std::invalid_argument("factor: this policy keeps no factor");
  parallel_ranges(s.n_agents, threads_for(double(d) * M * s.n_agents), [&](long lo, long hi) {
    for (long b = lo; b < hi; ++b) {
      MatrixMap<T> o(out + b * d * M, d, M);
      if (c.policy == Policy::ensemble_sampling) {
        const ConstVectorMap<double> mu(s.mean + b * d, d);
        o = (ConstMatrixMap<T>(s.factor + b * d * M, d, M).template cast<double>().colwise() + mu).template cast<T>();
      } else {
        o = ConstMatrixMap<T>(s.factor + b * d * M, d, M);
      }
    }
  });
}

template <class T>
void sample(const LinearConfig& c, const BatchState<T>& s, T* theta) {
  const long B = s.n_agents, d = c.dim;
  check_steps(s.steps, B, draws_when_acting(c.policy) ? 1 : 0);
  const int nt = threads_for(double(B) * d * std::max(c.ensemble_size, c.dim));
  parallel_ranges(B, nt, [&](long lo, long hi) {
    double* scratch = scratch_buffer<double>(0, scratch_size(c)).data();
    for (long b = lo; b < hi; ++b) sample_theta(c, s.agent(c, b), theta + b * d, scratch);
  });
}

template <class T>
void act(const LinearConfig& c, const BatchState<T>& s, const ActionSet<T>& a,
         std::int64_t* out, T* theta) {
  const long B = s.n_agents, d = c.dim, K = a.n_actions;
  if (K < 1) throw std::invalid_argument("actions: the action set is empty");
  check_mask(B, a);
  // act changes nothing but the counters: keep them to restore on bad input.
  std::uint64_t saved_one = s.steps[0];
  std::vector<std::uint64_t> saved;
  if (B > 1) saved.assign(s.steps, s.steps + B);
  sample(c, s, theta);
  for (long b = 0; b < B; ++b) {
    if (!finite_vector(theta + b * d, d)) {
      if (B > 1) std::copy(saved.begin(), saved.end(), s.steps);
      else s.steps[0] = saved_one;
      throw std::invalid_argument("state: agent " + std::to_string(b) +
                                  " has a NaN or infinite state (its posterior draw is not finite)");
    }
  }

  bool finite = true;
  const bool ucb = c.policy == Policy::ucb;
  const double per_agent = double(K) * d * (ucb ? d + 1 : 1);
  if (B == 1 && !ucb && !a.per_agent) {
    // One agent, many actions: split the action set across threads.
    const int nt = threads_for(per_agent);
    constexpr int kMaxThreads = 16;  // one slot per thread; more would be initialised for nothing
    Best best[kMaxThreads];
    const int used = std::min(nt, kMaxThreads);
    parallel_ranges(used, used, [&](long t0, long t1) {
      for (long t = t0; t < t1; ++t) {
        const long lo = K * t / used, hi = K * (t + 1) / used;
        constexpr long kChunk = 1024;
        T* scores = scratch_buffer<T>(1, kChunk).data();
        for (long k0 = lo; k0 < hi; k0 += kChunk) {
          const long n = std::min(kChunk, hi - k0);
          const ConstMatrixMap<T> Xb(a.data + k0 * d, n, d);
          VectorMap<T>(scores, n).noalias() = Xb * ConstVectorMap<T>(theta, d);
          scan(scores, n, k0, a.mask, best[t]);
        }
      }
    });
    for (int t = 1; t < used; ++t) merge(best[0], best[t]);
    finite = best[0].finite;
    out[0] = best[0].index;
  } else if (!a.per_agent && !ucb) {
    // Many agents, shared actions: one matrix product per block of agents.
    constexpr long kAgents = 32;
    const long blocks = (B + kAgents - 1) / kAgents;
    std::atomic<bool> ok{true};
    parallel_ranges(blocks, threads_for(per_agent * B), [&](long lo, long hi) {
      RowMatrix<T> S;
      bool all_finite = true;
      for (long blk = lo; blk < hi; ++blk) {
        const long b0 = blk * kAgents, nb = std::min(kAgents, B - b0);
        S.resize(nb, K);
        S.noalias() = ConstMatrixMap<T>(theta + b0 * d, nb, d) *
                      ConstMatrixMap<T>(a.data, K, d).transpose();
        for (long i = 0; i < nb; ++i) {
          Best best;
          const std::uint8_t* m = a.mask ? a.mask + (a.mask_per_agent ? (b0 + i) * K : 0) : nullptr;
          scan(S.row(i).data(), K, 0, m, best);
          all_finite = all_finite && best.finite;
          out[b0 + i] = best.index;
        }
      }
      if (!all_finite) ok = false;
    });
    finite = ok;
  } else {
    std::atomic<bool> ok{true};
    parallel_ranges(B, threads_for(per_agent * B), [&](long lo, long hi) {
      T* scores = scratch_buffer<T>(1, K).data();
      std::vector<double>& work = scratch_buffer<double>(2, 0);
      bool all_finite = true;
      for (long b = lo; b < hi; ++b) {
        const T* X = a.data + (a.per_agent ? b * K * d : 0);
        score_block(c, s.agent(c, b), theta + b * d, X, K, scores, work);
        Best best;
        const std::uint8_t* m = a.mask ? a.mask + (a.mask_per_agent ? b * K : 0) : nullptr;
        scan(scores, K, 0, m, best);
        all_finite = all_finite && best.finite;
        out[b] = best.index;
      }
      if (!all_finite) ok = false;
    });
    finite = ok;
  }
  if (!finite) {
    if (B > 1) std::copy(saved.begin(), saved.end(), s.steps);
    else s.steps[0] = saved_one;
    throw std::invalid_argument("actions: contains NaN or infinite values");
  }
}

template <class T>
void act_sphere(const LinearConfig& c, const BatchState<T>& s, T* out) {
  if (c.policy == Policy::ucb)
    throw std::invalid_argument("actions: LinUCB has no closed-form maximiser on the sphere");
  sample(c, s, out);
  const long d = c.dim;
  for (long b = 0; b < s.n_agents; ++b) {
    VectorMap<T> th(out + b * d, d);
    const T n = th.norm();
    if (n > T(0)) {
      th /= n;
    } else {
      th.setZero();
      th[0] = T(1);  // theta = 0 makes every unit vector optimal: pick e_1
    }
  }
}

template <class T>
void update(const LinearConfig& c, const BatchState<T>& s, const T* x, const T* r,
            const std::uint8_t* mask, long n_obs) {
  const long B = s.n_agents, d = c.dim;
  const bool draws = c.policy == Policy::ensemble || c.policy == Policy::ensemble_sampling;
  check_steps(s.steps, B, draws ? static_cast<std::uint64_t>(n_obs) : 0);
  for (long b = 0; b < B; ++b) {
    for (long j = 0; j < n_obs; ++j) {
      const long i = b * n_obs + j;
      if (mask && !mask[i]) continue;
      const int bad = check_observation(c, x + i * d, r[i]);
      if (bad) detail::throw_bad_observation(bad, b, sizeof(T) == 4);
    }
  }
  const int nt = threads_for(double(B) * n_obs * d * (d + c.ensemble_size));
  std::atomic<long> refused{-1};
  parallel_ranges(B, nt, [&](long lo, long hi) {
    double* scratch = scratch_buffer<double>(0, scratch_size(c)).data();
    for (long b = lo; b < hi; ++b) {
      const AgentState<T> st = s.agent(c, b);
      for (long j = 0; j < n_obs; ++j) {
        const long i = b * n_obs + j;
        if (mask && !mask[i]) continue;
        if (!observe(c, st, x + i * d, r[i], scratch)) {
          detail::record_refusal(refused, b);
          break;
        }
      }
    }
  });
  detail::throw_if_refused(refused);
}

#define EPP_INSTANTIATE(T)                                                                   \
  template void act<T>(const LinearConfig&, const BatchState<T>&, const ActionSet<T>&,       \
                       std::int64_t*, T*);                                                   \
  template void act_sphere<T>(const LinearConfig&, const BatchState<T>&, T*);                \
  template void sample<T>(const LinearConfig&, const BatchState<T>&, T*);                    \
  template void update<T>(const LinearConfig&, const BatchState<T>&, const T*, const T*,     \
                          const std::uint8_t*, long);                                        \
  template void initialize<T>(const LinearConfig&, const BatchState<T>&, const Prior&, long); \
  template void posterior_covariance<T>(const LinearConfig&, const BatchState<T>&, T*);      \
  template void posterior_factor<T>(const LinearConfig&, const BatchState<T>&, T*);
EPP_INSTANTIATE(float)
EPP_INSTANTIATE(double)
#undef EPP_INSTANTIATE

}  // namespace ensemblepp
