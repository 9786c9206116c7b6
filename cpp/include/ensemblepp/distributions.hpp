/// @file distributions.hpp
/// The five sampling distributions of Ensemble++, drawn from a Philox stream (host and device).
///
/// Each draw is an n-vector with unit second moment E|v|^2 = 1 multiplied by @p scale: the
/// *perturbation* scale is 1, the *reference* scale is sqrt(n) (so that E[v v^T] = I).
#pragma once

#include <cstdint>

#include "ensemblepp/config.hpp"
#include "ensemblepp/philox.hpp"

namespace ensemblepp {

/// Distribution identifiers; the integer values are part of the Python and CUDA ABI.
enum class Distribution : int {
  gaussian = 0,    ///< N(0, I/n)
  sphere = 1,      ///< uniform on the unit sphere S^(n-1)
  cube = 2,        ///< uniform on {+-1/sqrt(n)}^n
  coordinate = 3,  ///< +-e_i, i uniform, random sign
  sparse = 4,      ///< s distinct coordinates, each +-1/sqrt(s), random signs
};

namespace detail {
/// Reads 32-bit words 0, 1, 2, ... of a stream, producing a new Philox block every 4 words.
struct WordReader {
  const Stream& stream;
  Block4 block;
  std::uint32_t next = 0;
  EPP_HD explicit WordReader(const Stream& s) : stream(s), block() {}
  EPP_HD std::uint32_t word() {
    if ((next & 3u) == 0) block = stream.block(next >> 2);
    return block.v[next++ & 3u];
  }
};
}  // namespace detail

/// Index of the nonzero coordinate of a `coordinate` draw (also used to pick one ensemble model).
EPP_HD std::uint32_t draw_index(const Stream& stream, std::uint32_t n) {
  const Block4 b = stream.block(0);
  return uniform_index(b.v[0], n);
}

/// Writes one draw of length @p n to out[0], out[stride], ..., out[(n-1)*stride].
///
/// @param sparsity number of nonzero coordinates for Distribution::sparse (1 <= sparsity <= n).
/// Precondition: n <= kMaxVectorLength (philox.hpp), so that the draw stays within its blocks.
template <class T>
EPP_HD void draw(Distribution dist, int n, int sparsity, double scale, const Stream& stream,
                 T* out, long stride = 1) {
  switch (dist) {
    case Distribution::gaussian:
    case Distribution::sphere: {
      double sq = 0.0;
      constexpr int kChunk = 8;  // pairs per normal_pairs call: two vector lane sets on the CPU
      double a[kChunk], b[kChunk];
      const int pairs = (n + 1) / 2;
      for (int j0 = 0; j0 < pairs; j0 += kChunk) {
        const int count = pairs - j0 < kChunk ? pairs - j0 : kChunk;
        normal_pairs(stream, static_cast<std::uint32_t>(j0), count, a, b);
        for (int t = 0; t < count; ++t) {
          const int i = 2 * (j0 + t);
          out[i * stride] = static_cast<T>(a[t]);
          sq += a[t] * a[t];
          if (i + 1 < n) {
            out[(i + 1) * stride] = static_cast<T>(b[t]);
            sq += b[t] * b[t];
          }
        }
      }
      // Normalise in double from the recomputed values would cost a second pass of Philox;
      // instead rescale the stored values (exact for T = double, one rounding for float).
      const double f = dist == Distribution::gaussian ? scale / sqrt(static_cast<double>(n))
                                                      : scale / sqrt(sq);
      for (int i = 0; i < n; ++i) out[i * stride] = static_cast<T>(static_cast<double>(out[i * stride]) * f);
      break;
    }
    case Distribution::cube: {
      const double v = scale / sqrt(static_cast<double>(n));
      detail::WordReader words(stream);
      for (int i = 0; i < n; ++i) out[i * stride] = static_cast<T>((words.word() >> 31) ? -v : v);
      break;
    }
    case Distribution::coordinate: {
      const Block4 b = stream.block(0);
      const std::uint32_t k = uniform_index(b.v[0], static_cast<std::uint32_t>(n));
      for (int i = 0; i < n; ++i) out[i * stride] = T(0);
      out[k * stride] = static_cast<T>((b.v[1] >> 31) ? -scale : scale);
      break;
    }
    case Distribution::sparse: {
      const double v = scale / sqrt(static_cast<double>(sparsity));
      for (int i = 0; i < n; ++i) out[i * stride] = T(0);
      // Floyd's algorithm picks `sparsity` distinct indices with no scratch memory: the output
      // itself records which indices are taken (nonzero entries).
      detail::WordReader words(stream);
      for (int j = n - sparsity; j < n; ++j) {
        std::uint32_t k = uniform_index(words.word(), static_cast<std::uint32_t>(j + 1));
        const bool negative = (words.word() >> 31) != 0;
        if (out[k * stride] != T(0)) k = static_cast<std::uint32_t>(j);
        out[k * stride] = static_cast<T>(negative ? -v : v);
      }
      break;
    }
  }
}

}  // namespace ensemblepp
