// Production-loop drivers (see ensemblepp/production.hpp): ragged warm starts with optional
// forgetting, and action probabilities from many posterior draws. Parallel over agents.
#include "ensemblepp/production.hpp"

#include "parallel.hpp"

#include <Eigen/Cholesky>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ensemblepp {

namespace {

using detail::scratch_buffer;
using detail::threads_for;


// Rows of one agent from which update_ragged takes the closed form instead of the sequential
// step: at least 16, and at least d, since the closed form costs about 1.5 d^3 once against
// O(d^2) latency-bound work per sequential row.
inline long closed_form_rows_from(long d) { return d > 16 ? d : 16; }

// Applies rows (in order, mask honoured) of one agent that does not forget by the closed form of
// linear.hpp's recursion, in matrix products: with W = L^-1 (P = Sigma^-1 = W W^T), b = P mu and
// F = P A (A = Sigma F, the information-form accumulator of DESIGN.md),
//   P' = P + U^T U,  b' = b + U^T y,  F' = F + U^T Z     (U = x / eta, y = r / eta, Z the draws)
// then P' = C C^T (Cholesky), L' = C^-1, mu' = P'^-1 b', A' = P'^-1 F'. The draws are the ones
// observe() would make, at the same counters, so the result is the sequential one up to rounding
// (O(n (d^2 + dM) + d^3) in blocked products instead of n latency-bound steps). Returns false,
// having written nothing, when P' is not numerically positive definite or a result is not finite
// (the caller then takes the sequential path, which refuses such rows one by one).
template <class T>
bool closed_form_rows(const LinearConfig& c, const AgentState<T>& s, const T* x, const T* r,
                      const std::uint8_t* mask, std::int64_t begin, std::int64_t end) {
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<double, Eigen::Dynamic, 1>;
  const int d = c.dim, M = c.ensemble_size;
  const bool factor = has_factor(c.policy);
  const double inv_eta = 1.0 / c.noise_std;
  // Per-thread work matrices, kept across calls: an agent with 100 rows must not pay ten mallocs.
  thread_local Mat W, P, F, U, Z, Lnew, A_new;
  thread_local Vec bvec, y, mu_new;
  thread_local Eigen::LLT<Mat> llt;
  thread_local std::vector<double> z;
  const auto L = ConstMatrixMap<double>(s.cov_root, d, d).triangularView<Eigen::Lower>();
  W.setIdentity(d, d);
  L.solveInPlace(W);  // L^-1, lower
  P.noalias() = W * W.transpose();
  const Eigen::Map<const Vec> mu(s.mean, d);
  bvec.noalias() = P * mu;
  if (factor) F.noalias() = P * ConstMatrixMap<T>(s.factor, d, M).template cast<double>();
  const long kBlock = std::min<long>(512, end - begin);
  U.resize(kBlock, d);
  Z.resize(factor ? kBlock : 0, M);
  y.resize(kBlock);
  z.resize(static_cast<size_t>(M));
  std::uint64_t step = *s.step;
  long filled = 0;
  auto flush = [&]() {
    if (filled == 0) return;
    const auto Ub = U.topRows(filled);
    P.selfadjointView<Eigen::Lower>().rankUpdate(Ub.transpose());
    bvec.noalias() += Ub.transpose() * y.head(filled);
    if (factor) F.noalias() += Ub.transpose() * Z.topRows(filled);
    filled = 0;
  };
  for (std::int64_t i = begin; i < end; ++i) {
    if (mask && !mask[i]) continue;
    for (int k = 0; k < d; ++k) U(filled, k) = static_cast<double>(x[i * d + k]) * inv_eta;
    y[filled] = static_cast<double>(r[i]) * inv_eta;
    if (factor) {
      const Stream st{c.seed, step++, s.stream};
      if (c.policy == Policy::ensemble)
        draw<double>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, z.data());
      else
        draw<double>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, z.data());
      for (int m = 0; m < M; ++m) Z(filled, m) = z[m];
    }
    if (++filled == kBlock) flush();
  }
  flush();
  P.triangularView<Eigen::StrictlyUpper>() = P.transpose();  // rankUpdate wrote the lower half
  llt.compute(P);
  if (llt.info() != Eigen::Success) return false;
  Lnew.setIdentity(d, d);
  llt.matrixL().solveInPlace(Lnew);  // C^-1, lower
  mu_new = llt.solve(bvec);
  if (factor) A_new = llt.solve(F);
  if (!Lnew.allFinite() || !mu_new.allFinite() || (factor && !A_new.allFinite())) return false;
  MatrixMap<double> Lout(s.cov_root, d, d);
  Lout.setZero();
  Lout.triangularView<Eigen::Lower>() = Lnew;
  Eigen::Map<Vec>(s.mean, d) = mu_new;
  if (factor) MatrixMap<T>(s.factor, d, M) = A_new.template cast<T>();
  *s.step = step;
  return true;
}

}  // namespace

