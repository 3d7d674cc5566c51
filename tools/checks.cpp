// tools/checks.cpp: see checks.hpp.
#include "checks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace hyperattn::cli {

Status check_output_path(const char* flag, const std::string& path) {
  if (path.empty()) return Status::Ok();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return Status::InvalidArgument(fmt::format("{} {}: is a folder; expected the path of a file to write", flag, path));
    if (S_ISFIFO(st.st_mode)) {
      // Opening a FIFO for writing blocks until a reader comes; without one, refuse now.
      const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0)
        return Status::InvalidArgument(
            fmt::format("{} {}: is a FIFO that nobody reads; expected a regular file (or a FIFO with a reader)", flag, path));
      ::close(fd);
      return Status::Ok();
    }
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
      return Status::InvalidArgument(fmt::format("{} {}: is not a regular file; expected the path of a file to write", flag, path));
    if (::access(path.c_str(), W_OK) != 0)
      return Status::InvalidArgument(fmt::format("{} {}: exists and cannot be written ({})", flag, path, std::strerror(errno)));
    return Status::Ok();
  }
  if (errno != ENOENT && errno != ENOTDIR)
    return Status::InvalidArgument(fmt::format("{} {}: cannot be used as an output ({})", flag, path, std::strerror(errno)));
  // A new file: its folder must exist, be a folder and be writable.
  const std::size_t slash = path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : path.substr(0, slash);
  if (path.back() == '/')
    return Status::InvalidArgument(fmt::format("{} {}: ends with '/' but there is no such folder; expected the path of a file to write", flag, path));
  if (::stat(folder.c_str(), &st) != 0)
    return Status::InvalidArgument(fmt::format("{} {}: the folder {} does not exist ({}); expected an existing folder", flag, path,
                                               folder, std::strerror(errno)));
  if (!S_ISDIR(st.st_mode))
    return Status::InvalidArgument(fmt::format("{} {}: {} is not a folder; expected an existing folder", flag, path, folder));
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    return Status::InvalidArgument(fmt::format("{} {}: cannot create a file in the folder {} ({})", flag, path, folder, std::strerror(errno)));
  return Status::Ok();
}

bool outputs_ok(const char* command, std::initializer_list<std::pair<const char*, const std::string*>> outputs) {
  for (const auto& [flag, path] : outputs)
    if (Status s = check_output_path(flag, *path); !s.ok()) {
      std::fprintf(stderr, "hyperattn %s: %s\n", command, s.message().c_str());
      return false;
    }
  return true;
}

}  // namespace hyperattn::cli
