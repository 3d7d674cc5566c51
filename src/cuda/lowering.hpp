// src/cuda/lowering.hpp: lowers a plan (core/plan.hpp) to CUDA launches: one launch per
// phase, its problems, its tiles of kTileRows rows, and the ranges its sorts cover. Host-only C++,
// tested on machines without a GPU (tests/cuda/test_lowering.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "core/plan.hpp"
#include "cuda/device_types.hpp"
#include "hyperattn/config.hpp"

namespace hyperattn::cuda {

struct LaunchPlan {
  std::int64_t problem_begin = 0, problem_count = 0;  // into Lowered::problems
  std::int64_t tile_begin = 0, tile_count = 0;        // into Lowered::tiles
  bool merge = false;                                 // merge into the accumulator (phases > 0)
  // The approximated problems' sort ranges: [count, 3] triples (start, length, packed offset).
  std::vector<std::int64_t> q_ranges, k_ranges;
  std::int64_t lsh_problems = 0;
  std::int64_t q_row_len = 0, k_row_len = 0;  // sum of the range lengths (per head row)
};

struct Lowered {
  std::vector<Problem> problems;
  std::vector<Tile> tiles;
  std::vector<LaunchPlan> launches;
  bool direct = true;     // a single launch writes the outputs itself (no accumulator)
  bool any_lsh = false;
  std::int64_t max_q_row_len = 0, max_k_row_len = 0;
  std::int64_t top_level_blocks = 0;  // blocks of an approximated part with subproblem 0 (injected samples)
};

// The plans of core/plan.cpp: exact attention (one part) and HyperAttention (the recursion:
// leaves, visible prefix, one phase per level), the same functions the CPU executor runs.
using core::exact_plan;  // the plans are the core's: every backend lowers the same parts
using core::hyper_plan;

Lowered lower(const core::Plan& plan, const AttentionConfig& config);

}  // namespace hyperattn::cuda
