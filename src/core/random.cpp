#include "core/random.hpp"

#include <cmath>
#include <numbers>

namespace hyperattn::rng {

double projection_normal(std::uint64_t seed, std::int64_t batch, std::int64_t head_kv, int dim, int bit) {
  const std::uint64_t index = (static_cast<std::uint64_t>(dim) << 16) | static_cast<std::uint64_t>(bit);
  const std::uint64_t b1 = bits(seed, Stream::projection, batch, head_kv, 0, 0, 2 * index);
  const std::uint64_t b2 = bits(seed, Stream::projection, batch, head_kv, 0, 0, 2 * index + 1);
  const double u1 = 1.0 - uniform01(b1);  // (0, 1]: log is finite
  const double u2 = uniform01(b2);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace hyperattn::rng
