/// @file cuda_emulation.hpp
/// Host emulation of one CUDA thread block, for testing the bodies of cuda/src/cuda_agent.hpp
/// without a GPU (tests/test_cuda_emulated.py). A test helper: host-only, never compiled into
/// the library, and kept out of the public include folder.
///
/// Each emulated thread is a coroutine run on one OS thread: its stack is made by makecontext
/// and entered once with setcontext; every later switch is a _setjmp/_longjmp pair, which
/// (unlike swapcontext) makes no system call. Compile without _FORTIFY_SOURCE, whose longjmp
/// check rejects jumps between stacks. A thread runs
/// until it reaches a barrier: the block barrier (__syncthreads) releases when every thread of
/// the block waits at it, the warp barrier (inside warp_sum, like __shfl_xor_sync with a full
/// mask) when all 32 lanes of the warp do. Barriers reached by only part of the block or warp
/// -- undefined behaviour on a GPU -- are reported as errors. Threads between two barriers run
/// one after the other in a chosen order (forward, reverse or shuffled): a read that races
/// with another thread's write in the same phase then gives order-dependent results, which
/// the tests detect by comparing orders.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.hpp is a host-only test helper"
#endif

#include <setjmp.h>
#include <ucontext.h>

#include <limits>
#include <memory>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_agent.hpp"
#include "cuda_production.hpp"

namespace ensemblepp::cuda::emulation {

class Block;

/// The execution context handed to the cuda_agent.hpp bodies (same members as the device one).
struct HostCtx {
  Block* blk;
  int t;
  int tid() const { return t; }
  int nthreads() const;
  int lane() const { return t & 31; }
  int warp() const { return t >> 5; }
  int nwarps() const { return nthreads() >> 5; }
  long block() const;
  long nblocks() const;
  void sync() const;
  template <class T>
  T warp_sum(T v) const;
  void atomic_min(unsigned long long* p, unsigned long long v) const { *p = std::min(*p, v); }
  template <class T>
  void atomic_add(T* p, T v) const { *p += v; }
};

/// A thread block of @p nthreads emulated threads (a multiple of 32).
class Block {
 public:
  enum class Order { forward, reverse, shuffled };

  explicit Block(int nthreads, Order order = Order::forward, unsigned seed = 0)
      : n_(nthreads), order_(order), rng_(seed) {
    if (n_ < 32 || n_ % 32 != 0) throw std::invalid_argument("nthreads: a positive multiple of 32");
    // Stacks and the context template are made once: allocation and getcontext (a system call)
    // per run would dominate the emulation's time.
    for (int t = 0; t < n_; ++t) stacks_.emplace_back(new char[kStack]);
    getcontext(&template_);
  }

  int nthreads() const { return n_; }
  long index() const { return index_; }
  long grid() const { return grid_; }

  /// Runs body(ctx) on every thread of block @p index of a grid of @p grid blocks.
  void run(long index, long grid, const std::function<void(HostCtx&)>& body) {
    index_ = index;
    grid_ = grid;
    run(body);
  }

  /// Runs body(ctx) on every thread of the block until all return.
  void run(const std::function<void(HostCtx&)>& body) {
    body_ = &body;
    error_.reset();
    ctx_.assign(n_, template_);
    jmp_.assign(n_, Jump{});
    started_.assign(n_, false);
    state_.assign(n_, State::runnable);
    slots_.assign(n_, 0.0);
    for (int t = 0; t < n_; ++t) {
      ctx_[t].uc_stack.ss_sp = stacks_[t].get();
      ctx_[t].uc_stack.ss_size = kStack;
      ctx_[t].uc_link = nullptr;  // the trampoline never returns
      const auto p = reinterpret_cast<std::uintptr_t>(this);
      makecontext(&ctx_[t], reinterpret_cast<void (*)()>(&Block::trampoline), 3,
                  static_cast<unsigned>(p & 0xffffffffu), static_cast<unsigned>(p >> 32), t);
    }
    std::vector<int> order(n_);
    std::iota(order.begin(), order.end(), 0);
    for (;;) {
      if (order_ == Order::reverse) std::reverse(order.begin(), order.end());
      if (order_ == Order::shuffled) std::shuffle(order.begin(), order.end(), rng_);
      for (int t : order) {
        if (state_[t] != State::runnable) continue;
        if (_setjmp(main_.buf) == 0) {
          if (started_[t]) _longjmp(jmp_[t].buf, 1);
          started_[t] = true;
          setcontext(&ctx_[t]);
        }
        if (error_) throw std::runtime_error(*error_ + " (thread " + std::to_string(t) + ")");
      }
      if (std::all_of(state_.begin(), state_.end(), [](State s) { return s == State::done; })) break;
      release();
    }
  }

  void block_barrier(int t) { park(t, State::at_block); }
  void warp_barrier(int t) { park(t, State::at_warp); }
  double& slot(int t) { return slots_[t]; }

 private:
  enum class State { runnable, at_block, at_warp, done };
  static constexpr std::size_t kStack = 128 * 1024;

