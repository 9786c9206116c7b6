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

/// The stream of one vector draw: key = seed, counter = (block, step_lo, step_hi, agent).
///
/// Every random vector of agent @p agent at its @p step -th draw uses blocks 0, 1, 2, ... of
/// this stream, so draws never overlap across agents or steps.
struct Stream {
  std::uint64_t seed;
  std::uint64_t step;
  std::uint32_t agent;

  EPP_HD Block4 block(std::uint32_t j) const {
    Block4 c;
    c.v[0] = j;
    c.v[1] = static_cast<std::uint32_t>(step);
    c.v[2] = static_cast<std::uint32_t>(step >> 32);
    c.v[3] = agent;
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

}  // namespace ensemblepp
