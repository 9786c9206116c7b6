/// @file philox.hpp
/// Philox4x32-10 counter-based generator (Salmon et al., SC'11), usable from host and device.
///
/// A draw is a pure function of (key, counter): the CPU and CUDA backends evaluate the same
/// function and therefore produce the same random numbers for the same seed, agent and step.
#pragma once

#include <cmath>
#include <cstdint>

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
}  // namespace detail

/// Philox4x32 with 10 rounds applied to counter @p c under key (@p k0, @p k1).
EPP_HD Block4 philox4x32_10(Block4 c, std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo(detail::kPhiloxM0, c.v[0], hi0, lo0);
    detail::mulhilo(detail::kPhiloxM1, c.v[2], hi1, lo1);
    Block4 n;
    n.v[0] = hi1 ^ c.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ c.v[3] ^ k1;
    n.v[3] = lo0;
    c = n;
    k0 += detail::kPhiloxW0;
    k1 += detail::kPhiloxW1;
  }
  return c;
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

/// Uniform double in the open interval (0, 1) from two 32-bit words (53 random bits).
EPP_HD double uniform_open(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t x = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(x) + 0.5) * 0x1.0p-53;
}

/// Integer uniform on {0, ..., n-1} from one 32-bit word (multiply-shift; bias below n / 2^32).
EPP_HD std::uint32_t uniform_index(std::uint32_t w, std::uint32_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(w) * n) >> 32);
}

/// Two independent standard normals from one block (Box-Muller on 53-bit uniforms).
EPP_HD void normal_pair(const Block4& b, double& n0, double& n1) {
  const double u1 = uniform_open(b.v[0], b.v[1]);
  const double u2 = uniform_open(b.v[2], b.v[3]);
  const double r = sqrt(-2.0 * log(u1));
  const double a = 6.283185307179586476925286766559 * u2;
  n0 = r * cos(a);
  n1 = r * sin(a);
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