  static void trampoline(unsigned lo, unsigned hi, int t) {
    Block* self = reinterpret_cast<Block*>((static_cast<std::uintptr_t>(hi) << 32) | lo);
    HostCtx ctx{self, t};
    try {
      (*self->body_)(ctx);
    } catch (const std::exception& e) {
      self->error_ = std::string("exception in the body: ") + e.what();
    }
    self->state_[t] = State::done;
    _longjmp(self->main_.buf, 1);
  }

  void park(int t, State s) {
    state_[t] = s;
    if (_setjmp(jmp_[t].buf) == 0) _longjmp(main_.buf, 1);
  }

  void release() {
    bool released = false;
    for (int w = 0; w < n_ / 32; ++w) {
      const auto b = state_.begin() + w * 32, e = b + 32;
      if (std::all_of(b, e, [](State s) { return s == State::at_warp; })) {
        std::fill(b, e, State::runnable);
        released = true;
      }
    }
    if (released) return;
    if (std::all_of(state_.begin(), state_.end(), [](State s) { return s == State::at_block; })) {
      std::fill(state_.begin(), state_.end(), State::runnable);
      return;
    }
    throw std::runtime_error("divergent barrier: some threads wait at a barrier that others never reach");
  }

  int n_;
  long index_ = 0, grid_ = 1;
  Order order_;
  std::mt19937 rng_;
  const std::function<void(HostCtx&)>* body_ = nullptr;
  struct Jump {
    jmp_buf buf;
  };
  Jump main_{};
  std::vector<ucontext_t> ctx_;
  std::vector<Jump> jmp_;
  std::vector<bool> started_;
  std::vector<std::unique_ptr<char[]>> stacks_;
  ucontext_t template_{};
  std::vector<State> state_;
  std::vector<double> slots_;
  std::optional<std::string> error_;
};

inline int HostCtx::nthreads() const { return blk->nthreads(); }
inline long HostCtx::block() const { return blk->index(); }
inline long HostCtx::nblocks() const { return blk->grid(); }
inline void HostCtx::sync() const { blk->block_barrier(t); }

template <class T>
T HostCtx::warp_sum(T v) const {
  // The butterfly of __shfl_xor_sync: lane l adds the value of lane l ^ o at each stage.
  for (int o = 16; o > 0; o >>= 1) {
    blk->slot(t) = static_cast<double>(v);
    blk->warp_barrier(t);
    const T other = static_cast<T>(blk->slot(t ^ o));
    blk->warp_barrier(t);  // every lane has read before the next stage overwrites
    v += other;
  }
  return v;
}

/// The kernels of cuda/src/linear_kernels.cu, emulated: the same grid bodies (cuda_agent.hpp)
/// run block after block. The grid has fewer blocks than agents (B - 1, at least 1), so that
/// blocks stride over agents as on a GPU with more agents than blocks. Scratch -- the block's
/// shared memory or, with @p global_scratch, the per-agent rows of a workspace -- is filled with
/// NaN before every kernel, as it holds garbage on a GPU: a body that reads scratch it did not
/// write produces NaN.
template <class T>
class Kernels {
 public:
  Kernels(const Config& c, detail::Batch<T> s, Block& block, bool global_scratch = false)
      : c_(c), s_(s), block_(block), global_(global_scratch), vec_(detail::scratch_width(c)) {
    s_.width = detail::scratch_width(c);
    if (global_) work_.resize(static_cast<std::size_t>(s_.n_agents * s_.width));
    s_.work = global_ ? work_.data() : nullptr;
  }

  /// init_kernel: the prior state of agents first, ..., B-1.
  void initialize(const double* L0, const double* mu0, bool diagonal, long first) {
    grid([&](HostCtx& ctx) { detail::init_grid(ctx, c_, s_, L0, mu0, diagonal, first, smem()); });
  }

  void sample(T* out, bool unit_norm) {
    grid([&](HostCtx& ctx) { detail::sample_grid(ctx, c_, s_, out, unit_norm, smem(), red()); });
  }

  /// act_kernel then restore_steps_kernel, after the memset of the error slots.
  void act(const T* X, long K, bool per_agent, const std::uint8_t* mask, bool mask_per_agent,
           T* theta, std::int64_t* choice, unsigned long long* errors) {
    std::vector<std::uint64_t> saved(static_cast<std::size_t>(s_.n_agents), 12345);
    errors[0] = errors[1] = errors[2] = kNoError;
    grid([&](HostCtx& ctx) {
      if (c_.policy == ensemblepp::Policy::ucb)
        detail::act_grid<true>(ctx, c_, s_, X, K, per_agent, mask, mask_per_agent, theta, choice,
                               saved.data(), errors, smem(), red());
      else
        detail::act_grid<false>(ctx, c_, s_, X, K, per_agent, mask, mask_per_agent, theta, choice,
                                saved.data(), errors, smem(), red());
    });
    elementwise(s_.n_agents, [&](HostCtx& ctx) {
      detail::restore_steps_grid(ctx, s_.steps, saved.data(), errors, s_.n_agents);
    });
  }

