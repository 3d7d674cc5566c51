// fuzz/fuzz_npy.cpp: io::read_npy on arbitrary bytes. A parse either fails with a Status or yields an
// array whose bytes match its shape and type; it never crashes, leaks or allocates past the file.
#include <cstdint>

#include "fuzz_util.hpp"
#include "io/array_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hyperattn;
  fuzz::MemFile file(data, size);
  io::Array a;
  const Status s = io::read_npy(file.path(), &a, /*max_bytes=*/std::uint64_t{1} << 24);
  if (!s.ok()) {
    HYPERATTN_FUZZ_CHECK(!s.message().empty());
    return 0;
  }
  HYPERATTN_FUZZ_CHECK(a.numel() >= 0);
  HYPERATTN_FUZZ_CHECK(a.bytes.size() == static_cast<std::size_t>(a.numel()) * io::size_of(a.type));
  HYPERATTN_FUZZ_CHECK(a.bytes.size() <= size);
  const std::vector<float> values = a.to_f32();
  HYPERATTN_FUZZ_CHECK(values.size() == static_cast<std::size_t>(a.numel()));
  return 0;
}
