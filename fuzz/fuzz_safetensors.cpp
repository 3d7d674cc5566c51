// fuzz/fuzz_safetensors.cpp: io::SafetensorsFile::open on arbitrary bytes (header length, JSON
// header, dtypes, shapes, offsets, overlaps, coverage of the data section, __metadata__). An open
// either fails with a Status or yields tensors whose bytes lie inside the file, without overlaps.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "fuzz_util.hpp"
#include "io/array_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hyperattn;
  fuzz::MemFile file(data, size);
  io::SafetensorsFile st;
  const Status s = io::SafetensorsFile::open(file.path(), &st);
  if (!s.ok()) {
    HYPERATTN_FUZZ_CHECK(!s.message().empty());
    HYPERATTN_FUZZ_CHECK(st.tensors().empty());
    return 0;
  }
  std::uint64_t total = 0;
  for (const auto& [name, t] : st.tensors()) {
    HYPERATTN_FUZZ_CHECK(t.numel() >= 0);
    HYPERATTN_FUZZ_CHECK(t.nbytes == static_cast<std::uint64_t>(t.numel()) * io::size_of(t.type));
    HYPERATTN_FUZZ_CHECK(t.nbytes <= size);
    total += t.nbytes;
    const io::Array copy = t.to_array();  // reads every byte: ASan/SEGV if outside the mapping
    HYPERATTN_FUZZ_CHECK(copy.bytes.size() == t.nbytes);
    if (t.nbytes > 0) {
      const auto* first = reinterpret_cast<const std::uint8_t*>(t.data);
      HYPERATTN_FUZZ_CHECK(std::equal(first, first + t.nbytes, reinterpret_cast<const std::uint8_t*>(copy.bytes.data())));
    }
  }
  HYPERATTN_FUZZ_CHECK(total <= size);  // no overlaps: the tensors fit in the file together
  return 0;
}
