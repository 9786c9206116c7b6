// Private helpers of the CPU drivers (batch.cpp, production.cpp): when to use threads, how to
// split agents among them, and the one message for an observation out of bounds.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ensemblepp/batch.hpp"

namespace ensemblepp {
namespace detail {

// Work (in multiply-adds) below which a call stays on one thread. Waking idle OpenMP workers
// can cost milliseconds on virtual machines, so only calls of ~0.1 ms of work or more split.
constexpr double kParallelWork = 5e5;

inline int threads_for(double work) {
  if (work < kParallelWork) return 1;
  return std::max(1, std::min(max_threads(), static_cast<int>(work / kParallelWork)));
}

// Runs body(begin, end) over [0, n) split among nt threads; inline (no OpenMP region) for one.
// With weights (prefix sums, n + 1 entries) the ranges carry about equal work, so one agent with
// many rows does not hold up the rest.
template <class F>
void parallel_ranges(long n, int nt, F&& body, const std::int64_t* prefix = nullptr) {
  if (nt <= 1 || n <= 1) {
    body(0L, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = 0, count = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    count = omp_get_num_threads();
#endif
    long lo = n * t / count, hi = n * (t + 1) / count;
    if (prefix) {
      const double total = static_cast<double>(prefix[n] - prefix[0]);
      auto split = [&](int j) {
        if (j == 0) return 0L;
        if (j == count) return n;
        const std::int64_t want = prefix[0] + static_cast<std::int64_t>(total * j / count);
        return static_cast<long>(std::lower_bound(prefix, prefix + n + 1, want) - prefix);
      };
      lo = split(t);
      hi = split(t + 1);
    }
    body(lo, hi);
  }
}

// The error of check_observation's codes (1: reward, 2: features) for one agent.
[[noreturn]] inline void throw_bad_observation(int what, long agent, bool single_float) {
  const std::string range = single_float ? "2**38 for float32)" : "2**480)";
  if (what == 1)
    throw std::invalid_argument("r: reward of agent " + std::to_string(agent) +
                                " is NaN, infinite or beyond the representable range (|r| / noise_std > " + range);
  throw std::invalid_argument("x: features of agent " + std::to_string(agent) +
                              " are NaN, infinite or beyond the representable range (|x| / noise_std > " + range);
}

// Per-thread scratch that lives across calls, so that a step allocates nothing. One pool for
// both drivers' files: no driver calls another while it holds a slot.
template <class T>
std::vector<T>& scratch_buffer(int slot, size_t n) {
  thread_local std::vector<T> buffers[4];
  std::vector<T>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b;
}

// An agent whose observe() refused an update (linear.hpp): the lowest index is reported.
inline void record_refusal(std::atomic<long>& refused, long agent) {
  long seen = refused.load();
  while ((seen < 0 || agent < seen) && !refused.compare_exchange_weak(seen, agent)) {
  }
}

inline void throw_if_refused(const std::atomic<long>& refused) {
  if (refused.load() < 0) return;
  throw std::invalid_argument(
      "x: the update of agent " + std::to_string(refused.load()) +
      " would make its posterior non-finite (x' Sigma x / noise_std**2 overflows: a prior variance "
      "beyond ~1e150 with features near the input bound); that agent keeps its state from that row on");
}

}  // namespace detail
}  // namespace ensemblepp
