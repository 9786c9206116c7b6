/// @file linear.hpp
/// Per-agent kernels of the linear policies in information form: initialisation, posterior
/// draws and the O(d^2 + dM) rank-one updates. Header templates for float and double; the CUDA
/// bodies (cuda/src/cuda_agent.cuh) implement the same formulas in the same order.
///
/// State of one agent, all row-major and contiguous:
///   prec   (d, d)   upper Cholesky factor U of the posterior precision P = U^T U (the strictly
///                   lower part is zero)
///   info   (d)      information vector b, so that the posterior mean is mu = P^-1 b
///   factor (d, M)   Ensemble++: B with A = P^-1 B (A A^T ~ Sigma); ensemble sampling: C, the M
///                   models theta_m = P^-1 C e_m
///   step   scalar   the agent's Philox counter, advanced by one per random vector drawn
///
/// This is the batch form of the posterior, P = P_0 + sum x x^T / eta^2, b = P_0 mu_0 +
/// sum x r / eta^2, B = P_0 A_0 + sum x z^T / eta: an update only adds (P by a rotation of U), so
/// nothing is subtracted and nothing cancels, and the float32 state tracks the float64 one.
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
  T* prec;
  T* info;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// The prior shared by all agents of a batch, in double precision:
///   prec (d, d)  upper Cholesky factor U_0 of P_0 = Sigma_0^-1
///   info (d)     b_0 = P_0 mu_0
///   root (d, d)  upper triangular R = L^-T for Sigma_0 = L L^T, so that the initial factor
///                A_0 = L Z_0 (Ensemble++) or the initial models mu_0 + L G have information
///                B_0 = R Z_0, C_0 = b_0 + R G
///   diagonal     U_0 and R are diagonal (an isotropic or diagonal prior): O(dM) initialisation
struct Prior {
  const double* prec;
  const double* info;
  const double* root;
  bool diagonal;
};

/// Scratch length (elements of T) that the per-agent functions need.
inline long scratch_size(const LinearConfig& c) {
  return 3L * (c.dim > c.ensemble_size ? c.dim : c.ensemble_size) + 4;
}

/// Writes the prior state of one agent: U = U_0, b = b_0 and, for the policies with a factor,
/// the d rows of Z_0 drawn at counter values 0, ..., d-1 of its stream (Ensemble++: perturbation
/// distribution at perturbation scale; ensemble sampling: standard normal), which leaves the
/// counter at d. Entry (i, m) of the factor accumulates R_ik Z_km over k = i, ..., d-1 in
/// increasing k (the CUDA body adds in the same order).
template <class T>
void init_agent(const LinearConfig& c, const Prior& p, const AgentState<T>& s, T* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  for (long i = 0; i < long(d) * d; ++i) s.prec[i] = static_cast<T>(p.prec[i]);
  for (int i = 0; i < d; ++i) s.info[i] = static_cast<T>(p.info[i]);
  *s.step = 0;
  if (!has_factor(c.policy)) return;
  const bool models = c.policy == Policy::ensemble_sampling;
  for (int i = 0; i < d; ++i)
    for (int m = 0; m < M; ++m) s.factor[long(i) * M + m] = models ? s.info[i] : T(0);
  T* z = scratch;
  for (int k = 0; k < d; ++k) {
    const Stream st{c.seed, static_cast<std::uint64_t>(k), s.stream};
    if (models)
      draw<T>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, z);
    else
      draw<T>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, z);
    for (int i = p.diagonal ? k : 0; i <= k; ++i) {
      const T rik = static_cast<T>(p.root[long(i) * d + k]);
      T* row = s.factor + long(i) * M;
      for (int m = 0; m < M; ++m) row[m] += rik * z[m];
    }
  }
  *s.step = static_cast<std::uint64_t>(d);
}

/// theta <- P^-1 theta, by the two triangular solves U^T w = theta, U theta = w.
template <class T>
void solve_precision(const T* prec, int d, T* theta) {
  const auto U = ConstMatrixMap<T>(prec, d, d).template triangularView<Eigen::Upper>();
  VectorMap<T> th(theta, d);
  U.transpose().solveInPlace(th);
  U.solveInPlace(th);
}

