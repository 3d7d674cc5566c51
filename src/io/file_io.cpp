// src/io/file_io.cpp: the POSIX file helpers (open, exact reads, whole-file writes) and read_regular_file.
#include "io/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace hyperattn::io {
namespace detail {

std::string errno_text() { return std::strerror(errno); }

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

Status open_regular_file(const std::string& path, int* fd_out, std::uint64_t* size_out) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::IoError(path + ": cannot open for reading: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return Status::IoError(path + ": cannot stat: " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    const char* what = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket" : "not a plain file";
    return Status::IoError(path + ": not a regular file (it is " + std::string(what) + "); expected a regular file");
  }
  *fd_out = fd;
  *size_out = static_cast<std::uint64_t>(st.st_size);
  return Status::Ok();
}

Status read_exact(const std::string& path, int fd, std::uint64_t offset, void* dst, std::size_t size) {
  auto* p = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(path + ": read failed: " + errno_text());
    }
    if (n == 0) {
      return Status::IoError(path + ": file shrank while reading (expected " + std::to_string(size) +
                             " bytes at offset " + std::to_string(offset) + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Status write_file(const std::string& path, const std::string& head, const std::vector<const Array*>& bodies) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return Status::IoError(path + ": cannot open for writing: " + errno_text());
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
  for (const Array* a : bodies) {
    if (!ok) break;
    if (!a->bytes.empty()) ok = std::fwrite(a->bytes.data(), 1, a->bytes.size(), f) == a->bytes.size();
  }
  const std::string why = ok ? std::string() : errno_text();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(path.c_str());
    return Status::IoError(path + ": write failed: " + (ok ? errno_text() : why));
  }
  return Status::Ok();
}

}  // namespace detail

Status read_regular_file(const std::string& path, std::string* out, std::uint64_t max_bytes) {
  int raw_fd = -1;
  std::uint64_t size = 0;
  HYPERATTN_RETURN_IF_ERROR(detail::open_regular_file(path, &raw_fd, &size));
  const detail::FileDescriptor fd(raw_fd);
  if (size > max_bytes) {
    return Status::IoError(path + ": " + std::to_string(size) + " bytes; expected at most " + std::to_string(max_bytes));
  }
  std::string text(static_cast<std::size_t>(size), '\0');
  HYPERATTN_RETURN_IF_ERROR(detail::read_exact(path, fd.get(), 0, text.data(), text.size()));
  *out = std::move(text);
  return Status::Ok();
}

}  // namespace hyperattn::io
