/// @file linear.hpp
/// Per-agent kernels of the linear policies: initialisation, posterior draws and the
/// O(d^2 + dM) rank-one updates. Header templates for float and double; the CUDA bodies
/// (cuda/src/cuda_agent.hpp) implement the same formulas in the same order.
///
/// State of one agent, row-major and contiguous (docs/design.md explains the choice):
///   prec   (d, d) double  upper Cholesky factor U of the posterior precision P = U^T U (the
///                         strictly lower part is zero), updated by Givens rotations: P only
///                         grows, so no downdate is ever lost to rounding
///   mean   (d)    double  posterior mean mu, updated in feedback form mu += k (r - x.mu) with
///                         k = Sigma x / (eta^2 + x' Sigma x) from U
///   factor (d, M) T       perturbation accumulator F: Ensemble++ A = P^-1 F (F_0 = P_0 A_0,
///                         F += x z^T / eta); ensemble sampling theta_m = mu + P^-1 F e_m
///                         (F_0 = P_0 (theta_m,0 - mu_0), F += x w_m^T / eta^2, w_m ~ N(0, eta^2))
///   step   uint64         the agent's Philox counter, advanced by one per random vector drawn
///
/// T (float or double) is the type of F, of the actions and of the scores. U and mu are double
/// whatever T: in float32 their rounding, re-applied at every update and amplified by cond(P)
/// (1e5 to 1e7 in a long bandit run), moved the mean by a tenth of a posterior standard deviation
/// after 1e6 steps. F is a random walk (it grows like sqrt(t)), so float rounding keeps it far
/// below the posterior spread. All vector arithmetic of a step is done in double.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>

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
  double* prec;
  double* mean;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// The prior shared by all agents of a batch, in double precision:
///   prec (d, d)  upper Cholesky factor U_0 of P_0 = Sigma_0^-1
///   mean (d)     mu_0
///   root (d, d)  upper triangular R = L^-T for Sigma_0 = L L^T, so that the initial factor
///                A_0 = L Z_0 (Ensemble++) or the initial model offsets L G (ensemble sampling)
///                have information F_0 = P_0 L Z_0 = R Z_0
///   diagonal     U_0 and R are diagonal (an isotropic or diagonal prior): O(dM) initialisation
struct Prior {
  const double* prec;
  const double* mean;
  const double* root;
  bool diagonal;
};

/// Scratch length (doubles) that the per-agent functions need.
inline long scratch_size(const LinearConfig& c) {
  return 3L * (c.dim > c.ensemble_size ? c.dim : c.ensemble_size) + 4;
}

/// Writes the prior state of one agent: U = U_0, mu = mu_0 and, for the policies with a factor,
/// F = R Z with the d rows of Z drawn at counter values 0, ..., d-1 of its stream (Ensemble++:
/// perturbation distribution at perturbation scale; ensemble sampling: standard normal), which
/// leaves the counter at d. Entry (i, m) of F accumulates R_ik Z_km over k = i, ..., d-1 in
/// increasing k (the CUDA body adds in the same order).
template <class T>
void init_agent(const LinearConfig& c, const Prior& p, const AgentState<T>& s, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  for (long i = 0; i < long(d) * d; ++i) s.prec[i] = p.prec[i];
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
    for (int i = p.diagonal ? k : 0; i <= k; ++i) {
      const double rik = p.root[long(i) * d + k];
      T* row = s.factor + long(i) * M;
      for (int m = 0; m < M; ++m) row[m] = static_cast<T>(static_cast<double>(row[m]) + rik * z[m]);
    }
  }
  *s.step = static_cast<std::uint64_t>(d);
}

/// theta <- P^-1 theta, by the two triangular solves U^T w = theta, U theta = w.
inline void solve_precision(const double* prec, int d, double* theta) {
  const auto U = ConstMatrixMap<double>(prec, d, d).triangularView<Eigen::Upper>();
  VectorMap<double> th(theta, d);
  U.transpose().solveInPlace(th);
  U.solveInPlace(th);
}

/// y = F v (d) in double from the (d, M) factor of type T, terms in increasing m.
template <class T>
inline void factor_times(const T* F, int d, int M, const double* v, double* y) {
  for (int i = 0; i < d; ++i) {
    const T* row = F + long(i) * M;
    double acc = 0.0;
    for (int m = 0; m < M; ++m) acc += static_cast<double>(row[m]) * v[m];
    y[i] = acc;
  }
}

