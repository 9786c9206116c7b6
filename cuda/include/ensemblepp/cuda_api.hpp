/// @file cuda_api.hpp
/// Plain C++ API of the CUDA backend (no pybind11, no CUDA headers needed by callers).
///
/// Every array is a device pointer passed as an integer (std::uintptr_t), row-major and
/// contiguous, of the element type named by Config::dtype; streams are cudaStream_t handles
/// passed as integers (0 is the legacy default stream). The step functions only enqueue work on
/// the given stream: they never synchronise, and report bad input through a device error
/// buffer that the caller reads when it wants to raise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ensemblepp/linear_config.hpp"

namespace ensemblepp::cuda {

/// Number of CUDA devices visible to this process; 0 when there is no driver or no device.
int device_count();

/// Why device_count() is 0 ("no CUDA device is visible", or the runtime's error, e.g. a driver
/// older than the CUDA runtime this module was built with); empty when a device is usable.
std::string device_error();

/// Properties of one device, used by the benchmarks to compute bandwidth fractions.
struct DeviceInfo {
  std::string name;
  int major = 0;
  int minor = 0;
  std::size_t total_memory = 0;
  double peak_bandwidth_gbs = 0.0;  ///< theoretical DRAM bandwidth, GB/s
};

/// Properties of device @p device; throws std::runtime_error on a CUDA error.
DeviceInfo device_info(int device);

/// Hyperparameters of a batch of agents: the CPU's configuration (linear_config.hpp), so that
/// both backends are configured, validated and bound to Python by the same code.
using Config = ensemblepp::LinearConfig;
using ensemblepp::DType;

/// Value of an error slot that records no error (the buffers are reset to all ones bits).
constexpr std::uint64_t kNoError = ~std::uint64_t{0};

/// Device state of B agents, laid out as in linear.hpp: cov_root (B, d, d) and mean (B, d) float64,
/// factor (B, d, M) or 0, steps (B) uint64, stream_ids (B) uint64 (the keys of the agents'
/// random streams, philox.hpp) and work (B, workspace_size(config)) float64 or 0. cov_root and mean
/// are float64 whatever Config::dtype, which names the type of factor and of every input.
struct State {
  std::uintptr_t cov_root = 0;
  std::uintptr_t mean = 0;
  std::uintptr_t factor = 0;
  std::uintptr_t steps = 0;
  std::uintptr_t stream_ids = 0;
  std::uintptr_t work = 0;
  long n_agents = 0;
};

/// Throws std::invalid_argument naming the field when a configuration is out of range.
using ensemblepp::check_config;

/// Doubles of scratch per agent that State::work (float64) must hold: 0 when the per-agent
/// vectors fit in shared memory (3 max(d, M), plus 8 d for LinUCB, up to 40 KiB), else that many.
long workspace_size(const Config& config);

/// Writes the prior state of agents first, ..., B-1 (init_agent of linear.hpp, same order):
/// prior_cov_root (d, d) (lower-triangular L_0, Sigma_0 = L_0^T L_0) and prior_mean (d) are
/// float64 device arrays.
void initialize(const Config& config, const State& state, std::uintptr_t prior_cov_root,
                std::uintptr_t prior_mean, bool diagonal, long first, std::uintptr_t stream);

/// One posterior draw per agent into theta (B, d) (or theta / |theta|, e_1 for theta = 0, when
/// @p unit_norm); advances the counters of the drawing policies.
void sample(const Config& config, const State& state, std::uintptr_t theta, bool unit_norm,
            std::uintptr_t stream);

/// A finite action set: data (K, d) shared or (B, K, d) per agent; mask 0, (K) or (B, K) bool.
struct Actions {
  std::uintptr_t data = 0;
  long n_actions = 0;
  bool per_agent = false;
  std::uintptr_t mask = 0;
  bool mask_per_agent = false;
};

/// Samples theta (written to theta (B, d)) and chooses argmax of the policy's score per agent
/// (ties to the lowest index) into choice (B) int64.
///
/// errors (3) uint64 receives the lowest agent whose actions are all masked out (slot 0), the
/// lowest agent with a NaN or infinite score among its available actions (slot 1) and the
/// lowest agent whose state gives a NaN or infinite theta (slot 2). When any is set the counters
/// are put back from saved_steps (B) uint64, so that the failed call leaves the state exactly as
/// it was, and choice holds -1 for the agents without an answer.
void act(const Config& config, const State& state, const Actions& actions,
         std::uintptr_t choice, std::uintptr_t theta, std::uintptr_t saved_steps,
         std::uintptr_t errors, std::uintptr_t stream);

/// Applies observations x (B, n, d), r (B, n), mask 0 or (B, n) bool, in order per agent.
///
/// A first kernel writes to errors[0] the smallest key 2 i (r[i] out of bounds) or 2 i + 1 (a
/// feature of x[i] out of bounds: NaN, infinite or beyond input_bound, linear_config.hpp) over
/// the unmasked observations i = b n + j; when a key is set the update kernel changes nothing.
/// errors[1] receives the lowest agent whose update observe() refused (a non-finite step; that
/// agent stops at that row). errors holds at least 2 entries.
void update(const Config& config, const State& state, std::uintptr_t x, std::uintptr_t r,
            std::uintptr_t mask, long n_obs, std::uintptr_t errors, std::uintptr_t stream);

// ---- production loop (issue 12; CPU versions in ensemblepp/production.hpp) ------------------

/// Forgetting of a batch (production.hpp's file comment): gamma in (0, 1] (1: none) and float64
/// device arrays dirs (d, d) (row k the refresh direction r_k) and targets (d) (r_k . mu_0), and
/// updates (B) uint64, the observations each agent has applied.
struct Forgetting {
  double gamma = 1.0;
  std::uintptr_t dirs = 0;
  std::uintptr_t targets = 0;
  std::uintptr_t updates = 0;
};

/// Doubles of scratch per agent that update_ragged's @p work must hold: 0 when they fit in
/// shared memory, else that many.
long ragged_workspace_size(const Config& config, bool forgets);

/// Applies logged rows to B agents in one launch (a block per agent): rows offsets[b], ...,
/// offsets[b+1]-1 of x (N, d) and r (N) belong to agent b, in order; mask 0 or (N) bool skips
/// rows. offsets (B + 1) int64 is a device array that the caller has checked (offsets[0] = 0,
/// non-decreasing, offsets[B] = N). With forget.gamma < 1 the agents forget as on the CPU.
/// errors[0] receives the smallest key 2 i (r[i] out of bounds) or 2 i + 1 (x[i]), i the row,
/// as in update(); when one is set nothing changes. errors[1] receives the lowest agent whose
/// row observe() refused (a non-finite step; that agent stops at that row). work: (B,
/// ragged_workspace_size) float64 or 0 when that is 0.
void update_ragged(const Config& config, const State& state, const Forgetting& forget,
                   std::uintptr_t x, std::uintptr_t r, std::uintptr_t mask, std::uintptr_t offsets,
                   long n_rows, std::uintptr_t work, std::uintptr_t errors, std::uintptr_t stream);

/// Doubles of scratch per agent that action_probabilities' @p work must hold for K actions: 0
/// when they fit in shared memory, else that many.
long probability_workspace_size(const Config& config, long n_actions);

/// Probability that each agent's policy picks each action, into out (B, K) float64, in one
/// launch: production.hpp's action_probabilities (the same draws, keyed by probability_key).
/// The state is not changed. errors (3) uint64 receives the lowest agent with every action
/// masked out (slot 0), with a NaN or infinite available action or score (slot 1), and with a
/// non-finite state (slot 2); out is then undefined for that agent.
void action_probabilities(const Config& config, const State& state, const Actions& actions,
                          long n_samples, bool ties_first, std::uintptr_t out, std::uintptr_t work,
                          std::uintptr_t errors, std::uintptr_t stream);

}  // namespace ensemblepp::cuda
