/// @file linear.hpp
/// Per-agent kernels of the linear policies: initialisation, posterior draws and the
/// O(d^2 + dM) rank-one updates. Header templates for float and double; the CUDA bodies
/// (cuda/src/cuda_agent.hpp) implement the same formulas with each entry's operations in the
/// same order (the terms of a dot product such as f = L u are grouped differently there: the
/// two agree to rounding, tests/test_cuda_emulated.py).
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
#include <type_traits>

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
/// 7 d + M + 1, the forgetting step (production.hpp) keeps a pseudo-observation in the last d.
inline long scratch_size(const LinearConfig& c) {
  return 8L * c.dim + 2L * c.ensemble_size + 8;
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

namespace detail {
/// y[r] = mu[r] + sum_m A[r, m] v[m] for the R rows at A (terms in increasing m, as one row
/// alone): the R sums advance together so that their additions do not wait on each other.
template <int R, class T>
inline void mean_plus_rows(const double* mu, const T* A, int M, const double* v, double* y) {
  double acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0.0;
  for (int m = 0; m < M; ++m) {
    const double vm = v[m];
    for (int r = 0; r < R; ++r) acc[r] = fused(static_cast<double>(A[long(r) * M + m]), vm, acc[r]);
  }
  for (int r = 0; r < R; ++r) y[r] = mu[r] + acc[r];
}

/// Consecutive values (double or float) as one value of V in double, and back (rounded once to
/// float for a float destination): V is double, or f64x4 (four lanes) where the CPU has AVX2.
inline double load_lanes(const double* p, double) { return *p; }
inline double load_lanes(const float* p, double) { return static_cast<double>(*p); }
inline void store_lanes(double* p, double v) { *p = v; }
inline void store_lanes(float* p, double v) { *p = static_cast<float>(v); }
#if defined(EPP_SIMD_NORMALS)
inline f64x4 load_lanes(const double* p, f64x4) { return (f64x4)_mm256_loadu_pd(p); }
inline f64x4 load_lanes(const float* p, f64x4) { return (f64x4)_mm256_cvtps_pd(_mm_loadu_ps(p)); }
inline void store_lanes(double* p, f64x4 v) { _mm256_storeu_pd(p, (__m256d)v); }
inline void store_lanes(float* p, f64x4 v) { _mm_storeu_ps(p, _mm256_cvtpd_ps((__m256d)v)); }
#endif

/// g[0..W) -= sum_i u[i] A[i, 0..W) over the d rows of A (row stride M), in increasing i, with
/// the W sums held in registers as W / lanes(V) values of V (a sum kept in memory waits on its
/// own store at every row).
template <int W, class V, class T>
inline void subtract_rows(const T* A, long M, int d, const double* u, double* g) {
  constexpr int n = sizeof(V) / sizeof(double), R = W / n;
  static_assert(W % n == 0, "W must be a multiple of the lane count");
  V acc[R];
  for (int k = 0; k < R; ++k) acc[k] = load_lanes(g + k * n, V{});
  for (int i = 0; i < d; ++i) {
    const T* row = A + i * M;
    const V ui = splat<V>(-u[i]);
    for (int k = 0; k < R; ++k) acc[k] = fused(ui, load_lanes(row + k * n, V{}), acc[k]);
  }
  for (int k = 0; k < R; ++k) store_lanes(g + k * n, acc[k]);
}

/// Carlson's step on the W columns of L (row stride d) from column i0, over the rows j >= i0,
/// with that part of e held in registers as W / lanes(V) values of V; per entry the operations
/// of observe()'s comment, each multiply-add one fused step (the same rounding in every lane).
/// A row skips the lanes that lie wholly right of its diagonal (zero, with e zero beside them);
/// the zeros right of the diagonal in the lanes it visits stay zero.
template <int W, class V>
inline void carlson_columns(double* L, long d, int i0, const double* f, const double* b, const double* c,
                            double* e) {
  constexpr int n = sizeof(V) / sizeof(double), R = W / n;
  static_assert(W % n == 0, "W must be a multiple of the lane count");
  V acc[R];
  for (int k = 0; k < R; ++k) acc[k] = load_lanes(e + k * n, V{});
  for (long j = i0; j < d; ++j) {
    const double fj = f[j];
    if (fj == 0.0) continue;  // the identity: b = 1, c = 0 would change no bit
    const V bj = splat<V>(b[j]), cj = splat<V>(c[j]), fv = splat<V>(fj);
    double* row = L + j * d + i0;
    for (int k = 0; k < R; ++k) {
      if (k * n > j - i0) break;
      const V l = load_lanes(row + k * n, V{});
      store_lanes(row + k * n, fused(bj, l, -(cj * acc[k])));
      acc[k] = fused(fv, l, acc[k]);
    }
  }
  for (int k = 0; k < R; ++k) store_lanes(e + k * n, acc[k]);
}

/// y[0..W) += sum_{j >= i0} L[j, i0..i0+W) g_j (L^T g on W columns of L from column i0, row
/// stride d), terms in increasing j, the W sums held in registers as in carlson_columns(), which
/// also skips the lanes right of each row's diagonal.
template <int W, class V>
inline void root_transposed_columns(const double* L, long d, int i0, const double* g, double* y) {
  constexpr int n = sizeof(V) / sizeof(double), R = W / n;
  static_assert(W % n == 0, "W must be a multiple of the lane count");
  V acc[R];
  for (int k = 0; k < R; ++k) acc[k] = load_lanes(y + k * n, V{});
  for (long j = i0; j < d; ++j) {
    const V gj = splat<V>(g[j]);
    const double* row = L + j * d + i0;
    for (int k = 0; k < R; ++k) {
      if (k * n > j - i0) break;
      acc[k] = fused(load_lanes(row + k * n, V{}), gj, acc[k]);
    }
  }
  for (int k = 0; k < R; ++k) store_lanes(y + k * n, acc[k]);
}

/// A[i, 0..W) += (e_i s) g[0..W) for the d rows of A (row stride M), g held in registers.
template <int W, class V, class T>
inline void add_outer_rows(T* A, long M, int d, const double* e, double s, const double* g) {
  constexpr int n = sizeof(V) / sizeof(double), R = W / n;
  static_assert(W % n == 0, "W must be a multiple of the lane count");
  V gv[R];
  for (int k = 0; k < R; ++k) gv[k] = load_lanes(g + k * n, V{});
  for (int i = 0; i < d; ++i) {
    T* row = A + i * M;
    const V ki = splat<V>(e[i] * s);
    for (int k = 0; k < R; ++k) store_lanes(row + k * n, fused(ki, gv[k], load_lanes(row + k * n, V{})));
  }
}

/// f[r] = sum_i L[j + r, i] u[i] for the R rows from j (row stride d) over the columns
/// 0..j+R-1 (the entries right of a row's diagonal are zero): each row sums lanes(V) partial
/// sums over the columns in increasing order, then adds its lanes pairwise ((0+1) + (2+3)), so
/// the result depends on the lane type and not on R.
template <int R, class V>
inline void root_rows_times(const double* L, long d, long j, const double* u, double* f) {
  constexpr int n = sizeof(V) / sizeof(double);
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = splat<V>(0.0);
  const long cols = j + R;
  long i = 0;
  for (; i + n <= cols; i += n) {
    const V ui = load_lanes(u + i, V{});
    for (int r = 0; r < R; ++r) acc[r] = fused(load_lanes(L + (j + r) * d + i, V{}), ui, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    double lanes[n];
    store_lanes(lanes, acc[r]);
    double sum = n == 4 ? (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) : lanes[0];
    for (long k = i; k < cols; ++k) sum = fused(L[(j + r) * d + k], u[k], sum);
    f[r] = sum;
  }
}
}  // namespace detail

/// The widest lane type of this build's vector arithmetic (four AVX2 doubles, or one double).
#if defined(EPP_SIMD_NORMALS)
using LaneV = detail::f64x4;
#else
using LaneV = double;
#endif

/// Calls fn(W, lane, i) over the indices 0..d-1 (columns of L, or of the factor) in pieces
/// starting at i: blocks of W = 16 and, when d is not a multiple of 16, pieces of W = 4 then
/// W = 1 at the end; W is a std::integral_constant and lane a value of the lane type to use
/// (LaneV, or double for single indices).
template <class F>
inline void for_lane_blocks(int d, F&& fn) {
  int i = 0;
  for (; i + 16 <= d; i += 16) fn(std::integral_constant<int, 16>{}, LaneV{}, i);
  for (; i + 4 <= d; i += 4) fn(std::integral_constant<int, 4>{}, LaneV{}, i);
  for (; i < d; ++i) fn(std::integral_constant<int, 1>{}, double{}, i);
}

/// y = mu + A v (d) in double, from the (d, M) factor of type T, terms in increasing m.
template <class T>
inline void mean_plus_factor(const double* mu, const T* A, int d, int M, const double* v, double* y) {
  int i = 0;
  for (; i + 8 <= d; i += 8) detail::mean_plus_rows<8>(mu + i, A + long(i) * M, M, v, y + i);
  for (; i < d; ++i) detail::mean_plus_rows<1>(mu + i, A + long(i) * M, M, v, y + i);
}

/// g -= A^T u (M) in double, from the (d, M) factor of type T, terms in increasing i.
template <class T>
inline void subtract_factor_transposed(const T* A, int d, int M, const double* u, double* g) {
  for_lane_blocks(M, [&](auto w, auto lane, int m) {
    detail::subtract_rows<decltype(w)::value, decltype(lane)>(A + m, M, d, u, g + m);
  });
}

/// f = L u for the lower-triangular d x d root L (row-major): O(d^2 / 2), four rows at a time.
inline void root_times(const double* L, int d, const double* u, double* f) {
  int j = 0;
  for (; j + 4 <= d; j += 4) detail::root_rows_times<4, LaneV>(L, d, j, u, f + j);
  for (; j < d; ++j) detail::root_rows_times<1, LaneV>(L, d, j, u, f + j);
}

/// A += (e s) g^T for the (d, M) factor of type T, each entry one fused step in double rounded
/// to T once.
template <class T>
inline void add_outer_to_factor(T* A, int d, int M, const double* e, double s, const double* g) {
  for_lane_blocks(M, [&](auto w, auto lane, int m) {
    detail::add_outer_rows<decltype(w)::value, decltype(lane)>(A + m, M, d, e, s, g + m);
  });
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
      // Entry i sums its terms in increasing j, over blocks of columns whose sums stay in
      // registers (a sum kept in memory waits on its own store at every row).
      for (int i = 0; i < d; ++i) y[i] = s.mean[i];
      for_lane_blocks(d, [&](auto w, auto lane, int i) {
        detail::root_transposed_columns<decltype(w)::value, decltype(lane)>(s.cov_root, d, i, z, y + i);
      });
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
  root_times(s.cov_root, d, u, f);
  // alpha_j for every row (a scalar recursion), then the coefficients of all rows at once, then
  // the sweep by blocks of columns, each block's part of e in registers while it walks down the
  // rows (carlson_columns; each entry sees the rows in increasing j, as in the formula above).
  double* __restrict bj = scratch + 4 * d + M;
  double* __restrict cj = scratch + 5 * d + M;
  double* __restrict alphas = scratch + 6 * d + M;  // alphas[j] = alpha_{j-1}, alphas[0] = 1
  double alpha = 1.0;
  alphas[0] = alpha;
  for (int j = 0; j < d; ++j) alphas[j + 1] = alpha = detail::fused(f[j], f[j], alpha);
  double um = 0.0;
  for (int i = 0; i < d; ++i) um += u[i] * s.mean[i];
  const double innovation = static_cast<double>(r) * inv_eta - um;
  if (!(std::isfinite(alpha) && std::isfinite(innovation))) return false;
  {
    // With q_j = 1 / sqrt(alpha_{j-1} alpha_j): b_j = alpha_{j-1} q_j (= sqrt(alpha_{j-1} / alpha_j))
    // and c_j = f_j q_j, one square root and one division a row (the slowest instructions of the
    // update). Correctly rounded operations, so the lanes give the bits of the scalar formula.
    using V = LaneV;
    constexpr int n = sizeof(V) / sizeof(double);
    int j = 0;
    for (; j + n <= d; j += n) {
      const V lo = detail::load_lanes(alphas + j, V{}), hi = detail::load_lanes(alphas + j + 1, V{});
      const V q = detail::splat<V>(1.0) / detail::square_root(lo * hi);
      detail::store_lanes(bj + j, lo * q);
      detail::store_lanes(cj + j, detail::load_lanes(f + j, V{}) * q);
    }
    for (; j < d; ++j) {
      const double q = 1.0 / std::sqrt(alphas[j] * alphas[j + 1]);
      bj[j] = alphas[j] * q;
      cj[j] = f[j] * q;
    }
  }
  for (int i = 0; i < d; ++i) e[i] = 0.0;
  for_lane_blocks(d, [&](auto w, auto lane, int i) {
    detail::carlson_columns<decltype(w)::value, decltype(lane)>(s.cov_root, d, i, f, bj, cj, e + i);
  });
  const double inv_alpha = 1.0 / alpha;
  const double gain = innovation * inv_alpha;
  for (int i = 0; i < d; ++i) s.mean[i] += e[i] * gain;
  if (!has_factor(c.policy)) return true;
  const Stream st{c.seed, (*s.step)++, s.stream};
  if (c.policy == Policy::ensemble)
    draw<double>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, g);
  else
    draw<double>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, g);
  subtract_factor_transposed(s.factor, d, M, u, g);
  add_outer_to_factor(s.factor, d, M, e, inv_alpha, g);
  return true;
}

}  // namespace ensemblepp
