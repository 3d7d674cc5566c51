// hyperattn/status.hpp: the result of every public call.
// A call that rejects its input returns a Status whose message names the argument, what was
// expected and what arrived. Nothing in the library aborts on user input.
#pragma once

#include <string>
#include <utility>

namespace hyperattn {

enum class StatusCode {
  ok = 0,
  invalid_argument,  // a shape, stride, pointer or parameter the caller passed is wrong
  unsupported,       // valid but not implemented here (e.g. a head_dim or a backend)
  out_of_memory,     // a workspace could not be allocated
  io_error,          // a file could not be read or written, or is malformed
  internal,          // a bug in hyperattn: please report it
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::unsupported, std::move(m)}; }
  static Status OutOfMemory(std::string m) { return {StatusCode::out_of_memory, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::io_error, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::internal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::ok; }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

const char* to_string(StatusCode code);

}  // namespace hyperattn

// Returns early from the enclosing function when `expr` yields a non-ok Status.
#define HYPERATTN_RETURN_IF_ERROR(expr)               \
  do {                                                \
    ::hyperattn::Status hyperattn_status_ = (expr);   \
    if (!hyperattn_status_.ok()) return hyperattn_status_; \
  } while (0)
