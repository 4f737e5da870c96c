// Shared by the checkpoint fuzz targets (safetensors_fuzz.cc, pth_fuzz.cc):
// the readers take a path, as the server's model loading does, so each input
// is written to one scratch file of this process first.
#ifndef CLIPSERVE_TESTS_FUZZ_CHECKPOINT_FUZZ_H_
#define CLIPSERVE_TESTS_FUZZ_CHECKPOINT_FUZZ_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/checkpoint.h"

namespace clipserve::fuzz {

// Writes `data` to $TMPDIR/clipserve-fuzz-<pid><extension> (the same file
// for every input) and reads it with ReadCheckpoint. Anything but a state
// dict of contiguous CPU tensors or INVALID_ARGUMENT aborts.
inline int ReadCheckpointFuzz(const uint8_t* data, size_t size,
                              const char* extension) {
  static const std::string path = [extension] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
           "/clipserve-fuzz-" + std::to_string(getpid()) + extension;
  }();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  auto tensors = runtime::ReadCheckpoint(path);
  std::remove(path.c_str());
  if (!tensors.ok()) {
    if (tensors.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  for (const auto& [name, tensor] : *tensors) {
    if (name.empty() || !tensor.defined() || !tensor.is_cpu()) std::abort();
  }
  return 0;
}

}  // namespace clipserve::fuzz

#endif  // CLIPSERVE_TESTS_FUZZ_CHECKPOINT_FUZZ_H_
