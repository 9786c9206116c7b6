/// @file linear_config.hpp
/// The configuration of a batch of linear agents, shared by the CPU drivers and the CUDA kernels
/// (one struct, one validation, one Python binding), and the limits every input is held to.
///
/// Plain C++ (no Eigen, no CUDA headers): the CUDA API (cuda_api.hpp) includes it as it is.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ensemblepp/distributions.hpp"
#include "ensemblepp/philox.hpp"

namespace ensemblepp {

/// Policy identifiers; the integer values are part of the Python and CUDA ABI.
enum class Policy : int {
  ensemble = 0,           ///< Ensemble++: theta = mu + A zeta
  thompson = 1,           ///< exact Thompson sampling: theta = mu + L^T g
  ensemble_sampling = 2,  ///< Lu and Van Roy (2017): one of M perturbed models, theta_m = mu + D e_m
  ucb = 3,                ///< LinUCB: x.mu + alpha |L x|
  greedy = 4,             ///< theta = mu
};

/// Element type of the state and of every floating-point argument.
enum class DType : int { float32 = 0, float64 = 1 };

/// Hyperparameters shared by all agents of a batch, on either backend.
struct LinearConfig {
  Policy policy = Policy::ensemble;
  int dim = 1;
  int ensemble_size = 1;
  Distribution reference = Distribution::gaussian;
  Distribution perturbation = Distribution::sphere;
  int reference_sparsity = 1;
  int perturbation_sparsity = 1;
  double noise_std = 1.0;
  double alpha = 1.0;
  std::uint64_t seed = 0;
  DType dtype = DType::float64;
};

/// Does the policy keep a (d, M) accumulator (Ensemble++ and ensemble sampling)?
EPP_HD bool has_factor(Policy p) { return p == Policy::ensemble || p == Policy::ensemble_sampling; }

/// Does the policy draw a random vector when it acts (and so advance the agent's counter)?
EPP_HD bool draws_when_acting(Policy p) {
  return p == Policy::ensemble || p == Policy::thompson || p == Policy::ensemble_sampling;
}

/// Largest |x_i| / eta and |r| / eta an update accepts, for float (2^38) and double (2^480).
///
/// With u = x / eta the step's scalars are alpha = 1 + u' Sigma u <= 1 + |u|^2 lambda_max(Sigma_0)
/// (Sigma only shrinks; with forgetting it stays below Sigma_0 / gamma^(d-1)) and the innovation
/// r / eta - u.mu; mu moves toward the data by k (r / eta - u.mu) with |u.k| < 1. Below these
/// bounds both are finite for any sensible prior; observe() still checks them before it writes,
/// so an input that would overflow is refused, never absorbed.
template <class T>
EPP_HD double input_bound() {
  return sizeof(T) == 4 ? 274877906944.0 /* 2^38 */ : 3.121748550315993e144 /* 2^480 */;
}

/// Throws std::invalid_argument naming the field when a configuration is out of range.
inline void check_config(const LinearConfig& c) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  const int policy = static_cast<int>(c.policy);
  if (policy < 0 || policy > 4) bad("policy: unknown policy code " + std::to_string(policy));
  if (c.dim < 1 || c.dim > kMaxVectorLength)
    bad("dim: must be in [1, " + std::to_string(kMaxVectorLength) + "]");
  if (c.ensemble_size < 1 || c.ensemble_size > kMaxVectorLength)
    bad("ensemble_size: must be in [1, " + std::to_string(kMaxVectorLength) + "]");
  const int ref = static_cast<int>(c.reference), per = static_cast<int>(c.perturbation);
  if (ref < 0 || ref > 4) bad("reference: unknown distribution code " + std::to_string(ref));
  if (per < 0 || per > 4) bad("perturbation: unknown distribution code " + std::to_string(per));
  if (c.reference_sparsity < 1 || c.reference_sparsity > c.ensemble_size)
    bad("reference_sparsity: must be in [1, ensemble_size]");
  if (c.perturbation_sparsity < 1 || c.perturbation_sparsity > c.ensemble_size)
    bad("perturbation_sparsity: must be in [1, ensemble_size]");
  if (!(std::isfinite(c.noise_std) && c.noise_std > 0)) bad("noise_std: must be finite and > 0");
  if (!(std::isfinite(c.alpha) && c.alpha >= 0)) bad("alpha: must be finite and >= 0");
  const int dt = static_cast<int>(c.dtype);
  if (dt != 0 && dt != 1) bad("dtype: unknown dtype code " + std::to_string(dt));
}

}  // namespace ensemblepp
