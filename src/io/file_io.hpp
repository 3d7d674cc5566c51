// src/io/file_io.hpp: the POSIX file helpers of the readers and writers (internal to src/io).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/status.hpp"
#include "io/array_io.hpp"

namespace hyperattn::io::detail {

// strerror(errno): the reason of the last failed call, for messages.
std::string errno_text();

// An open file descriptor, closed on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Opens `path` read-only, refusing (without blocking) what is not a regular file (a directory, a
// FIFO, a device, a socket): IoError naming the path. *fd_out is then the caller's to close;
// *size_out is the file's size.
Status open_regular_file(const std::string& path, int* fd_out, std::uint64_t* size_out);

// Reads exactly `size` bytes at `offset`; a short read is an error.
Status read_exact(const std::string& path, int fd, std::uint64_t offset, void* dst, std::size_t size);

// Writes a whole file: `head`, then the bytes of each of `bodies`; on failure the partial file is
// removed.
Status write_file(const std::string& path, const std::string& head, const std::vector<const Array*>& bodies);

}  // namespace hyperattn::io::detail
