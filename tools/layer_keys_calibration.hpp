// tools/layer_keys_calibration.hpp: `hyperattn eval --layer-keys auto`, per-layer budgets measured on a window.
//
// Each layer that some patch approximates is patched alone at the configured budget (block_size +
// sample_size keys per query) and its KL against the exact run measured; then, per patch, that mean
// budget is shared over the layers it patches in proportion to sqrt(KL) (model/layer_budget.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "hyperattn/config.hpp"
#include "model/llama_model.hpp"
#include "model/patch_spec.hpp"

namespace hyperattn::cli {

// Calibrates on tokens[0, seq_len): *layer_sensitivity gets one KL per layer ([layers], 0 for a
// layer no patch approximates) and (*patch_keys)[p] the keys per query of every layer for patch p
// ([patches][layers]; layers the patch leaves exact get the mean budget, unused). Prints the KLs and
// each patch's budgets on stdout and a progress bar on stderr (none when `quiet`). Returns 0, or 1
// after printing "hyperattn eval: --layer-keys auto: ..." on stderr.
int calibrate_layer_keys(const model::LlamaModel& llama, const std::int32_t* tokens, std::int64_t seq_len,
                         const std::vector<model::PatchSpec>& patches, const AttentionConfig& hyper, int threads,
                         bool quiet, std::vector<double>* layer_sensitivity,
                         std::vector<std::vector<std::int64_t>>* patch_keys);

}  // namespace hyperattn::cli
