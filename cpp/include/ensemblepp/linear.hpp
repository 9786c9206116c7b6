/// @file linear.hpp
/// Per-agent kernels of the linear policies: initialisation, posterior draws and the
/// O(d^2 + dM) rank-one updates. Header templates for float and double; the CUDA bodies
/// (cuda/src/cuda_agent.hpp) implement the same formulas in the same order.
///
/// State of one agent, row-major and contiguous (docs/design.md explains the choice):
///   cov_root (d, d) double  lower-triangular square root L of the posterior covariance,
///                           Sigma = L^T L (the strictly upper part is zero), updated by
///                           Carlson's rank-one step: Sigma is positive semidefinite by
///                           construction and no solve is ever needed
///   mean     (d)    double  posterior mean mu, updated in feedback form mu += k (r - x.mu)
///   factor   (d, M) T       Ensemble++: the factor A (A A^T tracks Sigma); ensemble sampling:
///                           the model offsets D, theta_m = mu + D e_m. Both follow
///                           A <- A + k (z^T - x^T A / eta) with the step's draw z
///   step     uint64         the agent's Philox counter, advanced by one per random vector drawn
///
/// T (float or double) is the type of the factor, of the actions and of the scores. L and mu are
/// double whatever T: in float32 a covariance loses every downdate smaller than half an ulp of its
/// entries (after 3e5 steps its smallest eigenvalue stopped shrinking), and the mean's rounding is
/// amplified by cond(Sigma). The factor's rounding enters through the contraction (I - k x^T), so
/// it stays at rounding level relative to the posterior spread. All vector arithmetic of a step
/// is done in double.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "ensemblepp/distributions.hpp"
#include "ensemblepp/linear_config.hpp"

