// Reading NumPy .npy files (format versions 1-3), as clips.
#ifndef CLIPSERVE_CLIENT_NPY_H_
#define CLIPSERVE_CLIENT_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipserve::client {

struct NpyArray {
  // NumPy's type string, e.g. "|u1" (uint8) or "<f4" (little-endian float32).
  std::string descr;
  std::vector<int64_t> shape;
  // The elements in C order, as stored.
  std::string data;
};

// Parses a whole .npy file. Fortran order is refused.
absl::StatusOr<NpyArray> ParseNpy(const std::string& bytes);
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// Serialises `array` as a version 1.0 .npy file.
std::string SerializeNpy(const NpyArray& array);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_NPY_H_
