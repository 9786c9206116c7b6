/// @file linear.hpp
/// Per-agent kernels of the linear policies: posterior draws, scoring and the O(d^2 + dM)
/// rank-one updates of Ensemble++ and its baselines. Header templates for float and double.
///
/// Storage of one agent, all row-major and contiguous:
///   mu     (d)       posterior mean
///   cov    (d, d)    Sigma (posterior covariance), or for Thompson sampling the upper
///                    Cholesky factor U of the precision, P = U^T U
///   factor (d, M)    Ensemble++: A with A A^T ~ Sigma; ensemble sampling: the M models
///   step   scalar    the agent's Philox counter, advanced by one per random vector drawn
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "ensemblepp/distributions.hpp"

namespace ensemblepp {

/// Policy identifiers; the integer values are part of the Python and CUDA ABI.
enum class Policy : int {
  ensemble = 0,           ///< Ensemble++: theta = mu + A zeta
  thompson = 1,           ///< exact Thompson sampling through the precision Cholesky factor
  ensemble_sampling = 2,  ///< Lu and Van Roy (2017): one of M perturbed models
  ucb = 3,                ///< LinUCB: x.mu + alpha sqrt(x^T Sigma x)
  greedy = 4,             ///< theta = mu
};

/// Hyperparameters shared by all agents of a batch.
struct LinearConfig {
  int dim = 0;
  int ensemble_size = 0;
  Policy policy = Policy::ensemble;
  Distribution reference = Distribution::gaussian;
  Distribution perturbation = Distribution::sphere;
  int reference_sparsity = 1;
  int perturbation_sparsity = 1;
  double noise_std = 1.0;
  double alpha = 1.0;
  std::uint64_t seed = 0;
};

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
  T* mu;
  T* cov;
  T* factor;
  std::uint64_t* step;
  std::uint64_t stream;  ///< the agent's stream id (philox.hpp)
};

/// Does the policy draw a random theta when it acts (and so advance the agent's counter)?
inline bool draws_when_acting(Policy p) {
  return p == Policy::ensemble || p == Policy::thompson || p == Policy::ensemble_sampling;
}

/// Scratch length (elements of T) that sample_theta and observe need for one agent.
inline long scratch_size(const LinearConfig& c) {
  return 3L * (c.dim > c.ensemble_size ? c.dim : c.ensemble_size) + 4;
}

/// Writes a posterior draw (or the point estimate for greedy and UCB) to @p theta.
template <class T>
void sample_theta(const LinearConfig& c, const AgentState<T>& s, T* theta, T* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  ConstVectorMap<T> mu(s.mu, d);
  VectorMap<T> th(theta, d);
  switch (c.policy) {
    case Policy::ensemble: {
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<T>(c.reference, M, c.reference_sparsity, std::sqrt(double(M)), st, scratch);
      th.noalias() = mu + ConstMatrixMap<T>(s.factor, d, M) * ConstVectorMap<T>(scratch, M);
      break;
    }
    case Policy::thompson: {
      const Stream st{c.seed, (*s.step)++, s.stream};
      draw<T>(Distribution::gaussian, d, 1, std::sqrt(double(d)), st, scratch);
      // theta = mu + U^{-1} g has covariance U^{-1} U^{-T} = P^{-1} = Sigma.
      VectorMap<T> g(scratch, d);
      ConstMatrixMap<T>(s.cov, d, d).template triangularView<Eigen::Upper>().solveInPlace(g);
      th.noalias() = mu + g;
      break;
    }
    case Policy::ensemble_sampling: {
      const Stream st{c.seed, (*s.step)++, s.stream};
      const std::uint32_t m = draw_index(st, static_cast<std::uint32_t>(M));
      th = ConstMatrixMap<T>(s.factor, d, M).col(m);
      break;
    }
    case Policy::ucb:
    case Policy::greedy:
      th = mu;
      break;
  }
}

/// Upper-triangular Cholesky rank-one update: U^T U + v v^T, O(d^2); @p v is overwritten.
template <class T>
void cholesky_update_upper(T* U, T* v, int d) {
  for (int k = 0; k < d; ++k) {
    T* row = U + long(k) * d;
    const T ukk = row[k];
    const T r = std::hypot(ukk, v[k]);
    const T cs = r / ukk, sn = v[k] / ukk;
    row[k] = r;
    for (int i = k + 1; i < d; ++i) {
      row[i] = (row[i] + sn * v[i]) / cs;
      v[i] = cs * v[i] - sn * row[i];
    }
  }
}

/// Applies one observation (x, r) to an agent; all work is O(d^2 + dM).
template <class T>
void observe(const LinearConfig& c, const AgentState<T>& s, const T* x_ptr, T r, T* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  const T eta = static_cast<T>(c.noise_std);
  ConstVectorMap<T> x(x_ptr, d);
  VectorMap<T> mu(s.mu, d);
  VectorMap<T> u(scratch, d);
  if (c.policy == Policy::thompson) {
    MatrixMap<T> U(s.cov, d, d);
    // Sigma x = U^{-1} U^{-T} x; s = eta^2 + x^T Sigma x = eta^2 + |U^{-T} x|^2.
    u = x;
    U.template triangularView<Eigen::Upper>().transpose().solveInPlace(u);
    const T denom = eta * eta + u.squaredNorm();
    U.template triangularView<Eigen::Upper>().solveInPlace(u);
    mu += u * ((r - x.dot(mu)) / denom);
    VectorMap<T> v(scratch + d, d);
    v = x / eta;
    cholesky_update_upper(s.cov, v.data(), d);
    return;
  }
  MatrixMap<T> Sigma(s.cov, d, d);
  u.noalias() = Sigma * x;
  const T denom = eta * eta + x.dot(u);
  const T innovation = r - x.dot(mu);
  if (c.policy == Policy::ensemble || c.policy == Policy::ensemble_sampling) {
    MatrixMap<T> F(s.factor, d, M);
    VectorMap<T> w(scratch + d, M);
    const Stream st{c.seed, (*s.step)++, s.stream};
    if (c.policy == Policy::ensemble) {
      // A <- A + k (eta z - A^T x)^T
      draw<T>(c.perturbation, M, c.perturbation_sparsity, 1.0, st, w.data());
      w *= eta;
    } else {
      // theta_m <- theta_m + k (r + w_m - x.theta_m), w_m ~ N(0, eta^2)
      draw<T>(Distribution::gaussian, M, 1, std::sqrt(double(M)), st, w.data());
      w = (w * eta).array() + r;
    }
    w.noalias() -= F.transpose() * x;
    F.noalias() += (u / denom) * w.transpose();
  }
  mu += u * (innovation / denom);
  // Sigma -= v v^T with v = u / sqrt(denom): v_i v_j is the same number for (i, j) and (j, i),
  // so Sigma stays exactly symmetric, and the update is one vectorised rank-one product.
  u *= T(1) / std::sqrt(denom);
  Sigma.noalias() -= u * u.transpose();
}

}  // namespace ensemblepp
