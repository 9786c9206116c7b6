// CUDA kernels of the linear policies (see ensemblepp/cuda_api.hpp): one thread block per agent,
// the per-agent work in cuda_agent.hpp. Every step is a fixed number of launches on
// the caller's stream, with no synchronisation.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_agent.hpp"
#include "cuda_production.hpp"
#include "ensemblepp/cuda_api.hpp"
#include "ensemblepp/cuda_check.hpp"

namespace ensemblepp::cuda {

namespace {

using detail::Batch;
using detail::Reduce;

// Dynamic shared memory a block may use without opting in to more (48 KiB), less the static
// reduction buffers.
constexpr long kMaxSharedBytes = 40 * 1024;
constexpr long kMaxGrid = 1L << 20;

struct DeviceCtx {
  __device__ __forceinline__ int tid() const { return threadIdx.x; }
  __device__ __forceinline__ int nthreads() const { return blockDim.x; }
  __device__ __forceinline__ int lane() const { return threadIdx.x & 31; }
  __device__ __forceinline__ int warp() const { return threadIdx.x >> 5; }
  __device__ __forceinline__ int nwarps() const { return blockDim.x >> 5; }
  __device__ __forceinline__ long block() const { return blockIdx.x; }
  __device__ __forceinline__ long nblocks() const { return gridDim.x; }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  // Butterfly: every lane ends with the same bits (a + b == b + a at each stage).
  template <class T>
  __device__ __forceinline__ T warp_sum(T v) const {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  }
  __device__ __forceinline__ void atomic_min(unsigned long long* p, unsigned long long v) const {
    atomicMin(p, v);
  }
  template <class T>
  __device__ __forceinline__ void atomic_add(T* p, T v) const {
    atomicAdd(p, v);
  }
};

// Shared scratch of one block: the agent's vectors (dynamic, when they fit: else nullptr and
// the bodies use the global workspace) and the reduction buffers (static).
#define EPP_BLOCK_SCRATCH(T)                                                                 \
  extern __shared__ __align__(16) unsigned char epp_dynamic_smem[];                          \
  __shared__ double epp_red_value[32];                                                       \
  __shared__ long long epp_red_index[32];                                                    \
  __shared__ int epp_red_flags[32];                                                          \
  const Reduce<T> red{epp_red_value, epp_red_index, epp_red_flags};                          \
  double* smem = use_shared ? reinterpret_cast<double*>(epp_dynamic_smem) : nullptr;         \
  DeviceCtx ctx;

// The kernels are thin wrappers of the grid bodies in cuda_agent.hpp (which the host emulation
// runs too).
template <class T>
__global__ void init_kernel(Config cfg, Batch<T> s, const double* L0, const double* mu0,
                            bool diagonal, long first, bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  (void)red;
  detail::init_grid(ctx, cfg, s, L0, mu0, diagonal, first, smem);
}

template <class T>
__global__ void sample_kernel(Config cfg, Batch<T> s, T* out, bool unit_norm, bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  detail::sample_grid(ctx, cfg, s, out, unit_norm, smem, red);
}

template <class T, bool Ucb>
__global__ void act_kernel(Config cfg, Batch<T> s, const T* X, long K, bool per_agent,
                           const std::uint8_t* mask, bool mask_per_agent, T* theta,
                           std::int64_t* choice, std::uint64_t* saved,
                           unsigned long long* errors, bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  detail::act_grid<Ucb>(ctx, cfg, s, X, K, per_agent, mask, mask_per_agent, theta, choice, saved,
                        errors, smem, red);
}

__global__ void restore_steps_kernel(std::uint64_t* steps, const std::uint64_t* saved,
                                     const unsigned long long* errors, long B) {
  DeviceCtx ctx;
  detail::restore_steps_grid(ctx, steps, saved, errors, B);
}

template <class T>
__global__ void check_kernel(const T* x, const T* r, const std::uint8_t* mask, long n_total,
                             int d, double eta, unsigned long long* errors) {
  DeviceCtx ctx;
  detail::check_grid(ctx, x, r, mask, n_total, d, eta, errors);
}

template <class T>
__global__ void update_kernel(Config cfg, Batch<T> s, const T* x, const T* r,
                              const std::uint8_t* mask, long n, unsigned long long* errors,
                              bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  detail::update_grid(ctx, cfg, s, x, r, mask, n, errors, smem, red);
}

template <class T>
__global__ void update_ragged_kernel(Config cfg, Batch<T> s, detail::Forget f, bool forgets,
                                     const T* x, const T* r, const std::uint8_t* mask,
                                     const std::int64_t* offsets, unsigned long long* errors,
                                     bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  detail::update_ragged_grid(ctx, cfg, s, forgets ? &f : nullptr, x, r, mask, offsets, errors, smem, red);
}

template <class T>
__global__ void probability_kernel(Config cfg, Batch<T> s, const T* X, long K, bool per_agent,
                                   const std::uint8_t* mask, bool mask_per_agent, long n_samples,
                                   bool ties_first, double* out, unsigned long long* errors,
                                   detail::ProbabilityLayout layout, bool use_shared) {
  EPP_BLOCK_SCRATCH(T)
  detail::probability_grid(ctx, cfg, s, X, K, per_agent, mask, mask_per_agent, n_samples, ties_first,
                           out, errors, layout, smem, red);
}

// ---- host side -----------------------------------------------------------------------------

struct Launch {
  unsigned grid;
  unsigned threads;
  std::size_t shared_bytes;
  bool use_shared;
};

Launch launch_shape(const Config& c, const State& s) {
  Launch L{};
  L.grid = static_cast<unsigned>(s.n_agents < kMaxGrid ? s.n_agents : kMaxGrid);
  // Warps split rows and actions; a wide block pays off once rows are long.
  L.threads = c.dim <= 64 ? 128u : 256u;
  const long bytes = detail::scratch_width(c) * static_cast<long>(sizeof(double));
  L.use_shared = bytes <= kMaxSharedBytes;
  L.shared_bytes = L.use_shared ? static_cast<std::size_t>(bytes) : 0;
  if (!L.use_shared && s.work == 0)
    throw std::invalid_argument("work: this dimension needs a (B, " +
                                std::to_string(detail::scratch_width(c)) + ") workspace");
  return L;
}

void check_state(const Config& c, const State& s) {
  check_config(c);
  if (s.n_agents < 1) throw std::invalid_argument("n_agents: must be >= 1");
  if (!s.cov_root || !s.mean || !s.steps || !s.stream_ids)
    throw std::invalid_argument("state: null device pointer");
  if (has_factor(c.policy) && !s.factor)
    throw std::invalid_argument("factor: this policy needs a (B, d, M) factor");
}

template <class T>
Batch<T> typed(const Config& c, const State& s) {
  return Batch<T>{reinterpret_cast<double*>(s.cov_root),
                  reinterpret_cast<double*>(s.mean),
                  reinterpret_cast<T*>(s.factor),
                  reinterpret_cast<std::uint64_t*>(s.steps),
                  reinterpret_cast<const std::uint64_t*>(s.stream_ids),
                  reinterpret_cast<double*>(s.work),
                  s.n_agents,
                  detail::scratch_width(c)};
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

unsigned elementwise_grid(long n, unsigned threads) {
  const long g = (n + threads - 1) / threads;
  return static_cast<unsigned>(g < 1 ? 1 : (g < kMaxGrid ? g : kMaxGrid));
}

template <class T>
void init_t(const Config& c, const State& s, std::uintptr_t L0, std::uintptr_t mu0, bool diagonal,
            long first, cudaStream_t st) {
  const Launch L = launch_shape(c, s);
  init_kernel<T><<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, typed<T>(c, s), reinterpret_cast<const double*>(L0), reinterpret_cast<const double*>(mu0),
      diagonal, first, L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
}

template <class T>
void sample_t(const Config& c, const State& s, std::uintptr_t theta, bool unit_norm,
              cudaStream_t st) {
  const Launch L = launch_shape(c, s);
  sample_kernel<T><<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, typed<T>(c, s), reinterpret_cast<T*>(theta), unit_norm, L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
}

template <class T>
void act_t(const Config& c, const State& s, const Actions& a, std::uintptr_t choice,
           std::uintptr_t theta, std::uintptr_t saved, std::uintptr_t errors, cudaStream_t st) {
  const Launch L = launch_shape(c, s);
  auto* err = reinterpret_cast<unsigned long long*>(errors);
  EPP_CUDA_CHECK(cudaMemsetAsync(err, 0xFF, 3 * sizeof(unsigned long long), st));
  auto* kernel = c.policy == Policy::ucb ? act_kernel<T, true> : act_kernel<T, false>;
  kernel<<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, typed<T>(c, s), reinterpret_cast<const T*>(a.data), a.n_actions, a.per_agent,
      reinterpret_cast<const std::uint8_t*>(a.mask), a.mask_per_agent, reinterpret_cast<T*>(theta),
      reinterpret_cast<std::int64_t*>(choice), reinterpret_cast<std::uint64_t*>(saved), err,
      L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
  restore_steps_kernel<<<elementwise_grid(s.n_agents, 256), 256, 0, st>>>(
      reinterpret_cast<std::uint64_t*>(s.steps), reinterpret_cast<const std::uint64_t*>(saved),
      err, s.n_agents);
  EPP_CUDA_CHECK_LAUNCH();
}

template <class T>
void update_t(const Config& c, const State& s, std::uintptr_t x, std::uintptr_t r,
              std::uintptr_t mask, long n, std::uintptr_t errors, cudaStream_t st) {
  const Launch L = launch_shape(c, s);
  auto* err = reinterpret_cast<unsigned long long*>(errors);
  EPP_CUDA_CHECK(cudaMemsetAsync(err, 0xFF, 2 * sizeof(unsigned long long), st));  // bounds, refusals
  if (n == 0) return;
  const long total = s.n_agents * n;
  check_kernel<T><<<elementwise_grid(total, 256), 256, 0, st>>>(
      reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(r),
      reinterpret_cast<const std::uint8_t*>(mask), total, c.dim, c.noise_std, err);
  EPP_CUDA_CHECK_LAUNCH();
  update_kernel<T><<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, typed<T>(c, s), reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(r),
      reinterpret_cast<const std::uint8_t*>(mask), n, err, L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
}

}  // namespace

long workspace_size(const Config& c) {
  check_config(c);
  const long width = detail::scratch_width(c);
  return width * static_cast<long>(sizeof(double)) <= kMaxSharedBytes ? 0 : width;
}

void initialize(const Config& c, const State& s, std::uintptr_t prior_cov_root, std::uintptr_t prior_mean,
                bool diagonal, long first, std::uintptr_t stream) {
  check_state(c, s);
  if (!prior_cov_root || !prior_mean)
    throw std::invalid_argument("prior: null device pointer");
  if (first < 0 || first > s.n_agents) throw std::invalid_argument("first: out of range");
  if (first == s.n_agents) return;
  if (c.dtype == DType::float64)
    init_t<double>(c, s, prior_cov_root, prior_mean, diagonal, first, as_stream(stream));
  else
    init_t<float>(c, s, prior_cov_root, prior_mean, diagonal, first, as_stream(stream));
}

void sample(const Config& c, const State& s, std::uintptr_t theta, bool unit_norm,
            std::uintptr_t stream) {
  check_state(c, s);
  if (!theta) throw std::invalid_argument("theta: null device pointer");
  if (c.dtype == DType::float64)
    sample_t<double>(c, s, theta, unit_norm, as_stream(stream));
  else
    sample_t<float>(c, s, theta, unit_norm, as_stream(stream));
}

void act(const Config& c, const State& s, const Actions& a, std::uintptr_t choice,
         std::uintptr_t theta, std::uintptr_t saved, std::uintptr_t errors, std::uintptr_t stream) {
  check_state(c, s);
  if (a.n_actions < 1) throw std::invalid_argument("actions: the action set is empty");
  if (!a.data) throw std::invalid_argument("actions: null device pointer");
  if (!choice || !theta || !saved || !errors)
    throw std::invalid_argument("act: null device pointer among choice, theta, saved, errors");
  if (c.dtype == DType::float64)
    act_t<double>(c, s, a, choice, theta, saved, errors, as_stream(stream));
  else
    act_t<float>(c, s, a, choice, theta, saved, errors, as_stream(stream));
}

void update(const Config& c, const State& s, std::uintptr_t x, std::uintptr_t r,
            std::uintptr_t mask, long n_obs, std::uintptr_t errors, std::uintptr_t stream) {
  check_state(c, s);
  if (n_obs < 0) throw std::invalid_argument("x: negative number of observations");
  if (!errors) throw std::invalid_argument("errors: null device pointer");
  if (n_obs > 0 && (!x || !r)) throw std::invalid_argument("x, r: null device pointer");
  if (c.dtype == DType::float64)
    update_t<double>(c, s, x, r, mask, n_obs, errors, as_stream(stream));
  else
    update_t<float>(c, s, x, r, mask, n_obs, errors, as_stream(stream));
}

// ---- production loop -------------------------------------------------------------------------

namespace {

unsigned block_threads(const Config& c) { return c.dim <= 64 ? 128u : 256u; }

// A launch whose per-agent scratch is @p width doubles: shared memory when it fits, else the
// rows of @p work (which must then exist).
template <class T>
Launch production_shape(const Config& c, const State& s, long width, std::uintptr_t work, Batch<T>& b) {
  Launch L{};
  L.grid = static_cast<unsigned>(s.n_agents < kMaxGrid ? s.n_agents : kMaxGrid);
  L.threads = block_threads(c);
  const long bytes = width * static_cast<long>(sizeof(double));
  L.use_shared = bytes <= kMaxSharedBytes;
  L.shared_bytes = L.use_shared ? static_cast<std::size_t>(bytes) : 0;
  if (!L.use_shared && work == 0)
    throw std::invalid_argument("work: this problem needs a (B, " + std::to_string(width) + ") workspace");
  b.work = reinterpret_cast<double*>(work);
  b.width = width;
  return L;
}

template <class T>
void update_ragged_t(const Config& c, const State& s, const Forgetting& f, std::uintptr_t x,
                     std::uintptr_t r, std::uintptr_t mask, std::uintptr_t offsets, long n_rows,
                     std::uintptr_t work, std::uintptr_t errors, cudaStream_t st) {
  const bool forgets = f.gamma < 1.0;
  Batch<T> b = typed<T>(c, s);
  const Launch L = production_shape(c, s, detail::ragged_width(c, forgets), work, b);
  auto* err = reinterpret_cast<unsigned long long*>(errors);
  EPP_CUDA_CHECK(cudaMemsetAsync(err, 0xFF, 2 * sizeof(unsigned long long), st));  // bounds, refusals
  if (n_rows == 0) return;
  check_kernel<T><<<elementwise_grid(n_rows, 256), 256, 0, st>>>(
      reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(r),
      reinterpret_cast<const std::uint8_t*>(mask), n_rows, c.dim, c.noise_std, err);
  EPP_CUDA_CHECK_LAUNCH();
  const detail::Forget df =
      forgets ? detail::forget_of(c, f.gamma, reinterpret_cast<const double*>(f.dirs),
                                  reinterpret_cast<const double*>(f.targets),
                                  reinterpret_cast<std::uint64_t*>(f.updates))
              : detail::Forget{0, 1.0, 0.0, nullptr, nullptr, nullptr};
  update_ragged_kernel<T><<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, b, df, forgets, reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(r),
      reinterpret_cast<const std::uint8_t*>(mask), reinterpret_cast<const std::int64_t*>(offsets), err,
      L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
}

template <class T>
void probabilities_t(const Config& c, const State& s, const Actions& a, long n_samples, bool ties_first,
                     std::uintptr_t out, std::uintptr_t work, std::uintptr_t errors, cudaStream_t st) {
  Batch<T> b = typed<T>(c, s);
  const detail::ProbabilityLayout layout = detail::probability_layout(c, a.n_actions, block_threads(c));
  const Launch L = production_shape(c, s, layout.width, work, b);
  auto* err = reinterpret_cast<unsigned long long*>(errors);
  EPP_CUDA_CHECK(cudaMemsetAsync(err, 0xFF, 3 * sizeof(unsigned long long), st));
  probability_kernel<T><<<L.grid, L.threads, L.shared_bytes, st>>>(
      c, b, reinterpret_cast<const T*>(a.data), a.n_actions, a.per_agent,
      reinterpret_cast<const std::uint8_t*>(a.mask), a.mask_per_agent, n_samples, ties_first,
      reinterpret_cast<double*>(out), err, layout, L.use_shared);
  EPP_CUDA_CHECK_LAUNCH();
}

long workspace_or_zero(long width) {
  return width * static_cast<long>(sizeof(double)) <= kMaxSharedBytes ? 0 : width;
}

}  // namespace

long ragged_workspace_size(const Config& c, bool forgets) {
  check_config(c);
  return workspace_or_zero(detail::ragged_width(c, forgets));
}

void update_ragged(const Config& c, const State& s, const Forgetting& f, std::uintptr_t x, std::uintptr_t r,
                   std::uintptr_t mask, std::uintptr_t offsets, long n_rows, std::uintptr_t work,
                   std::uintptr_t errors, std::uintptr_t stream) {
  check_state(c, s);
  if (n_rows < 0) throw std::invalid_argument("x: negative number of rows");
  if (!errors) throw std::invalid_argument("errors: null device pointer");
  if (!offsets) throw std::invalid_argument("offsets: null device pointer");
  if (n_rows > 0 && (!x || !r)) throw std::invalid_argument("x, r: null device pointer");
  if (!(f.gamma > 0.0 && f.gamma <= 1.0)) throw std::invalid_argument("forgetting: must be in (0, 1]");
  if (f.gamma < 1.0 && (!f.dirs || !f.targets || !f.updates))
    throw std::invalid_argument("forgetting: null device pointer among dirs, targets, updates");
  if (c.dtype == DType::float64)
    update_ragged_t<double>(c, s, f, x, r, mask, offsets, n_rows, work, errors, as_stream(stream));
  else
    update_ragged_t<float>(c, s, f, x, r, mask, offsets, n_rows, work, errors, as_stream(stream));
}

long probability_workspace_size(const Config& c, long n_actions) {
  check_config(c);
  if (n_actions < 1) throw std::invalid_argument("actions: the action set is empty");
  return workspace_or_zero(detail::probability_layout(c, n_actions, block_threads(c)).width);
}

void action_probabilities(const Config& c, const State& s, const Actions& a, long n_samples, bool ties_first,
                          std::uintptr_t out, std::uintptr_t work, std::uintptr_t errors, std::uintptr_t stream) {
  check_state(c, s);
  if (a.n_actions < 1) throw std::invalid_argument("actions: the action set is empty");
  if (!a.data) throw std::invalid_argument("actions: null device pointer");
  if (n_samples < 1 || n_samples > (1L << 48)) throw std::invalid_argument("n_samples: must be in [1, 2**48]");
  if (!out || !errors) throw std::invalid_argument("action_probabilities: null device pointer among out, errors");
  if (c.dtype == DType::float64)
    probabilities_t<double>(c, s, a, n_samples, ties_first, out, work, errors, as_stream(stream));
  else
    probabilities_t<float>(c, s, a, n_samples, ties_first, out, work, errors, as_stream(stream));
}

}  // namespace ensemblepp::cuda