template <class T>
void update_ragged(const LinearConfig& c, const BatchState<T>& s, const Forgetting* forget,
                   const T* x, const T* r, const std::uint8_t* mask, const std::int64_t* offsets,
                   long n_rows) {
  const long B = s.n_agents, d = c.dim;
  if (offsets[0] != 0) throw std::invalid_argument("offsets: offsets[0] must be 0");
  for (long b = 0; b < B; ++b)
    if (offsets[b + 1] < offsets[b])
      throw std::invalid_argument("offsets: must be non-decreasing (agent " + std::to_string(b) + ")");
  if (offsets[B] != n_rows)
    throw std::invalid_argument("offsets: offsets[-1] must equal the number of rows " + std::to_string(n_rows) +
                                ", got " + std::to_string(offsets[B]));
  const bool forgets = forget && forget->gamma < 1.0;
  const std::uint64_t per_row = draws_per_observation(c, forget);
  for (long b = 0; b < B; ++b) {
    std::uint64_t rows = 0;
    for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i) {
      if (mask && !mask[i]) continue;
      ++rows;
      const int bad = check_observation(c, x + i * d, r[i]);
      if (bad) detail::throw_bad_observation(bad, b, sizeof(T) == 4);
    }
    if (per_row && (s.steps[b] >= kMaxSteps || (kMaxSteps - s.steps[b]) / per_row < rows))
      throw std::invalid_argument("steps: agent " + std::to_string(b) +
                                  " has used up its random stream (2**48 draws)");
  }
  const double work = double(n_rows) * d * (d + c.ensemble_size) + double(B) * d * d;
  std::atomic<long> refused{-1};
  detail::parallel_ranges(B, threads_for(work), [&](long lo, long hi) {
    double* buf = scratch_buffer<double>(0, scratch_size(c)).data();
    for (long b = lo; b < hi; ++b) {
      const AgentState<T> st = s.agent(c, b);
      if (!forgets && offsets[b + 1] - offsets[b] >= closed_form_rows_from(d) &&
          closed_form_rows(c, st, x, r, mask, offsets[b], offsets[b + 1]))
        continue;
      for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i) {
        if (mask && !mask[i]) continue;
        const bool ok = forgets ? observe_forgetting(c, *forget, st, forget->updates + b, x + i * d, r[i], buf)
                                : observe(c, st, x + i * d, r[i], buf);
        if (!ok) {
          detail::record_refusal(refused, b);
          break;
        }
      }
    }
  }, offsets);
  detail::throw_if_refused(refused);
}

