// src/core/key_selection.hpp: which keys a sorted query block of an approximated part attends to
// (specification §2.3-2.4), written once for host code and CUDA device code (HYPERATTN_HD): the
// CPU executor (cpu/executor.cpp, gather_block_keys) and the CUDA tiles (cuda/tile_keys.hpp) both
// build their key lists from these functions and from the counters of core/random.hpp.
//
// A sampling mode is its sample count (sample_count) and its draw (the draws below); the
// executors only loop over a block's draws and turn weights into biases (log_weight).
//
// A part's keys [k0, k1) are its sinks [k0, k0 + sinks) followed by `hashed` = k1 - k0 - sinks keys
// in sorted-LSH order. Query block beta attends to the sinks, the sorted key block beta, and
// sample_count(...) samples drawn from the other hashed keys ("outside" the block).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"
#include "core/random.hpp"
#include "hyperattn/config.hpp"

namespace hyperattn::key_selection {

// The sorted key block `beta`: sorted positions [start, start + size) of the hashed keys (the last
// block may be short), and the count of hashed keys outside it.
struct BlockRange {
  std::int64_t start = 0, size = 0, outside = 0;
};

HYPERATTN_HD inline BlockRange block_range(std::int64_t hashed, std::int64_t block_size, std::int64_t beta) {
  BlockRange r;
  r.start = beta * block_size;
  const std::int64_t end = r.start + block_size < hashed ? r.start + block_size : hashed;
  r.size = end - r.start;
  r.outside = hashed - r.size;
  return r;
}

// The number of sorted blocks of `hashed` keys: ceil(hashed / block_size).
HYPERATTN_HD inline std::int64_t block_count(std::int64_t hashed, std::int64_t block_size) {
  return (hashed + block_size - 1) / block_size;
}

// The samples a block draws: none when it holds every hashed key; the sinks come out of the
// sample budget (every query attends to block_size + sample_size keys whether or not its
// sub-problem holds the sinks); stratified sampling draws at most one per key outside the block
// (every stratum non-empty), position-stratified at most one per hashed key.
HYPERATTN_HD inline std::int64_t sample_count(Sampling sampling, std::int64_t sample_size, std::int64_t sinks,
                                              std::int64_t hashed, const BlockRange& r) {
  if (r.outside <= 0) return 0;
  std::int64_t m = sample_size > sinks ? sample_size - sinks : 0;
  if (sampling == Sampling::stratified && r.outside < m) m = r.outside;
  if (sampling == Sampling::position_stratified && hashed < m) m = hashed;
  return m;
}

// The sorted position of the u-th hashed key outside block r (the outside keys in sorted order).
HYPERATTN_HD inline std::int64_t outside_position(std::int64_t u, const BlockRange& r) {
  return u < r.start ? u : u + r.size;
}

// Stratum i of n items cut into m equal strata: [lo, lo + size) with lo = floor(i n / m).
struct Stratum {
  std::int64_t lo = 0, size = 0;
};

HYPERATTN_HD inline Stratum stratum(std::int64_t i, std::int64_t n, std::int64_t m) {
  const std::int64_t lo = i * n / m;
  return {lo, (i + 1) * n / m - lo};
}

// Strata 0, 1, 2, ... of stratum(i, n, m) in turn without a division per step (the CPU draws a
// block's samples in order): the quotient n / m and the remainder stepped. The same (lo, size) as
// stratum(i, n, m) for every i (tests/core/test_key_selection.cpp).
class StratumWalk {
 public:
  HYPERATTN_HD StratumWalk(std::int64_t n, std::int64_t m) : small_(n / m), extra_(n % m), m_(m) {}
  HYPERATTN_HD std::int64_t small() const { return small_; }  // the size of the strata that are not one larger
  HYPERATTN_HD Stratum next() {
    rem_ += extra_;
    const bool large = rem_ >= m_;
    if (large) rem_ -= m_;
    const Stratum s{lo_, small_ + (large ? 1 : 0)};
    lo_ += s.size;
    return s;
  }

 private:
  std::int64_t small_, extra_, m_;
  std::int64_t lo_ = 0, rem_ = 0;
};

// ---- The draws (specification §2.4): which key a sample takes and how many keys it stands for --
// Each takes the sample's 64 random bits (core/random.hpp, Stream::sample, counter (batch, query
// head, sub-problem, block, draw)); a sample of weight w enters the block's softmax with the bias
// log w (log_weight), so the samples estimate the sum over the keys they stand for without bias.

// Sampling::uniform: an index among the block's `outside` keys (outside_position maps it to the
// sorted order), drawn with replacement; each of the m draws stands for outside / m keys.
HYPERATTN_HD inline std::int64_t uniform_draw(std::uint64_t bits, std::int64_t outside) {
  return static_cast<std::int64_t>(rng::uniform_below(bits, static_cast<std::uint64_t>(outside)));
}
HYPERATTN_HD inline double uniform_weight(std::int64_t outside, std::int64_t m) {
  return static_cast<double>(outside) / static_cast<double>(m);
}

// Sampling::stratified: draw i is an index in stratum i of the outside keys (stratum(i, outside,
// m), or the i-th step of a StratumWalk); it stands for the stratum's size. Strata of similar hash
// buckets make the estimate less noisy than independent draws.
// Sampling::position_stratified: draw i is a hashed key position (relative to the first hashed
// key) in stratum i of the hashed keys in position order (stratum(i, hashed, m)); it stands for the
// stratum's size, or for none (weight 0, bias -inf) when it lands in the query's own block.
HYPERATTN_HD inline std::int64_t stratum_draw(std::uint64_t bits, const Stratum& st) {
  return st.lo + static_cast<std::int64_t>(rng::uniform_below(bits, static_cast<std::uint64_t>(st.size)));
}

// Sampling::value_norm: a defensive mixture over the keys outside the block, p_j = 1/2 ||v_j||^2 /
// w_out + 1/2 / outside (w_out: their total squared norm), so every key keeps a positive probability
// and both the numerator and the denominator stay unbiased; with no mass outside every draw is
// uniform (p_j = 1 / outside). A draw of probability p among m stands for 1 / (m p) keys.
HYPERATTN_HD inline double value_norm_probability(double norm2, double w_out, std::int64_t outside) {
  return w_out > 0.0 ? 0.5 * norm2 / w_out + 0.5 / static_cast<double>(outside) : 1.0 / static_cast<double>(outside);
}

// The bias of a sample of weight w: log w in fp32 (the executors may compute it once per weight).
HYPERATTN_HD inline float log_weight(double w) { return static_cast<float>(std::log(w)); }

}  // namespace hyperattn::key_selection