namespace ensemblepp {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using VectorMap = Eigen::Map<Vector<T>>;
template <class T>
using ConstVectorMap = Eigen::Map<const Vector<T>>;

/// Pointers to the state of one agent (see the file comment for the layout).
template <class T>
struct AgentState {
  double* cov_root;
  double* mean;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// The prior shared by all agents of a batch, in double precision:
///   cov_root (d, d)  lower-triangular L_0 with Sigma_0 = L_0^T L_0
///   mean     (d)     mu_0
///   diagonal         L_0 is diagonal (an isotropic or diagonal prior): O(dM) initialisation
struct Prior {
  const double* cov_root;
  const double* mean;
  bool diagonal;
};

/// Scratch length (doubles) that the per-agent functions need: observe() uses the first
/// 4 d + M, the forgetting step (production.hpp) keeps a pseudo-observation in the last d.
inline long scratch_size(const LinearConfig& c) {
  return 5L * c.dim + 2L * c.ensemble_size + 4;
}

namespace detail {
/// dst[0..n) = src[0..n) with streaming stores where the CPU has them (the caller fences).
inline void copy_bypassing_cache(double* dst, const double* src, long n) {
  long i = 0;
#if defined(__AVX2__)
  for (; i < n && (reinterpret_cast<std::uintptr_t>(dst + i) & 31) != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
#endif
  for (; i < n; ++i) dst[i] = src[i];
}
}  // namespace detail

/// Writes the prior state of one agent: L = L_0, mu = mu_0 and, for the policies with a factor,
/// A = L_0^T Z with the d rows of Z drawn at counter values 0, ..., d-1 of its stream (Ensemble++:
/// perturbation distribution at perturbation scale; ensemble sampling: standard normal). The
/// rows of Z are independent with E|z_k|^2 = 1, so E[Z Z^T] = I and E[A A^T] = Sigma_0 (for
/// ensemble sampling each model offset has covariance Sigma_0). Leaves the counter at d. Entry (i, m)
/// accumulates L_0[k, i] Z_km over k = i, ..., d-1 in increasing k (the CUDA body adds in the
/// same order).
/// @param bypass_cache write L with non-temporal stores (batches larger than the caches: the d x d
///        copy is most of the work, and ordinary stores would first read every line they write).
template <class T>
void init_agent(const LinearConfig& c, const Prior& p, const AgentState<T>& s, double* scratch,
                bool bypass_cache = false) {
  const int d = c.dim, M = c.ensemble_size;
  if (bypass_cache)
    detail::copy_bypassing_cache(s.cov_root, p.cov_root, long(d) * d);
  else
    for (long i = 0; i < long(d) * d; ++i) s.cov_root[i] = p.cov_root[i];
  for (int i = 0; i < d; ++i) s.mean[i] = p.mean[i];
  *s.step = 0;
  if (!has_factor(c.policy)) return;
  for (long i = 0; i < long(d) * M; ++i) s.factor[i] = T(0);
  double* z = scratch;
  for (int k = 0; k < d; ++k) {
    const Stream st{c.seed, static_cast<std::uint64_t>(k), s.stream};
    if (c.policy == Policy::ensemble_sampling)
      draw<double>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, z);
    else
      draw<double>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, z);
    const double* lrow = p.cov_root + long(k) * d;
    for (int i = p.diagonal ? k : 0; i <= k; ++i) {
      const double lki = lrow[i];
      T* row = s.factor + long(i) * M;
      for (int m = 0; m < M; ++m) row[m] = static_cast<T>(static_cast<double>(row[m]) + lki * z[m]);
    }
  }
  *s.step = static_cast<std::uint64_t>(d);
}

/// y = mu + A v (d) in double, from the (d, M) factor of type T, terms in increasing m.
template <class T>
inline void mean_plus_factor(const double* mu, const T* A, int d, int M, const double* v, double* y) {
  for (int i = 0; i < d; ++i) {
    const T* row = A + long(i) * M;
    double acc = 0.0;
    for (int m = 0; m < M; ++m) acc += static_cast<double>(row[m]) * v[m];
    y[i] = mu[i] + acc;
  }
}

/// Writes a posterior draw (or the posterior mean for greedy and UCB) to @p theta, computed
/// in double and rounded to T once. O(dM) for the factor policies, O(d^2) for Thompson sampling.
template <class T>
void sample_theta(const LinearConfig& c, const AgentState<T>& s, T* theta, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  double* y = scratch;
  double* z = scratch + d;
  switch (c.policy) {
    case Policy::ensemble: {
      // theta = mu + A zeta.
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<double>(c.reference, M, c.reference_sparsity, std::sqrt(double(M)), st, z);
      mean_plus_factor(s.mean, s.factor, d, M, z, y);
      break;
    }
    case Policy::thompson: {
      // theta = mu + L^T g, whose covariance is L^T L = Sigma: row j of L adds g_j L[j, 0..j].
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<double>(Distribution::gaussian, d, 1, std::sqrt(double(d)), st, z);
      for (int i = 0; i < d; ++i) y[i] = s.mean[i];
      for (int j = 0; j < d; ++j) {
        const double* __restrict row = s.cov_root + long(j) * d;
        double* __restrict out = y;
        const double gj = z[j];
        for (int i = 0; i <= j; ++i) out[i] += row[i] * gj;
      }
      break;
    }
    case Policy::ensemble_sampling: {
      // Model m: theta_m = mu + D e_m.
      const Stream st{c.seed, (*s.step)++, s.stream};
      const std::uint32_t m = draw_index(st, static_cast<std::uint32_t>(M));
      for (int i = 0; i < d; ++i) y[i] = s.mean[i] + static_cast<double>(s.factor[long(i) * M + m]);
      break;
    }
    case Policy::ucb:
    case Policy::greedy:
      for (int i = 0; i < d; ++i) y[i] = s.mean[i];
      break;
  }
  for (int i = 0; i < d; ++i) theta[i] = static_cast<T>(y[i]);
}

/// Is the observation (x, r) within the bounds that keep the state finite (input_bound)?
/// Returns 0 when it is, 1 for r, 2 for x (NaN and infinity are out of bounds).
template <class T>
inline int check_observation(const LinearConfig& c, const T* x, T r) {
  const double eta = c.noise_std, bound = input_bound<T>();
  if (!(std::fabs(static_cast<double>(r)) / eta <= bound)) return 1;
  for (int k = 0; k < c.dim; ++k)
    if (!(std::fabs(static_cast<double>(x[k])) / eta <= bound)) return 2;
  return 0;
}

/// Applies one observation (x, r) to an agent, O(d^2 + dM). With u = x / eta (so the noise is 1):
///   f = L u, alpha_j = 1 + f_0^2 + ... + f_j^2                  (alpha_d-1 = 1 + u' Sigma u)
///   Carlson's step, column j of L^T for j = 0, ..., d-1 (row j of L, entries 0..j):
///     L[j, :] <- sqrt(alpha_j-1 / alpha_j) L[j, :] - f_j / sqrt(alpha_j-1 alpha_j) e
///     e       <- e + f_j L[j, :] (old row)                     (e ends as L^T f = Sigma u)
///   which gives L'^T L' = Sigma - Sigma u u^T Sigma / alpha, the exact posterior covariance;
///   k = e / alpha, mu += k (r / eta - u.mu)                     (in double)
///   factor: A += k (z^T - u^T A) with the step's draw z (Ensemble++: perturbation distribution
///   at unit scale; ensemble sampling: standard normal, the model noise w_m = eta z_m).
/// Nothing is written, and false returned, when alpha or the innovation is not finite (possible
/// only for inputs near input_bound with a prior variance beyond 1e150): the caller reports it.
/// Precondition: check_observation(c, x, r) == 0.
/// @tparam X the type of the features and reward: T, or double for the pseudo-observations of
///           forgetting (production.hpp).
template <class T, class X = T>
bool observe(const LinearConfig& c, const AgentState<T>& s, const X* x, X r, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  const double inv_eta = 1.0 / c.noise_std;
  double* __restrict u = scratch;
  double* __restrict f = scratch + d;
  double* __restrict e = scratch + 2 * d;
  double* __restrict g = scratch + 3 * d;
  for (int i = 0; i < d; ++i) u[i] = static_cast<double>(x[i]) * inv_eta;
  VectorMap<double>(f, d).noalias() =
      ConstMatrixMap<double>(s.cov_root, d, d).triangularView<Eigen::Lower>() * ConstVectorMap<double>(u, d);
  double alpha = 1.0;
  for (int j = 0; j < d; ++j) alpha += f[j] * f[j];
  double um = 0.0;
  for (int i = 0; i < d; ++i) um += u[i] * s.mean[i];
  const double innovation = static_cast<double>(r) * inv_eta - um;
  if (!(std::isfinite(alpha) && std::isfinite(innovation))) return false;
  for (int i = 0; i < d; ++i) e[i] = 0.0;
  double a_prev = 1.0;
  for (int j = 0; j < d; ++j) {
    const double fj = f[j];
    if (fj == 0.0) {  // the identity: b = 1, c = 0 would change no bit
      continue;
    }
    const double a_next = a_prev + fj * fj;
    const double b = std::sqrt(a_prev / a_next), cj = fj / std::sqrt(a_prev * a_next);
    a_prev = a_next;
    double* __restrict row = s.cov_root + long(j) * d;
    double* __restrict ee = e;
    for (int i = 0; i <= j; ++i) {
      const double l = row[i];
      row[i] = b * l - cj * ee[i];
      ee[i] += fj * l;
    }
  }
  const double inv_alpha = 1.0 / a_prev;
  const double gain = innovation * inv_alpha;
  for (int i = 0; i < d; ++i) s.mean[i] += e[i] * gain;
  if (!has_factor(c.policy)) return true;
  const Stream st{c.seed, (*s.step)++, s.stream};
  if (c.policy == Policy::ensemble)
    draw<double>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, g);
  else
    draw<double>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, g);
  for (int i = 0; i < d; ++i) {
    const T* row = s.factor + long(i) * M;
    const double ui = u[i];
    for (int m = 0; m < M; ++m) g[m] -= ui * static_cast<double>(row[m]);
  }
  for (int i = 0; i < d; ++i) {
    T* row = s.factor + long(i) * M;
    const double ki = e[i] * inv_alpha;
    for (int m = 0; m < M; ++m) row[m] = static_cast<T>(static_cast<double>(row[m]) + ki * g[m]);
  }
  return true;
}

}  // namespace ensemblepp
