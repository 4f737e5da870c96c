// Fuzz entry point for uploaded videos: DecodeClip on arbitrary bytes.
// The first byte picks the sampling, the rest is the file. Any input must
// give a clip of the promised size or INVALID_ARGUMENT (RESOURCE_EXHAUSTED
// for memory), never a crash, a hang or another code.
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "video/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace clipserve::video;
  Sampling sampling;
  sampling.num_frames = 1 + (data[0] & 7);
  if ((data[0] & 8) != 0) {
    sampling.mode = Sampling::Mode::kStride;
    sampling.stride = 1 + ((data[0] >> 4) & 3);
  }
  Geometry geometry;
  geometry.resize_short_side = 32;
  geometry.crop_height = 24;
  geometry.crop_width = 32;
  Limits limits;
  limits.max_bytes = 4 << 20;
  limits.max_width = limits.max_height = 1024;
  limits.max_frames = 2000;
  absl::StatusOr<Clip> clip = DecodeClip(
      absl::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
      sampling, geometry, limits);
  if (clip.ok()) {
    if (clip->frames.size() !=
        static_cast<size_t>(sampling.num_frames) * 24 * 32 * 3) {
      std::abort();
    }
  } else if (clip.status().code() != absl::StatusCode::kInvalidArgument &&
             clip.status().code() != absl::StatusCode::kResourceExhausted) {
    std::abort();
  }
  return 0;
}