  /// check_kernel then update_kernel, after the memset of the error slots (bounds, refusals).
  void update(const T* x, const T* r, const std::uint8_t* mask, long n, unsigned long long* errors) {
    errors[0] = errors[1] = kNoError;
    if (n == 0) return;
    elementwise(s_.n_agents * n, [&](HostCtx& ctx) {
      detail::check_grid(ctx, x, r, mask, s_.n_agents * n, c_.dim, c_.noise_std, errors);
    });
    grid([&](HostCtx& ctx) { detail::update_grid(ctx, c_, s_, x, r, mask, n, errors, smem(), red()); });
  }

  /// check_kernel over the N rows then update_ragged_kernel (forgetting when @p gamma < 1, with
  /// dirs (d, d), targets (d) and updates (B) as in cuda_api.hpp), after the memset.
  void update_ragged(double gamma, const double* dirs, const double* targets, std::uint64_t* updates,
                     const T* x, const T* r, const std::uint8_t* mask, const std::int64_t* offsets,
                     long n_rows, unsigned long long* errors) {
    errors[0] = errors[1] = kNoError;
    if (n_rows == 0) return;
    const bool forgets = gamma < 1.0;
    widen(detail::ragged_width(c_, forgets));
    elementwise(n_rows, [&](HostCtx& ctx) {
      detail::check_grid(ctx, x, r, mask, n_rows, c_.dim, c_.noise_std, errors);
    });
    const detail::Forget f = forgets ? detail::forget_of(c_, gamma, dirs, targets, updates)
                                     : detail::Forget{0, 1.0, 0.0, nullptr, nullptr, nullptr};
    grid([&](HostCtx& ctx) {
      detail::update_ragged_grid(ctx, c_, s_, forgets ? &f : nullptr, x, r, mask, offsets, errors, smem(), red());
    });
  }

  /// probability_kernel after the memset of the error slots (the state is not changed).
  void action_probabilities(const T* X, long K, bool per_agent, const std::uint8_t* mask,
                            bool mask_per_agent, long n_samples, bool ties_first, double* out,
                            unsigned long long* errors) {
    errors[0] = errors[1] = errors[2] = kNoError;
    const detail::ProbabilityLayout L = detail::probability_layout(c_, K, block_.nthreads());
    widen(L.width);
    grid([&](HostCtx& ctx) {
      detail::probability_grid(ctx, c_, s_, X, K, per_agent, mask, mask_per_agent, n_samples, ties_first,
                               out, errors, L, smem(), red());
    });
  }

 private:
  void grid(const std::function<void(HostCtx&)>& body) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(work_.begin(), work_.end(), nan);
    const long blocks = s_.n_agents > 1 ? s_.n_agents - 1 : 1;
    for (long b = 0; b < blocks; ++b) {
      std::fill(vec_.begin(), vec_.end(), nan);
      std::fill(std::begin(red_value_), std::end(red_value_), nan);
      std::fill(std::begin(red_index_), std::end(red_index_), -7);
      std::fill(std::begin(red_flags_), std::end(red_flags_), 0);
      block_.run(b, blocks, body);
    }
  }

  // One-thread-per-element kernels on at most two blocks (the second strides if needed).
  void elementwise(long n, const std::function<void(HostCtx&)>& body) {
    const long per = block_.nthreads();
    const long blocks = n > per ? 2 : 1;
    for (long b = 0; b < blocks; ++b) block_.run(b, blocks, body);
  }

  // Scratch of @p width doubles per agent (the production kernels need more than the others).
  void widen(long width) {
    if (width <= s_.width) return;
    s_.width = width;
    vec_.resize(static_cast<std::size_t>(width));
    if (global_) {
      work_.resize(static_cast<std::size_t>(s_.n_agents * width));
      s_.work = work_.data();
    }
  }

  double* smem() { return global_ ? nullptr : vec_.data(); }
  detail::Reduce<T> red() { return detail::Reduce<T>{red_value_, red_index_, red_flags_}; }

  Config c_;
  detail::Batch<T> s_;
  Block& block_;
  bool global_;
  std::vector<double> vec_, work_;
  double red_value_[32];
  long long red_index_[32];
  int red_flags_[32];
};

/// Runs run(scenario, double{}) then run(scenario, float{}) on every scenario of @p scenarios, or
/// only on the one named @p only; an exception becomes a line "<name> error <what>" of the output
/// that the Python side parses.
template <class Scenario, std::size_t N, class Run>
int run_scenarios(const Scenario (&scenarios)[N], const std::string& only, Run&& run) {
  for (const Scenario& sc : scenarios) {
    if (!only.empty() && only != sc.name) continue;
    try {
      run(sc, 0.0);
      run(sc, 0.0f);
    } catch (const std::exception& e) {
      std::printf("%s error %s\n", sc.name, e.what());
    }
  }
  return 0;
}

/// Are two arrays equal bit for bit (the drivers' exactness checks)?
template <class V>
bool same_bits(const std::vector<V>& a, const std::vector<V>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(V)) == 0;
}

/// Largest |a - b| / (1 + |b|) over the entries, infinity where only one side is NaN.
template <class T>
double rel_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    m = std::max(m, std::abs(x - y) / (1.0 + std::abs(y)));
  }
  return m;
}

}  // namespace ensemblepp::cuda::emulation
