#include "bench/baseline/mem_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clipserve::bench_baseline {
namespace {

absl::Status ErrnoError(absl::string_view what, int error) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(error)));
}

}  // namespace

absl::StatusOr<MemFile> MemFile::Create(absl::string_view name,
                                        absl::string_view bytes) {
  const int fd = memfd_create(std::string(name).c_str(), MFD_CLOEXEC);
  if (fd < 0) return ErrnoError("memfd_create", errno);
  MemFile file(fd);  // closes fd on every return below

  const char* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t written = write(fd, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write to memfd", errno);
    }
    if (written == 0) return absl::InternalError("write to memfd: no progress");
    data += written;
    left -= static_cast<size_t>(written);
  }

  struct stat st;
  if (stat(file.path().c_str(), &st) != 0) {
    return ErrnoError(absl::StrCat("stat ", file.path()), errno);
  }
  return file;
}

MemFile::MemFile(int fd) : fd_(fd), path_(absl::StrCat("/proc/self/fd/", fd)) {}

MemFile::MemFile(MemFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

MemFile& MemFile::operator=(MemFile&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

MemFile::~MemFile() { Close(); }

void MemFile::Close() {
  if (fd_ >= 0) {
    close(fd_);  // not retried on EINTR: on Linux the fd is released anyway
    fd_ = -1;
  }
}

}  // namespace clipserve::bench_baseline
