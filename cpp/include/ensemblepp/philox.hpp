/// @file philox.hpp
/// Philox4x32-10 counter-based generator (Salmon et al., SC'11), usable from host and device.
///
/// A draw is a pure function of (key, counter): the CPU and CUDA backends evaluate the same
/// function and therefore produce the same random numbers for the same seed, agent and step.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#include "ensemblepp/config.hpp"

namespace ensemblepp {

/// Four 32-bit words: one Philox block.
struct Block4 {
  std::uint32_t v[4];
};

namespace detail {
constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;

EPP_HD void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
#define EPP_SIMD_NORMALS 1
/// Four 64-bit lanes (GCC/Clang vector extensions over AVX2 registers): the vector lane type of
/// philox_rounds and box_muller on the CPU. Each uint64 lane carries one 32-bit Philox word.
typedef std::uint64_t u64x4 __attribute__((vector_size(32)));
typedef double f64x4 __attribute__((vector_size(32)));
inline void mulhilo(std::uint32_t m, u64x4 a, u64x4& hi, u64x4& lo) {
  const u64x4 p = (u64x4)_mm256_mul_epu32((__m256i)a, _mm256_set1_epi64x(m));
  hi = p >> 32;
  lo = p & 0xFFFFFFFFull;
}
#endif
}  // namespace detail

/// The 10 Philox4x32 rounds on G independent counters at once (G > 1 lets the CPU overlap their
/// multiply chains), for any lane type U with a detail::mulhilo: one 32-bit word per lane.
template <int G, class U>
EPP_HD void philox_rounds(U (&c)[G][4], std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    for (int g = 0; g < G; ++g) {
      U hi0, lo0, hi1, lo1;
      detail::mulhilo(detail::kPhiloxM0, c[g][0], hi0, lo0);
      detail::mulhilo(detail::kPhiloxM1, c[g][2], hi1, lo1);
      const U n0 = hi1 ^ c[g][1] ^ k0;
      const U n2 = hi0 ^ c[g][3] ^ k1;
      c[g][0] = n0;
      c[g][1] = lo1;
      c[g][2] = n2;
      c[g][3] = lo0;
    }
    k0 += detail::kPhiloxW0;
    k1 += detail::kPhiloxW1;
  }
}

/// Philox4x32 with 10 rounds applied to counter @p c under key (@p k0, @p k1).
EPP_HD Block4 philox4x32_10(Block4 c, std::uint32_t k0, std::uint32_t k1) {
  std::uint32_t w[1][4] = {{c.v[0], c.v[1], c.v[2], c.v[3]}};
  philox_rounds<1>(w, k0, k1);
  return Block4{{w[0][0], w[0][1], w[0][2], w[0][3]}};
}

/// Limits of the counter layout below.
constexpr int kBlockBits = 16;                                   ///< bits of the block index
constexpr std::uint64_t kMaxBlocks = std::uint64_t{1} << kBlockBits;  ///< blocks per vector draw
constexpr std::uint64_t kMaxSteps = std::uint64_t{1} << 48;      ///< draws per stream (2^48)
/// Longest vector one draw may produce: a Gaussian uses one block per pair of coordinates, the
/// other distributions fewer (cube 1/4, sparse 1/2 block per coordinate, coordinate one block).
constexpr long kMaxVectorLength = 2L * static_cast<long>(kMaxBlocks);

/// The random stream of one agent: key = seed, 128-bit counter =
///
///   word 0: block index j (bits 0-15) | bits 32-47 of the step (bits 16-31)
///   word 1: bits 0-31 of the step
///   word 2: bits 0-31 of the stream id
///   word 3: bits 32-63 of the stream id
///
/// An agent is identified by (seed, stream id), a pair of 64-bit integers chosen by the user, so
/// its draws do not depend on where it sits in a batch. Its @p step -th random vector uses blocks
/// 0, 1, 2, ... (at most kMaxBlocks) of the counter, and steps run up to kMaxSteps: draws never
/// overlap across streams, steps or blocks as long as those limits hold, which the drivers check
/// (vector lengths when a policy is configured, the steps before every call that draws).
struct Stream {
  std::uint64_t seed;
  std::uint64_t step;
  std::uint64_t id;

