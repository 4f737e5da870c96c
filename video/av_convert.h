// Internal to video/: decoded frames (FFmpeg's AVFrame) to the clip's RGB,
// resized and centre-cropped in one swscale pass; and the error wording
// DecodeClip and StreamDecoder share.
#ifndef CLIPSERVE_VIDEO_AV_CONVERT_H_
#define CLIPSERVE_VIDEO_AV_CONVERT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

struct AVFrame;
struct SwsContext;

namespace clipserve::video::internal {

inline constexpr absl::string_view kPrefix = "could not decode video: ";

template <typename... Args>
absl::Status VideoError(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(kPrefix, args...));
}

// INVALID_ARGUMENT when resizing a width x height frame as `rc` says would
// make more pixels than limits.max_resized_pixels.
absl::Status CheckResizedSize(const ResizeCrop& rc, int64_t width,
                              int64_t height, const Geometry& geometry,
                              const Limits& limits);

// The checks before a file is opened, in DecodeClip's order: the sampling,
// the geometry, the bytes (not empty, within limits.max_bytes), and that
// they start like an accepted container, whose name it returns.
absl::StatusOr<absl::string_view> CheckInput(absl::string_view bytes,
                                             const Sampling& sampling,
                                             const Geometry& geometry,
                                             const Limits& limits);

class FrameConverter {
 public:
  FrameConverter(const Geometry& geometry, const Limits& limits);
  ~FrameConverter();

  // Writes `frame` (frame `index` of its video, for messages) as
  // crop_height x crop_width x 3 RGB bytes at `out`. INVALID_ARGUMENT for a
  // frame outside the limits or a pixel format swscale cannot read.
  absl::Status Write(const AVFrame& frame, int64_t index, uint8_t* out);

 private:
  const Geometry geometry_;
  const Limits limits_;
  SwsContext* sws_ = nullptr;     // cached between frames
  std::vector<uint8_t> resized_;  // the resized frame, reused
};

}  // namespace clipserve::video::internal

#endif  // CLIPSERVE_VIDEO_AV_CONVERT_H_