namespace {

// Adds the probability mass of one scored draw to acc (K): 1 to the best available action,
// or 1 / (number tied) to each of the tied best ones. Returns false on a non-finite score.
template <class T>
bool vote(const T* scores, long K, const std::uint8_t* mask, bool ties_first, double weight, double* acc) {
  long best = -1, tied = 0;
  T top = T(0);
  for (long k = 0; k < K; ++k) {
    if (mask && !mask[k]) continue;
    const T v = scores[k];
    if (!std::isfinite(v)) return false;
    if (best < 0 || v > top) {
      best = k;
      top = v;
      tied = 1;
    } else if (v == top) {
      ++tied;
    }
  }
  if (ties_first || tied == 1) {
    acc[best] += weight;
    return true;
  }
  const double share = weight / static_cast<double>(tied);
  for (long k = best; k < K; ++k)
    if ((!mask || mask[k]) && scores[k] == top) acc[k] += share;
  return true;
}

// Probabilities of one agent, written to out (K). Returns 0, or 1 for a non-finite state and 2
// for a non-finite score.
template <class T>
int agent_probabilities(const LinearConfig& c, const AgentState<T>& s, const T* X, long K,
                        const std::uint8_t* mask, long n_samples, bool ties_first, double* out) {
  const int d = c.dim, M = c.ensemble_size;
  std::fill(out, out + K, 0.0);
  // Masked actions may hold anything (act() ignores them too): score zeros in their place.
  // Available ones must be finite.
  RowMatrix<T> masked;
  for (long k = 0; k < K; ++k) {
    if (mask && !mask[k]) continue;
    for (int i = 0; i < d; ++i)
      if (!std::isfinite(X[k * d + i])) return 2;
  }
  if (mask) {
    masked = ConstMatrixMap<T>(X, K, d);
    for (long k = 0; k < K; ++k)
      if (!mask[k]) masked.row(k).setZero();
    X = masked.data();
  }
  std::vector<T>& sc = scratch_buffer<T>(1, static_cast<size_t>(K) * 256 + d);
  T* buf = sc.data();
  if (c.policy == Policy::greedy || c.policy == Policy::ucb) {
    T* theta = buf + K;
    double* work = scratch_buffer<double>(2, scratch_size(c)).data();
    sample_theta(c, s, theta, work);  // the mean: no draw, the counter is untouched
    for (int i = 0; i < d; ++i)
      if (!std::isfinite(theta[i])) return 1;
    ConstMatrixMap<T> Xm(X, K, d);
    VectorMap<T> scores(buf, K);
    scores.noalias() = Xm * ConstVectorMap<T>(theta, d);
    if (c.policy == Policy::ucb) {
      // The LinUCB bonus alpha |L x| for all actions at once, as act() computes it.
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic> Y = Xm.transpose().template cast<double>();
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic> Z =
          ConstMatrixMap<double>(s.cov_root, d, d).triangularView<Eigen::Lower>() * Y;
      for (long k = 0; k < K; ++k)
        buf[k] = static_cast<T>(static_cast<double>(buf[k]) + c.alpha * Z.col(k).norm());
    }
    return vote(buf, K, mask, ties_first, 1.0, out) ? 0 : 2;
  }
  // Scores are linear in the random vector: X theta = X mu + G v with v the draw, so G (K, n)
  // and s0 = X mu (K) are formed once and each draw costs K n multiply-adds (n = M or d).
  // Every element is computed by the same loop in the same order (in double, rounded to T once,
  // as the CUDA body): equal action rows then get bit-equal scores, so exactly tied actions share
  // their votes evenly. Eigen's blocked products round two equal rows differently.
  const int n = c.policy == Policy::thompson ? d : M;
  std::vector<T>& gs = scratch_buffer<T>(2, static_cast<size_t>(K) * (n + 1));
  T* G = gs.data();  // (K, n)
  T* s0 = G + K * n;
  bool finite = true;
  for (long k = 0; k < K; ++k) {
    const T* xk = X + k * d;
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      if (c.policy == Policy::thompson) {
        // theta = mu + L^T g: G[k, j] = (L x_k)_j.
        const double* row = s.cov_root + long(j) * d;
        for (int i = 0; i <= j; ++i) acc += row[i] * static_cast<double>(xk[i]);
      } else {
        // Ensemble++ theta = mu + A zeta; ensemble sampling theta_m = mu + D e_m.
        for (int i = 0; i < d; ++i) acc += static_cast<double>(xk[i]) * static_cast<double>(s.factor[long(i) * M + j]);
      }
      G[k * n + j] = static_cast<T>(acc);
      finite = finite && std::isfinite(G[k * n + j]);
    }
    double acc = 0.0;
    for (int i = 0; i < d; ++i) acc += static_cast<double>(xk[i]) * s.mean[i];
    s0[k] = static_cast<T>(acc);
    finite = finite && std::isfinite(s0[k]);
  }
  if (!finite) return 1;
  if (c.policy == Policy::ensemble_sampling) {
    // Counts first, one division at the end: the row then sums to 1 up to a few ulps.
    for (int m = 0; m < M; ++m) {
      for (long k = 0; k < K; ++k) buf[k] = G[k * n + m] + s0[k];
      if (!vote(buf, K, mask, ties_first, 1.0, out)) return 2;
    }
    for (long k = 0; k < K; ++k) out[k] /= static_cast<double>(M);
    return 0;
  }
  const std::uint64_t key = probability_key(c.seed, *s.step, s.stream);
  // G transposed (n, K), so that one draw's scores are n vectorised passes over the actions:
  // score_k = (0 + G[k, 0] v_0 + ... + G[k, n-1] v_n-1) + s0_k, every k by the same operations.
  // The draws of a chunk are made first, together: interleaving each draw's libm calls with the
  // vectorised scoring made the draws twice as slow (measured).
  constexpr long kChunk = 256;
  const long W = std::min(kChunk, n_samples);
  std::vector<T>& vs = scratch_buffer<T>(0, static_cast<size_t>(n) * (K + W));
  T* GT = vs.data();
  T* V = GT + n * K;  // (W, n): draw q at V + q n
  for (long k = 0; k < K; ++k)
    for (int j = 0; j < n; ++j) GT[j * K + k] = G[k * n + j];
  for (long i0 = 0; i0 < n_samples; i0 += kChunk) {
    const long m = std::min(kChunk, n_samples - i0);
    for (long q = 0; q < m; ++q) {
      const Stream st{key, static_cast<std::uint64_t>(i0 + q), s.stream};
      if (c.policy == Policy::thompson)
        draw<T>(Distribution::gaussian, n, 1, std::sqrt(double(n)), st, V + q * n);
      else
        draw<T>(c.reference, n, c.reference_sparsity, std::sqrt(double(n)), st, V + q * n);
    }
    for (long q = 0; q < m; ++q) {
      const T* v = V + q * n;
      T* __restrict sc = buf;
      for (long k = 0; k < K; ++k) sc[k] = T(0);
      for (int j = 0; j < n; ++j) {
        const T vj = v[j];
        const T* __restrict g = GT + j * K;
        for (long k = 0; k < K; ++k) sc[k] += g[k] * vj;
      }
      for (long k = 0; k < K; ++k) sc[k] += s0[k];
      if (!vote(buf, K, mask, ties_first, 1.0, out)) return 2;
    }
  }
  for (long k = 0; k < K; ++k) out[k] /= static_cast<double>(n_samples);
  return 0;
}

}  // namespace

