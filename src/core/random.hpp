// src/core/random.hpp: the counter-based random streams of HyperAttention (specification §4).
//
// Every random number is a pure function of (seed, stream, batch, head, subproblem, block, index):
// no state, no order dependence, so a seed gives the same output on any thread count and on any
// backend. Integer stages use only 64-bit integer arithmetic (bit-identical on CPU and CUDA);
// the Gaussian projections are drawn on the host in double and rounded to fp32 once.
#pragma once

#include <cstdint>

namespace hyperattn::rng {

enum class Stream : std::uint64_t { projection = 0x70726f6aull, sample = 0x73616d70ull };

// SplitMix64's finaliser: a bijection of 64-bit integers with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 64 random bits for one counter. Each field is folded in through mix64 so that nearby counters
// give unrelated bits.
// bits() in two steps, for many indices of one block: bits_of(block_bits(...), index).
constexpr std::uint64_t block_bits(std::uint64_t seed, Stream stream, std::uint64_t batch, std::uint64_t head,
                                   std::uint64_t subproblem, std::uint64_t block) {
  std::uint64_t h = mix64(seed ^ static_cast<std::uint64_t>(stream));
  h = mix64(h ^ batch);
  h = mix64(h ^ head);
  h = mix64(h ^ subproblem);
  return mix64(h ^ block);
}
constexpr std::uint64_t bits_of(std::uint64_t block_state, std::uint64_t index) { return mix64(block_state ^ index); }

constexpr std::uint64_t bits(std::uint64_t seed, Stream stream, std::uint64_t batch,
                             std::uint64_t head, std::uint64_t subproblem, std::uint64_t block,
                             std::uint64_t index) {
  return bits_of(block_bits(seed, stream, batch, head, subproblem, block), index);
}

__extension__ typedef unsigned __int128 uint128;

// A uniform integer in [0, n) from 64 random bits (multiply-shift; bias below 2^-32 for n < 2^32).
constexpr std::uint64_t uniform_below(std::uint64_t random_bits, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<uint128>(random_bits) * n) >> 64);
}

// A uniform double in [0, 1) with 53 random bits.
constexpr double uniform01(std::uint64_t random_bits) {
  return static_cast<double>(random_bits >> 11) * 0x1.0p-53;
}

// The id of a sub-problem of the causal recursion: its query and key start positions.
// The top-level problem (non-causal, or the whole causal problem) is (0, 0).
constexpr std::uint64_t subproblem_id(std::int64_t query_start, std::int64_t key_start) {
  return (static_cast<std::uint64_t>(query_start) << 32) ^ static_cast<std::uint64_t>(key_start);
}

// The id of a causal problem's visible-prefix part (rows [e, n_q) against the n_k - n_q keys every
// row sees, bottom-right alignment): the top bit keeps it apart from every recursion sub-problem.
constexpr std::uint64_t visible_prefix_id(std::int64_t first_causal_row) {
  return subproblem_id(first_causal_row, 0) ^ 0x8000000000000000ull;
}

// A standard normal sample (Box-Muller in double) for projection entry (dim, bit) of
// (batch, head_kv). Host only.
double projection_normal(std::uint64_t seed, std::int64_t batch, std::int64_t head_kv, int dim,
                         int bit);

}  // namespace hyperattn::rng
