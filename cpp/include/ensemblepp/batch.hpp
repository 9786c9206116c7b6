/// @file batch.hpp
/// Batched CPU drivers of the linear policies: B independent agents stepped in one call,
/// in parallel threads (OpenMP) when the batch is large enough to pay for them.
///
/// All arrays are row-major and contiguous. Every function validates its inputs before it
/// changes any state and throws std::invalid_argument naming the offending argument, so a
/// failed call leaves the agents exactly as they were.
#pragma once

#include <cstdint>

#include "ensemblepp/linear.hpp"

namespace ensemblepp {

/// State of B agents (layout of linear.hpp): cov_root (B, d, d) and mean (B, d) double, factor
/// (B, d, M) of T or nullptr, steps (B) and the agents' stream ids (B), which key their streams.
template <class T>
struct BatchState {
  double* cov_root;
  double* mean;
  T* factor;
  std::uint64_t* steps;
  const std::uint64_t* stream_ids;
  long n_agents;

  AgentState<T> agent(const LinearConfig& c, long b) const {
    const long d = c.dim, M = c.ensemble_size;
    return AgentState<T>{cov_root + b * d * d, mean + b * d, factor ? factor + b * d * M : nullptr,
                         steps + b, stream_ids[b]};
  }
};

/// An action set: K actions shared by all agents (per_agent = false, data (K, d)) or one set
/// per agent (data (B, K, d)); optional availability mask, shared (K) or per agent (B, K).
template <class T>
struct ActionSet {
  const T* data;
  long n_actions;
  bool per_agent;
  const std::uint8_t* mask;
  bool mask_per_agent;
};

/// Writes the prior state of agents first, ..., B-1 (init_agent in linear.hpp).
template <class T>
void initialize(const LinearConfig& c, const BatchState<T>& s, const Prior& prior, long first);

/// Posterior covariances Sigma = L^T L (B, d, d), computed in double, exactly symmetric.
template <class T>
void posterior_covariance(const LinearConfig& c, const BatchState<T>& s, T* out);

/// (B, d, M): the factor A of Ensemble++, or the models mu + D of ensemble sampling.
template <class T>
void posterior_factor(const LinearConfig& c, const BatchState<T>& s, T* out);

/// Chooses one action per agent: argmax of the policy's score, ties to the lowest index.
/// Writes the chosen indices to @p out (B) and the theta used to @p theta (B, d). Throws, with
/// every counter put back, when an agent's state gives a non-finite theta ("state: ...") or an
/// available action a non-finite score ("actions: ...").
template <class T>
void act(const LinearConfig& c, const BatchState<T>& s, const ActionSet<T>& actions,
         std::int64_t* out, T* theta);

/// Best action on the unit sphere, x = theta / |theta| (B, d). Not defined for LinUCB.
template <class T>
void act_sphere(const LinearConfig& c, const BatchState<T>& s, T* out);

/// One posterior draw per agent (B, d).
template <class T>
void sample(const LinearConfig& c, const BatchState<T>& s, T* theta);

/// Applies n_obs observations per agent in order: x (B, n_obs, d), r (B, n_obs) and an optional
/// mask (B, n_obs) of the observations that happened (agents that saw nothing are skipped).
/// Every observation is checked against input_bound (linear_config.hpp) before anything changes.
/// An agent whose update would overflow (observe() in linear.hpp: a prior variance beyond 1e150)
/// keeps its state from that row on, the others are updated, and std::invalid_argument names it.
template <class T>
void update(const LinearConfig& c, const BatchState<T>& s, const T* x, const T* r,
            const std::uint8_t* mask, long n_obs);

/// Throws std::invalid_argument when an agent's counter would pass kMaxSteps after
/// @p draws more random vectors (its stream would repeat).
void check_steps(const std::uint64_t* steps, long n_agents, std::uint64_t draws);

/// Number of threads the drivers may use (1 without OpenMP).
int max_threads();

/// Limits the drivers to @p n threads (no effect without OpenMP).
void set_max_threads(int n);

}  // namespace ensemblepp
