// An anonymous in-memory file, for libraries that read only from a path.
#ifndef CLIPSERVE_BENCH_BASELINE_MEM_FILE_H_
#define CLIPSERVE_BENCH_BASELINE_MEM_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clipserve::bench_baseline {

// A copy of some bytes in a memfd_create() file: in RAM (or swap), never on a
// file system, gone once the last descriptor to it is closed. Others open it
// through path(), "/proc/self/fd/N", which is valid in this process while the
// MemFile lives. The descriptor is close-on-exec and closed by the
// destructor. Linux only; needs /proc.
class MemFile {
 public:
  // INTERNAL when the file cannot be made or written (out of descriptors or
  // memory), or /proc/self/fd is missing.
  static absl::StatusOr<MemFile> Create(absl::string_view name,
                                        absl::string_view bytes);

  MemFile(MemFile&& other) noexcept;
  MemFile& operator=(MemFile&& other) noexcept;
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  ~MemFile();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  explicit MemFile(int fd);
  void Close();

  int fd_ = -1;
  std::string path_;
};

}  // namespace clipserve::bench_baseline

#endif  // CLIPSERVE_BENCH_BASELINE_MEM_FILE_H_
