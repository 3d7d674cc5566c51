// src/cuda/lowering.cpp: plans (core/plan.hpp) -> CUDA launches (see lowering.hpp).
#include "cuda/lowering.hpp"

#include <algorithm>

#include "core/random.hpp"

namespace hyperattn::cuda {
namespace {

using core::Part;
using core::Plan;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

Lowered lower(const Plan& plan, const AttentionConfig& config) {
  Lowered out;
  out.direct = plan.phases.size() == 1 && plan.empty_rows.empty();
  for (std::size_t phase_index = 0; phase_index < plan.phases.size(); ++phase_index) {
    std::vector<Part> parts = plan.phases[phase_index].parts;
    // Rows that see no key: an exact problem without keys writes O = 0, LSE = -inf in phase 0.
    if (phase_index == 0 && !plan.empty_rows.empty())
      parts.push_back({plan.empty_rows[0], plan.empty_rows[1], 0, 0, core::kNoCausalMask, false, 0});
    LaunchPlan launch;
    launch.problem_begin = static_cast<std::int64_t>(out.problems.size());
    launch.tile_begin = static_cast<std::int64_t>(out.tiles.size());
    launch.merge = phase_index > 0;
    struct CostedTile {
      Tile tile;
      std::int64_t cost;
    };
    std::vector<CostedTile> tiles;
    for (const Part& part : parts) {
      Problem pr;
      pr.q0 = part.q0;
      pr.q_len = part.q1 - part.q0;
      pr.k0 = part.k0;
      pr.k_len = part.k1 - part.k0;
      pr.causal_diagonal = part.causal_diagonal == core::kNoCausalMask ? kNoMask : part.causal_diagonal;
      pr.sinks = part.approximate ? part.sinks : 0;
      pr.subproblem = part.subproblem;
      pr.lsh = part.approximate ? 1 : 0;
      const auto problem_index = static_cast<std::int32_t>(out.problems.size() - static_cast<std::size_t>(launch.problem_begin));
      if (part.approximate) {
        out.any_lsh = true;
        pr.num_blocks = ceil_div(pr.k_len - pr.sinks, config.block_size);
        pr.q_perm_offset = launch.q_row_len;
        pr.k_perm_offset = launch.k_row_len;
        launch.q_ranges.insert(launch.q_ranges.end(), {pr.q0, pr.q_len, launch.q_row_len});
        launch.k_ranges.insert(launch.k_ranges.end(), {pr.k0 + pr.sinks, pr.k_len - pr.sinks, launch.k_row_len});
        launch.q_row_len += pr.q_len;
        launch.k_row_len += pr.k_len - pr.sinks;
        ++launch.lsh_problems;
        if (pr.subproblem == 0) out.top_level_blocks = std::max(out.top_level_blocks, pr.num_blocks);
        const std::int64_t keys = config.block_size + std::max(pr.sinks, config.sample_size);  // upper bound
        for (std::int64_t beta = 0; beta < pr.num_blocks; ++beta) {
          const std::int64_t lo = beta * pr.q_len / pr.num_blocks, hi = (beta + 1) * pr.q_len / pr.num_blocks;
          for (std::int64_t r = lo; r < hi; r += kTileRows)
            tiles.push_back({{problem_index, static_cast<std::int32_t>(beta), r, std::min(hi, r + kTileRows)}, keys});
        }
      } else {
        for (std::int64_t r = 0; r < pr.q_len; r += kTileRows) {
          const std::int64_t end = std::min(pr.q_len, r + kTileRows);
          std::int64_t keys = pr.k_len;
          if (pr.causal_diagonal != kNoMask) keys = std::clamp<std::int64_t>(end + pr.causal_diagonal, 0, pr.k_len);
          tiles.push_back({{problem_index, 0, r, end}, keys});
        }
      }
      out.problems.push_back(pr);
    }
    // Most keys first, so that the long tiles do not trail at the end of the launch.
    std::stable_sort(tiles.begin(), tiles.end(), [](const CostedTile& a, const CostedTile& b) { return a.cost > b.cost; });
    for (const CostedTile& t : tiles) out.tiles.push_back(t.tile);
    launch.problem_count = static_cast<std::int64_t>(out.problems.size()) - launch.problem_begin;
    launch.tile_count = static_cast<std::int64_t>(out.tiles.size()) - launch.tile_begin;
    out.max_q_row_len = std::max(out.max_q_row_len, launch.q_row_len);
    out.max_k_row_len = std::max(out.max_k_row_len, launch.k_row_len);
    out.launches.push_back(std::move(launch));
  }
  return out;
}

}  // namespace hyperattn::cuda