/// Writes a posterior draw (or the posterior mean for greedy and UCB) to @p theta.
template <class T>
void sample_theta(const LinearConfig& c, const AgentState<T>& s, T* theta, T* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  ConstVectorMap<T> b(s.info, d);
  VectorMap<T> th(theta, d);
  switch (c.policy) {
    case Policy::ensemble: {
      // theta = P^-1 (b + B zeta) = mu + A zeta.
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<T>(c.reference, M, c.reference_sparsity, std::sqrt(double(M)), st, scratch);
      th.noalias() = b + ConstMatrixMap<T>(s.factor, d, M) * ConstVectorMap<T>(scratch, M);
      solve_precision(s.prec, d, theta);
      break;
    }
    case Policy::thompson: {
      // theta = U^-1 (U^-T b + g) = mu + U^-1 g, whose covariance is U^-1 U^-T = Sigma.
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<T>(Distribution::gaussian, d, 1, std::sqrt(double(d)), st, scratch);
      const auto U = ConstMatrixMap<T>(s.prec, d, d).template triangularView<Eigen::Upper>();
      th = b;
      U.transpose().solveInPlace(th);
      th += ConstVectorMap<T>(scratch, d);
      U.solveInPlace(th);
      break;
    }
    case Policy::ensemble_sampling: {
      const Stream st{c.seed, (*s.step)++, s.stream};
      const std::uint32_t m = draw_index(st, static_cast<std::uint32_t>(M));
      th = ConstMatrixMap<T>(s.factor, d, M).col(m);
      solve_precision(s.prec, d, theta);
      break;
    }
    case Policy::ucb:
    case Policy::greedy:
      th = b;
      solve_precision(s.prec, d, theta);
      break;
  }
}

/// Upper Cholesky rank-one update U^T U + v v^T by Givens rotations, O(d^2); @p v is destroyed.
///
/// Rotation k turns (U_kk, v_k) into (hypot(U_kk, v_k), 0) with c = U_kk / r, s = v_k / r
/// (|c|, |s| <= 1, so no intermediate exceeds the norm of its column). A zero v_k is the
/// identity and is skipped (exactly: c = 1, s = 0 would change no bit).
template <class T>
void cholesky_update_upper(T* U, T* v, int d) {
  for (int k = 0; k < d; ++k) {
    const T vk = v[k];
    if (vk == T(0)) continue;
    T* __restrict row = U + long(k) * d;
    T* __restrict w = v;
    const T ukk = row[k];
    const T r = std::hypot(ukk, vk);
    const T cs = ukk / r, sn = vk / r;
    row[k] = r;
    for (int i = k + 1; i < d; ++i) {
      const T ri = row[i], wi = w[i];
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

/// Applies one observation (x, r) to an agent: U absorbs x / eta, b += x r / eta^2, and
/// B += x z^T / eta (Ensemble++) or C += x (r + eta g)^T / eta^2 (ensemble sampling). O(d^2 + dM).
/// Precondition: check_observation(c, x, r) == 0.
template <class T>
void observe(const LinearConfig& c, const AgentState<T>& s, const T* x, T r, T* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  const T eta = static_cast<T>(c.noise_std);
  const T inv_eta = T(1) / eta;
  T* v = scratch;
  for (int i = 0; i < d; ++i) v[i] = x[i] * inv_eta;
  cholesky_update_upper(s.prec, v, d);
  const T gain = (r * inv_eta) * inv_eta;
  for (int i = 0; i < d; ++i) s.info[i] += x[i] * gain;
  if (!has_factor(c.policy)) return;
  T* w = scratch + d;
  const Stream st{c.seed, (*s.step)++, s.stream};
  if (c.policy == Policy::ensemble) {
    draw<T>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, w);
    for (int m = 0; m < M; ++m) w[m] *= inv_eta;
  } else {
    // w_m ~ N(0, eta^2) perturbs the reward of model m: C += x (r + w_m) / eta^2.
    draw<T>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, w);
    for (int m = 0; m < M; ++m) w[m] = ((r + eta * w[m]) * inv_eta) * inv_eta;
  }
  for (int i = 0; i < d; ++i) {
    T* row = s.factor + long(i) * M;
    const T xi = x[i];
    for (int m = 0; m < M; ++m) row[m] += xi * w[m];
  }
}

}  // namespace ensemblepp
