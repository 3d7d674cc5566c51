#include "hyperattn/status.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn {

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid argument";
    case StatusCode::unsupported: return "unsupported";
    case StatusCode::out_of_memory: return "out of memory";
    case StatusCode::io_error: return "I/O error";
    case StatusCode::internal: return "internal error";
  }
  return "unknown";
}

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
  }
  return "unknown";
}

std::size_t size_of(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

}  // namespace hyperattn