  EPP_HD Block4 block(std::uint32_t j) const {
    Block4 c;
    c.v[0] = (j & 0xFFFFu) | (static_cast<std::uint32_t>(step >> 32) << 16);
    c.v[1] = static_cast<std::uint32_t>(step);
    c.v[2] = static_cast<std::uint32_t>(id);
    c.v[3] = static_cast<std::uint32_t>(id >> 32);
    return philox4x32_10(c, static_cast<std::uint32_t>(seed),
                         static_cast<std::uint32_t>(seed >> 32));
  }
};

/// Integer uniform on {0, ..., n-1} from one 32-bit word (multiply-shift; bias below n / 2^32).
EPP_HD std::uint32_t uniform_index(std::uint32_t w, std::uint32_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(w) * n) >> 32);
}

namespace detail {
/// The lane operations box_muller() needs, for one double lane and (EPP_SIMD_NORMALS) for four
/// AVX2 lanes. fused() is a single-rounding a*b+c wherever the hardware has it, so that
/// the scalar and the vector lanes round identically (the portable x86 build has no FMA and
/// rounds twice: its draws differ from the AVX2 build's in the last bits).
EPP_HD double fused(double a, double b, double c) {
#if defined(__CUDA_ARCH__) || defined(__FMA__) || defined(__aarch64__)
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}
EPP_HD double square_root(double x) { return sqrt(x); }
EPP_HD std::uint64_t mask_if_greater(std::uint64_t a, std::uint64_t b) { return a > b ? ~std::uint64_t{0} : 0; }
/// Bit views of a double, host and device (no type punning through unions).
EPP_HD std::uint64_t as_bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint64_t>(__double_as_longlong(d));
#else
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}
EPP_HD double as_double(std::uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
#endif
}
#if defined(EPP_SIMD_NORMALS)
inline f64x4 fused(f64x4 a, f64x4 b, f64x4 c) { return (f64x4)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c); }
inline f64x4 square_root(f64x4 x) { return (f64x4)_mm256_sqrt_pd((__m256d)x); }
// Lanes hold values below 2^63, so the signed comparison of AVX2 is the unsigned one.
inline u64x4 mask_if_greater(u64x4 a, u64x4 b) {
  return (u64x4)_mm256_cmpgt_epi64((__m256i)a, (__m256i)b);
}
inline u64x4 as_bits(f64x4 d) { return (u64x4)d; }
inline f64x4 as_double(u64x4 u) { return (f64x4)u; }
#endif
/// c in every lane of V (a scalar V is c itself).
template <class V, class S>
EPP_HD V splat(S c) { V v = {}; return v + c; }

/// Horner evaluation of c0 z^n + c1 z^(n-1) + ... + cn with fused steps (unrolled at compile time).
template <class D>
EPP_HD D horner_from(D acc, D) { return acc; }
template <class D, class... Rest>
EPP_HD D horner_from(D acc, D z, double c, Rest... rest) {
  return horner_from(fused(acc, z, splat<D>(c)), z, rest...);
}
template <class D, class... Rest>
EPP_HD D horner(D z, double c0, Rest... rest) { return horner_from(splat<D>(c0), z, rest...); }
}  // namespace detail

