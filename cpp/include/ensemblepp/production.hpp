/// @file production.hpp
/// The production loop of the linear policies (issue 12): action probabilities estimated from
/// many posterior draws in one pass, ragged warm starts of many agents from logged rows, and
/// exponential forgetting toward the prior.
///
/// Forgetting with factor gamma in (0, 1), refresh weight w = 1 - gamma^d, and the prior
/// written as P_0 = R R^T = sum_k r_k r_k^T (r_k the columns of the prior root R of linear.hpp),
/// the t-th observation (t = 0, 1, ...) of an agent with k = t mod d gives the posterior
///
///   P <- gamma P + w r_k r_k^T + x x^T / eta^2
///   b <- gamma b + w (r_k . mu_0) r_k + x r / eta^2          (b = P mu, mu = P^-1 b)
///   F <- sqrt(gamma) F + sqrt(w) r_k z'^T + x z^T / eta      (both factor policies)
///
/// with z' a fresh draw (Ensemble++: the perturbation distribution; ensemble sampling: standard
/// normal), drawn before the observation's own z, one step earlier on the agent's stream. On the
/// state (L, mu, A) of linear.hpp, where Sigma = L^T L and A = Sigma F: L <- L / sqrt(gamma) and
/// A <- A / sqrt(gamma) (mu is unchanged: P and b both scale by gamma), then the prior refresh as
/// a pseudo-observation with features sqrt(w) r_k, reward sqrt(w) (r_k . mu_0), unit noise and
/// the draw z' (observe() of linear.hpp, which adds sqrt(w) r_k z'^T to F), then the observation.
///
/// Why this form: plain exponential forgetting (gamma P + x x^T) lets the prior decay as well, so
/// in directions no action excites the covariance grows like gamma^-t without bound; forgetting
/// toward the prior, gamma P + (1 - gamma) P_0, stays bounded but adds a full-rank matrix,
/// O(d^3) per step on a Cholesky factor. Adding the prior back one direction per step costs one
/// more rank-one update, O(d^2); each direction is restored every d steps with the weight that
/// makes its coefficient exactly 1 right after its refresh, so once every direction has been
/// refreshed, gamma^(d-1) P_0 <= P - (data terms) <= P_0 (P_0 = sum r_k r_k^T, so coefficients
/// in [gamma^(d-1), 1] bound the sum in the PSD order): the covariance never exceeds
/// Sigma_0 / gamma^(d-1). gamma = 1 skips all of this and is bit for bit the plain update.
///
/// The second moments hold exactly in expectation: E[F F^T] = P (E[z z^T] has unit trace and the
/// draws are independent, so sqrt(gamma) on F is gamma on F F^T), which keeps E[A A^T] = Sigma
/// for Ensemble++ and the models' covariance Sigma for ensemble sampling.
#pragma once

#include <cstdint>

#include "ensemblepp/batch.hpp"
#include "ensemblepp/linear.hpp"

namespace ensemblepp {

/// Forgetting of a batch (see the file comment). Null pointer / gamma = 1: no forgetting.
struct Forgetting {
  double gamma;            ///< forgetting factor in (0, 1]
  const double* dirs;      ///< (d, d): row k is the refresh direction r_k (column k of R)
  const double* targets;   ///< (d): r_k . mu_0
  std::uint64_t* updates;  ///< (B): observations each agent has applied (picks k)
};

/// Random vectors an observation draws: 1 for the factor policies, 2 with forgetting; 0 else.
inline std::uint64_t draws_per_observation(const LinearConfig& c, const Forgetting* f) {
  if (!has_factor(c.policy)) return 0;
  return (f && f->gamma < 1.0) ? 2 : 1;
}

/// Applies the forgetting step of agent @p s (its counter value @p t picks the direction),
/// then the observation (x, r) by observe() of linear.hpp. O(d^2 + dM). Returns false when
/// observe() refused the observation (the forgetting step is then already applied).
/// Precondition: check_observation(c, x, r) == 0.
template <class T>
bool observe_forgetting(const LinearConfig& c, const Forgetting& f, const AgentState<T>& s,
                        std::uint64_t* updates, const T* x, T r, double* scratch) {
  const int d = c.dim, M = c.ensemble_size;
  const int k = static_cast<int>(*updates % static_cast<std::uint64_t>(d));
  const double g = f.gamma, w = 1.0 - std::pow(g, d);
  const double isg = 1.0 / std::sqrt(g), sw = std::sqrt(w);
  const double* rk = f.dirs + long(k) * d;
  for (int j = 0; j < d; ++j) {
    double* row = s.cov_root + long(j) * d;
    for (int i = 0; i <= j; ++i) row[i] *= isg;
  }
  if (has_factor(c.policy))
    for (long e = 0; e < long(d) * M; ++e) s.factor[e] = static_cast<T>(static_cast<double>(s.factor[e]) * isg);
  // The prior refresh: a pseudo-observation (sqrt(w) r_k, sqrt(w) r_k . mu_0) with unit noise,
  // its features in double, kept past the scratch that observe() uses.
  LinearConfig pseudo = c;
  pseudo.noise_std = 1.0;
  double* v = scratch + scratch_size(c) - d;
  for (int i = 0; i < d; ++i) v[i] = sw * rk[i];
  if (!observe<T, double>(pseudo, s, v, sw * f.targets[k], scratch)) return false;
  if (!observe(c, s, x, r, scratch)) return false;
  ++*updates;
  return true;
}

/// Applies logged rows to B agents in one call: rows offsets[b], ..., offsets[b+1]-1 of x (N, d)
/// and r (N) belong to agent b, in order (offsets (B+1), offsets[0] = 0, non-decreasing,
/// offsets[B] = N); rows with mask[i] = 0 are skipped (mask may be null). With @p forget (may
/// be null) the agents forget as in the file comment. Everything (offsets, every row, the
/// agents' random streams) is checked before any state changes; agents run in parallel.
template <class T>
void update_ragged(const LinearConfig& c, const BatchState<T>& s, const Forgetting* forget,
                   const T* x, const T* r, const std::uint8_t* mask, const std::int64_t* offsets,
                   long n_rows);

/// Probability that each agent's policy picks each action (B, K) in double, written to @p out.
///
/// Ensemble++ and Thompson sampling: the fraction of @p n_samples posterior draws under which
/// the action scores highest. The draws of agent b come from the Philox stream keyed by
/// probability_key(seed, step_b, id_b) -- not the agent's own stream, whose counter is neither
/// read past nor advanced -- so estimating never changes what the agent does, and the same
/// state gives the same estimate. Ensemble sampling: exact, the fraction of its M models under
/// which the action is best (n_samples unused). Greedy and LinUCB: exact one-hot on the action
/// act() scores highest. Ties: split evenly among the tied actions (@p ties_first = false) or
/// all to the lowest index, as act() breaks them. Masked actions get 0.
template <class T>
void action_probabilities(const LinearConfig& c, const BatchState<T>& s, const ActionSet<T>& a,
                          long n_samples, bool ties_first, double* out);

// probability_key(seed, step, id), the key of those draws, is in philox.hpp (shared with the
// CUDA kernels).

}  // namespace ensemblepp
