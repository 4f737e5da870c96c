// Internal to video/: checks and wording shared by the sampling code and the
// decoder.
#ifndef CLIPSERVE_VIDEO_SAMPLING_INTERNAL_H_
#define CLIPSERVE_VIDEO_SAMPLING_INTERNAL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "video/decode.h"

namespace clipserve::video::internal {

// "1 frame", "2 frames".
std::string Frames(int64_t n);
// 2 -> "2.0", 1.04 -> "1.04".
std::string Seconds(double s);
// INVALID_ARGUMENT naming the field, unless the sampling / geometry is usable.
absl::Status ValidateSampling(const Sampling& s);
absl::Status ValidateGeometry(const Geometry& g);

}  // namespace clipserve::video::internal

#endif  // CLIPSERVE_VIDEO_SAMPLING_INTERNAL_H_
