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

// INVALID_ARGUMENT ("the video lasts ...") when `frames` at `fps` (0:
// unknown, no check) last longer than limits.max_seconds.
absl::Status CheckDuration(int64_t frames, double fps, const Limits& limits);

// Sizes clip->frames for `frames` frames of the geometry's crop (and sets
// frames_count, height, width), or INVALID_ARGUMENT when that would be over
// limits.max_output_bytes. Bytes per frame in *frame_bytes.
absl::Status SizeClip(int64_t frames, const Geometry& geometry,
                      const Limits& limits, Clip* clip, int64_t* frame_bytes);

}  // namespace clipserve::video::internal

#endif  // CLIPSERVE_VIDEO_SAMPLING_INTERNAL_H_