/// Writes a posterior draw (or the posterior mean for greedy and UCB) to @p theta, computed
/// in double and rounded to T once.
template <class T>
void sample_theta(const LinearConfig& c, const AgentState<T>& s, T* theta, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  double* y = scratch;
  double* z = scratch + d;
  switch (c.policy) {
    case Policy::ensemble: {
      // theta = mu + P^-1 F zeta = mu + A zeta.
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<double>(c.reference, M, c.reference_sparsity, std::sqrt(double(M)), st, z);
      factor_times(s.factor, d, M, z, y);
      solve_precision(s.prec, d, y);
      break;
    }
    case Policy::thompson: {
      // theta = mu + U^-1 g, whose covariance is U^-1 U^-T = Sigma.
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<double>(Distribution::gaussian, d, 1, std::sqrt(double(d)), st, y);
      VectorMap<double> g(y, d);
      ConstMatrixMap<double>(s.prec, d, d).triangularView<Eigen::Upper>().solveInPlace(g);
      break;
    }
    case Policy::ensemble_sampling: {
      // Model m: theta_m = mu + P^-1 F e_m.
      const Stream st{c.seed, (*s.step)++, s.stream};
      const std::uint32_t m = draw_index(st, static_cast<std::uint32_t>(M));
      for (int i = 0; i < d; ++i) y[i] = static_cast<double>(s.factor[long(i) * M + m]);
      solve_precision(s.prec, d, y);
      break;
    }
    case Policy::ucb:
    case Policy::greedy:
      for (int i = 0; i < d; ++i) y[i] = 0.0;
      break;
  }
  for (int i = 0; i < d; ++i) theta[i] = static_cast<T>(s.mean[i] + y[i]);
}

/// Upper Cholesky rank-one update U^T U + v v^T by Givens rotations, O(d^2); @p v is destroyed.
///
/// Rotation k turns (U_kk, v_k) into (hypot(U_kk, v_k), 0) with c = U_kk / r, s = v_k / r
/// (|c|, |s| <= 1, so no intermediate exceeds the norm of its column). A zero v_k is the
/// identity and is skipped (exactly: c = 1, s = 0 would change no bit).
inline void cholesky_update_upper(double* U, double* v, int d) {
  for (int k = 0; k < d; ++k) {
    const double vk = v[k];
    if (vk == 0.0) continue;
    double* __restrict row = U + long(k) * d;
    double* __restrict w = v;
    const double ukk = row[k];
    const double r = std::hypot(ukk, vk);
    const double cs = ukk / r, sn = vk / r;
    row[k] = r;
    for (int i = k + 1; i < d; ++i) {
      const double ri = row[i], wi = w[i];
      row[i] = cs * ri + sn * wi;
      w[i] = cs * wi - sn * ri;
    }
  }
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

/// Applies one observation (x, r) to an agent, O(d^2 + dM):
///   w = U^-T x, s = eta^2 + |w|^2, k = U^-1 w / s          (the gain Sigma x / s, before the update)
///   mu += k (r - x.mu)                                      (in double)
///   U absorbs x / eta by rotations                          (P += x x^T / eta^2)
///   F += x z^T / eta  (Ensemble++),  F += x g^T / eta  (ensemble sampling, w_m = eta g_m)
/// Precondition: check_observation(c, x, r) == 0.
/// @tparam X the type of the features and reward: T, or double for the pseudo-observations of
///           forgetting (production.hpp).
template <class T, class X = T>
void observe(const LinearConfig& c, const AgentState<T>& s, const X* x, X r, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  const double eta = c.noise_std;
  const double inv_eta = 1.0 / eta;
  const auto U = ConstMatrixMap<double>(s.prec, d, d).triangularView<Eigen::Upper>();
  VectorMap<double> k(scratch, d);
  for (int i = 0; i < d; ++i) k[i] = static_cast<double>(x[i]);
  U.transpose().solveInPlace(k);
  const double denom = eta * eta + k.squaredNorm();
  U.solveInPlace(k);
  double xm = 0.0;
  for (int i = 0; i < d; ++i) xm += static_cast<double>(x[i]) * s.mean[i];
  const double gain = (static_cast<double>(r) - xm) / denom;
  for (int i = 0; i < d; ++i) s.mean[i] += k[i] * gain;
  double* v = scratch;
  for (int i = 0; i < d; ++i) v[i] = static_cast<double>(x[i]) * inv_eta;
  cholesky_update_upper(s.prec, v, d);
  if (!has_factor(c.policy)) return;
  double* w = scratch + d;
  const Stream st{c.seed, (*s.step)++, s.stream};
  if (c.policy == Policy::ensemble)
    draw<double>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, w);
  else
    draw<double>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, w);
  for (int m = 0; m < M; ++m) w[m] *= inv_eta;
  for (int i = 0; i < d; ++i) {
    T* row = s.factor + long(i) * M;
    const double xi = static_cast<double>(x[i]);
    for (int m = 0; m < M; ++m) row[m] = static_cast<T>(static_cast<double>(row[m]) + xi * w[m]);
  }
}

}  // namespace ensemblepp
