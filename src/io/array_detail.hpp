// src/io/array_detail.hpp: shape arithmetic and array checks shared by the readers and writers (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/status.hpp"
#include "io/array_io.hpp"

namespace hyperattn::io::detail {

// "(4, 1024, 64)", the way numpy prints shapes.
std::string shape_text(const std::vector<std::int64_t>& shape);

// The product of the dimensions: 0 when any is 0 (even if the others would overflow: a (0, 2^62,
// 2^62) array is valid and empty; found by fuzzing), saturating at INT64_MAX otherwise (the readers
// refuse such shapes before any array exists).
std::int64_t shape_numel(const std::vector<std::int64_t>& shape);

// numel * elem_size, or false when a dimension is negative or the product overflows int64.
bool checked_byte_count(const std::vector<std::int64_t>& shape, std::size_t elem_size, std::uint64_t* numel_out,
                        std::uint64_t* bytes_out);

// InvalidArgument "<path>: array shape ..." when the shape is invalid or `array.bytes` does not hold
// exactly its bytes (what a writer checks before writing anything).
Status check_array_consistent(const std::string& path, const Array& array);

}  // namespace hyperattn::io::detail
