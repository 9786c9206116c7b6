/// @file cuda_emulation.hpp
/// Host emulation of one CUDA thread block, for testing the bodies of cuda_agent.hpp without a
/// GPU (tests/test_cuda_emulated.py). Host-only; never compiled into the library.
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
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ensemblepp/cuda_agent.hpp"

namespace ensemblepp::cuda::emulation {

class Block;

/// The execution context handed to the cuda_agent.hpp bodies (same members as the device one).
struct HostCtx {
  Block* block;
  int t;
  int tid() const { return t; }
  int nthreads() const;
  int lane() const { return t & 31; }
  int warp() const { return t >> 5; }
  int nwarps() const { return nthreads() >> 5; }
  void sync() const;
  template <class T>
  T warp_sum(T v) const;
  void atomic_min(unsigned long long* p, unsigned long long v) const { *p = std::min(*p, v); }
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

inline int HostCtx::nthreads() const { return block->nthreads(); }
inline void HostCtx::sync() const { block->block_barrier(t); }

template <class T>
T HostCtx::warp_sum(T v) const {
  // The butterfly of __shfl_xor_sync: lane l adds the value of lane l ^ o at each stage.
  for (int o = 16; o > 0; o >>= 1) {
    block->slot(t) = static_cast<double>(v);
    block->warp_barrier(t);
    const T other = static_cast<T>(block->slot(t ^ o));
    block->warp_barrier(t);  // every lane has read before the next stage overwrites
    v += other;
  }
  return v;
}

/// Kernel-level drivers: the grid loops of cuda/src/linear_kernels.cu, one agent (block) after
/// the other. Scratch is filled with NaN before every agent, as shared memory holds garbage on a
/// GPU: a body that reads scratch it did not write produces NaN.
template <class T>
class Kernels {
 public:
  Kernels(const Config& c, detail::Batch<T> s, Block& block)
      : c_(c), s_(s), block_(block), vec_(detail::scratch_width(c)) {}

  void sample(T* out, bool unit_norm) {
    for (long b = 0; b < s_.n_agents; ++b) {
      fresh();
      block_.run([&](HostCtx& ctx) {
        detail::sample_agent(ctx, c_, s_.agent(c_, b), vec_.data(), red(), out + b * c_.dim, unit_norm);
      });
    }
  }

  /// act_kernel then restore_steps_kernel; errors (2) as in cuda_api.hpp.
  void act(const T* X, long K, bool per_agent, const std::uint8_t* mask, bool mask_per_agent,
           T* theta, std::int64_t* choice, unsigned long long* errors) {
    const long d = c_.dim, B = s_.n_agents;
    std::vector<std::uint64_t> saved(B, 0);
    errors[0] = errors[1] = kNoError;
    for (long b = 0; b < B; ++b) {
      fresh();
      const T* Xb = per_agent ? X + b * K * d : X;
      const std::uint8_t* mb = mask ? (mask_per_agent ? mask + b * K : mask) : nullptr;
      block_.run([&](HostCtx& ctx) {
        if (c_.policy == detail::kUcb)
          detail::act_agent<true>(ctx, c_, s_.agent(c_, b), vec_.data(), red(), Xb, K, mb,
                                  theta + b * d, choice + b, saved.data() + b, errors, b);
        else
          detail::act_agent<false>(ctx, c_, s_.agent(c_, b), vec_.data(), red(), Xb, K, mb,
                                   theta + b * d, choice + b, saved.data() + b, errors, b);
      });
    }
    if (errors[0] != kNoError || errors[1] != kNoError)
      for (long b = 0; b < B; ++b) s_.steps[b] = saved[b];
  }

  /// check_kernel then update_kernel; errors[0] as in cuda_api.hpp.
  void update(const T* x, const T* r, const std::uint8_t* mask, long n, unsigned long long* errors) {
    const long d = c_.dim, B = s_.n_agents;
    errors[0] = kNoError;
    for (long i = 0; i < B * n; ++i)
      if (!mask || mask[i]) errors[0] = std::min(errors[0], detail::check_observation(x, r, i, c_.dim));
    if (errors[0] != kNoError) return;
    for (long b = 0; b < B; ++b) {
      fresh();
      block_.run([&](HostCtx& ctx) {
        detail::update_agent(ctx, c_, s_.agent(c_, b), vec_.data(), red(), x + b * n * d, r + b * n,
                             mask ? mask + b * n : nullptr, n);
      });
    }
  }

 private:
  void fresh() {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    std::fill(vec_.begin(), vec_.end(), nan);
    std::fill(std::begin(red_value_), std::end(red_value_), nan);
    std::fill(std::begin(red_index_), std::end(red_index_), -7);
    std::fill(std::begin(red_flags_), std::end(red_flags_), 0);
  }
  detail::Reduce<T> red() { return detail::Reduce<T>{red_value_, red_index_, red_flags_}; }

  Config c_;
  detail::Batch<T> s_;
  Block& block_;
  std::vector<T> vec_;
  T red_value_[32];
  long long red_index_[32];
  int red_flags_[32];
};

}  // namespace ensemblepp::cuda::emulation