template <class T>
void action_probabilities(const LinearConfig& c, const BatchState<T>& s, const ActionSet<T>& a,
                          long n_samples, bool ties_first, double* out) {
  const long B = s.n_agents, d = c.dim, K = a.n_actions;
  if (K < 1) throw std::invalid_argument("actions: the action set is empty");
  if (n_samples < 1 || static_cast<std::uint64_t>(n_samples) > kMaxSteps)
    throw std::invalid_argument("n_samples: must be in [1, 2**48]");
  if (a.mask) {
    const long rows = a.mask_per_agent ? B : 1;
    for (long b = 0; b < rows; ++b) {
      const std::uint8_t* m = a.mask + b * K;
      if (std::none_of(m, m + K, [](std::uint8_t v) { return v != 0; }))
        throw std::invalid_argument("mask: every action of agent " + std::to_string(b) + " is masked out");
    }
  }
  const bool sampled = c.policy == Policy::ensemble || c.policy == Policy::thompson;
  const double per_agent = double(K) * d * d + (sampled ? double(n_samples) * K * std::max(c.ensemble_size, c.dim) : 0.0);
  std::atomic<long> failed{-1};
  std::atomic<int> reason{0};
  detail::parallel_ranges(B, threads_for(per_agent * B), [&](long lo, long hi) {
    for (long b = lo; b < hi; ++b) {
      const T* X = a.data + (a.per_agent ? b * K * d : 0);
      const std::uint8_t* m = a.mask ? a.mask + (a.mask_per_agent ? b * K : 0) : nullptr;
      const int bad = agent_probabilities(c, s.agent(c, b), X, K, m, n_samples, ties_first, out + b * K);
      if (bad) {
        long expected = -1;
        if (failed.compare_exchange_strong(expected, b)) reason = bad;
      }
    }
  });
  if (failed >= 0) {
    if (reason == 1)
      throw std::invalid_argument("state: agent " + std::to_string(failed.load()) +
                                  " has a NaN or infinite state (its posterior is not finite)");
    throw std::invalid_argument("actions: contains NaN or infinite values");
  }
}

#define EPP_INSTANTIATE(T)                                                                             \
  template void update_ragged<T>(const LinearConfig&, const BatchState<T>&, const Forgetting*, const T*, \
                                 const T*, const std::uint8_t*, const std::int64_t*, long);           \
  template void action_probabilities<T>(const LinearConfig&, const BatchState<T>&, const ActionSet<T>&, \
                                        long, bool, double*);
EPP_INSTANTIATE(float)
EPP_INSTANTIATE(double)
#undef EPP_INSTANTIATE

}  // namespace ensemblepp
