// fuzz/fuzz_util.hpp: helpers shared by the harnesses.
//
// The .npy, .safetensors and text readers take a path (they open, fstat, pread or mmap the file,
// which is what a user's file goes through): the harnesses put the input into an anonymous
// in-memory file (memfd) and pass its /proc/self/fd path, so the real code path runs without
// touching the disk. Invariants a successful parse promises are checked with HYPERATTN_FUZZ_CHECK,
// which aborts (a crash for libFuzzer).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define HYPERATTN_FUZZ_CHECK(cond)                                                    \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace hyperattn::fuzz {

// An in-memory file holding `size` bytes, closed on destruction.
class MemFile {
 public:
  MemFile(const std::uint8_t* data, std::size_t size) {
    fd_ = ::memfd_create("hyperattn-fuzz", MFD_CLOEXEC);
    HYPERATTN_FUZZ_CHECK(fd_ >= 0);
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      HYPERATTN_FUZZ_CHECK(n > 0);
      done += static_cast<std::size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace hyperattn::fuzz