/// Box-Muller map of one Philox block (words w0..w3, one per lane, in the low 32 bits of U) to two
/// independent standard normals, written once for every lane type: double/uint64 (host and
/// device) and four AVX2 lanes (normal_pairs). No libm call, no branch:
///
///   u1 = (k + 1/2) 2^-52 with k the 52 bits (w0 << 20) ^ w1: uniform on (0, 1), never 0;
///   the angle is (q + f) pi/2, q = w2 >> 30 a uniform quadrant and f = j 2^-52 - 1/2 with j the
///   52 bits (w2 << 22) ^ w3, so the angle is uniform on the circle and independent of u1;
///   r = sqrt(-2 log u1), n0 = r cos(angle), n1 = r sin(angle).
///
/// log u1 = e ln 2 + 2 atanh(s) with u1 = m 2^e, m in [sqrt(1/2), sqrt(2)), s = (m-1)/(m+1), and
/// the atanh series to s^23 (|s| <= 0.172: truncation below 1e-18); sin and cos of
/// x = f pi/2 in [-pi/4, pi/4) by their Taylor series to x^15 and x^16 (truncation below 1e-16);
/// the quadrant turns (cos x, sin x) by q right angles with exact swaps and sign flips. Measured
/// against libm at the same uniforms: at most 4e-15 absolute over 2e6 draws.
template <class D, class U>
EPP_HD void box_muller(U w0, U w1, U w2, U w3, D& n0, D& n1) {
  using namespace detail;
  constexpr std::uint64_t kMantissa = 0x000FFFFFFFFFFFFFull, kOne = 0x3FF0000000000000ull;
  const U mask52 = splat<U>(kMantissa), one = splat<U>(kOne);
  // u1 = 1.k - (1 - 2^-53): exact, in (0, 1).
  const D u1 = as_double((((w0 << 20) ^ w1) & mask52) | one) - splat<D>(1.0 - 0x1.0p-53);
  const U b = as_bits(u1);
  const U mb = (b & mask52) | one;  // 1 <= m < 2
  const U big = mask_if_greater(mb, splat<U>(0x3FF6A09E667F3BCCull));  // m > sqrt(2)
  const D m = as_double(mb - (big & splat<U>(0x0010000000000000ull)));    // halved if big
  // Exponent field (+1 if halved) as a double without an integer conversion: 2^52 + field - 2^52.
  const D e = as_double(((b >> 52) - big) | splat<U>(0x4330000000000000ull)) -
              splat<D>(4503599627370496.0 + 1023.0);
  const D s = (m - splat<D>(1.0)) / (m + splat<D>(1.0));
  const D z = s * s;
  const D atanh_series = horner(z, 1.0 / 23, 1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13, 1.0 / 11,
                                    1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0);
  const D log_u1 = fused(e, splat<D>(0.69314718055994530942), (s + s) * atanh_series);
  const D r = square_root(splat<D>(-2.0) * log_u1);

  const U q = w2 >> 30;
  const D x = (as_double((((w2 << 22) ^ w3) & mask52) | one) - splat<D>(1.5)) *
              splat<D>(1.5707963267948966192);
  const D x2 = x * x;
  const D sin_x = fused(x * x2,
                        horner(x2, -1.0 / 1307674368000.0, 1.0 / 6227020800.0, -1.0 / 39916800.0,
                                    1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0),
                        x);
  const D cos_x = fused(x2,
                        horner(x2, 1.0 / 20922789888000.0, -1.0 / 87178291200.0, 1.0 / 479001600.0,
                                    -1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5),
                        splat<D>(1.0));
  // cos(x + q pi/2) and sin(x + q pi/2): odd q swaps them, q in {1, 2} negates the cosine,
  // q in {2, 3} the sine.
  const U odd = splat<U>(0) - (q & splat<U>(1));
  const U sb = as_bits(sin_x), cb = as_bits(cos_x);
  const U cos_sign = ((q + splat<U>(1)) >> 1) << 63, sin_sign = (q >> 1) << 63;
  n0 = r * as_double(((sb & odd) | (cb & ~odd)) ^ cos_sign);
  n1 = r * as_double(((cb & odd) | (sb & ~odd)) ^ sin_sign);
}

