// RgbResizer: decoded RGB frames of any size (a client's raw camera frames)
// to the model's frame, resized and centre-cropped exactly as decoded video
// frames are (Geometry), in one swscale pass into the caller's buffer.
//
//   auto resizer = RgbResizer::Create(geometry, limits);
//   (*resizer)->Resize(rgb, width, height, out);  // crop_h x crop_w x 3 bytes
//
// INVALID_ARGUMENT for a frame whose byte count is not width x height x 3,
// or that is larger than limits.max_width x max_height. Not thread-safe:
// it caches the scaler between frames of one size.
#ifndef CLIPSERVE_VIDEO_RGB_RESIZER_H_
#define CLIPSERVE_VIDEO_RGB_RESIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

namespace clipserve::video {

class RgbResizer {
 public:
  static absl::StatusOr<std::unique_ptr<RgbResizer>> Create(const Geometry& geometry,
                                                            const Limits& limits);
  virtual ~RgbResizer() = default;
  // `index`: the frame's number, for messages.
  virtual absl::Status Resize(absl::string_view rgb, int64_t width, int64_t height,
                              int64_t index, uint8_t* out) = 0;
};

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_RGB_RESIZER_H_
