// tools/checks.hpp: strict checks of command-line values, applied before anything is computed.
//
// CLI11 reads integers with strtoll/strtoull, which saturate ("99999999999999999999" becomes
// 2^63 - 1), wrap negatives into unsigned ("-1" becomes 2^64 - 1) and accept octal and hex; and a
// float option accepts "nan" and rounds 1e39 to inf. These validators look at the text the user typed
// and refuse it with a message naming the flag (CLI11 prefixes it), the expected range and the text.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <initializer_list>
#include <string>
#include <utility>
#include <system_error>
#include <type_traits>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "hyperattn/status.hpp"

namespace hyperattn::cli {

// A decimal integer of type T in [lo, hi]: no sign on unsigned types, no '+', no hex or octal, no
// saturation.
template <typename T>
CLI::Validator integer_in(T lo, T hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        T value{};
        const char* begin = text.data();
        const char* end = begin + text.size();
        const auto [stop, ec] = std::from_chars(begin, end, value, 10);
        if (ec == std::errc() && stop == end && value >= lo && value <= hi) return {};
        if (hi == std::numeric_limits<T>::max() && !std::is_unsigned_v<T>)
          return fmt::format("expected an integer >= {}, found '{}'", lo, text);
        return fmt::format("expected an integer from {} to {}, found '{}'", lo, hi, text);
      },
      hi == std::numeric_limits<T>::max() && !std::is_unsigned_v<T> ? fmt::format("INT >= {}", lo)
                                                                     : fmt::format("INT in [{} - {}]", lo, hi));
}

template <typename T>
CLI::Validator positive_integer() {
  return integer_in<T>(T{1}, std::numeric_limits<T>::max());
}

template <typename T>
CLI::Validator nonnegative_integer() {
  return integer_in<T>(T{0}, std::numeric_limits<T>::max());
}

// A finite number > 0 that fits in fp32 (the score scale): refuses "nan", "inf", "1e39", "0", "-1".
inline CLI::Validator positive_finite_float() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0.0;
        const char* begin = text.data();
        const char* end = begin + text.size();
        const auto [stop, ec] = std::from_chars(begin, end, value);
        if (ec == std::errc() && stop == end && std::isfinite(value) && value > 0.0 &&
            value <= static_cast<double>(std::numeric_limits<float>::max()) &&
            static_cast<float>(value) > 0.0f)
          return {};
        return fmt::format("expected a finite number > 0 representable in float32 (at most {:.4g}), found '{}'",
                           static_cast<double>(std::numeric_limits<float>::max()), text);
      },
      "FLOAT > 0");
}

// An output file named by `flag` (--out, --lse, --json, --plot, --per-position): checked before
// computing so that a typo costs nothing. Refuses a path that is a folder, whose folder is missing or
// not a folder or not writable, and a FIFO nobody reads (open would block). An empty path passes
// (the flag was not given). InvalidArgument naming the flag and the path.
Status check_output_path(const char* flag, const std::string& path);

// check_output_path over (flag, path) pairs; prints "hyperattn <command>: <message>" for the first
// refusal and returns false.
bool outputs_ok(const char* command, std::initializer_list<std::pair<const char*, const std::string*>> outputs);

}  // namespace hyperattn::cli