/// Two independent standard normals from one block (box_muller above).
EPP_HD void normal_pair(const Block4& b, double& n0, double& n1) {
  box_muller<double, std::uint64_t>(b.v[0], b.v[1], b.v[2], b.v[3], n0, n1);
}

#if defined(EPP_SIMD_NORMALS)
namespace detail {
/// G vector lane sets of normal_pairs: blocks j0, ..., j0 + 4G - 1, of which the first
/// min(count, 4G) are stored.
template <int G>
inline void normal_lane_sets(const Stream& stream, std::uint32_t j0, int count, double* n0, double* n1) {
  const u64x4 lane = {0, 1, 2, 3};
  const std::uint64_t high = static_cast<std::uint64_t>(static_cast<std::uint32_t>(stream.step >> 32)) << 16;
  u64x4 c[G][4];
  for (int g = 0; g < G; ++g) {
    c[g][0] = ((lane + (j0 + 4u * static_cast<std::uint32_t>(g))) & 0xFFFFull) | high;
    c[g][1] = u64x4{} + static_cast<std::uint32_t>(stream.step);
    c[g][2] = u64x4{} + static_cast<std::uint32_t>(stream.id);
    c[g][3] = u64x4{} + static_cast<std::uint32_t>(stream.id >> 32);
  }
  philox_rounds<G>(c, static_cast<std::uint32_t>(stream.seed), static_cast<std::uint32_t>(stream.seed >> 32));
  for (int g = 0; g < G && 4 * g < count; ++g) {
    f64x4 a, b;
    box_muller<f64x4, u64x4>(c[g][0], c[g][1], c[g][2], c[g][3], a, b);
    const int n = count - 4 * g < 4 ? count - 4 * g : 4;
    for (int l = 0; l < n; ++l) {
      n0[4 * g + l] = a[l];
      n1[4 * g + l] = b[l];
    }
  }
}
}  // namespace detail
#endif

/// Normals of blocks j0, ..., j0 + count - 1 of @p stream: n0[i], n1[i] = normal_pair(block j0 + i).
/// On an AVX2 + FMA host, four blocks per vector lane set, two sets interleaved where there are
/// more than four blocks left (the Philox multiply chains are latency-bound); the lanes evaluate
/// the same box_muller with the same fused steps, so the values are bit for bit those of
/// normal_pair (tested).
EPP_HD void normal_pairs(const Stream& stream, std::uint32_t j0, int count, double* n0, double* n1) {
#if defined(EPP_SIMD_NORMALS)
  for (int i = 0; i < count; i += 8) {
    const std::uint32_t j = j0 + static_cast<std::uint32_t>(i);
    if (count - i > 4)
      detail::normal_lane_sets<2>(stream, j, count - i, n0 + i, n1 + i);
    else
      detail::normal_lane_sets<1>(stream, j, count - i, n0 + i, n1 + i);
  }
#else
  for (int i = 0; i < count; ++i)
    normal_pair(stream.block(j0 + static_cast<std::uint32_t>(i)), n0[i], n1[i]);
#endif
}

/// Key (64 bits) of the probability draws of an agent at step @p step: one Philox block of the
/// counter (step, id) under the seed with a fixed domain constant xor-ed into the key. The
/// draws for sample i then use Stream{key, i, id}. They meet an acting draw only if the derived
/// key equals some agent's seed (chance 2^-64 per pair of keys).
EPP_HD std::uint64_t probability_key(std::uint64_t seed, std::uint64_t step, std::uint64_t id) {
  Block4 ctr{{static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
              static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32)}};
  const Block4 h = philox4x32_10(ctr, static_cast<std::uint32_t>(seed) ^ 0x70726F62u /* "prob" */,
                                 static_cast<std::uint32_t>(seed >> 32) ^ 0x61626C65u /* "able" */);
  return (static_cast<std::uint64_t>(h.v[1]) << 32) | h.v[0];
}

}  // namespace ensemblepp
