#include "video/rgb_resizer.h"

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>
}

#include "absl/strings/str_cat.h"
#include "video/av_convert.h"
#include "video/av_ptr.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

class SwsRgbResizer final : public RgbResizer {
 public:
  SwsRgbResizer(const Geometry& geometry, const Limits& limits)
      : limits_(limits), converter_(geometry, limits) {}

  absl::Status Init() {
    frame_.reset(av_frame_alloc());
    return frame_ ? absl::OkStatus()
                  : absl::ResourceExhaustedError("out of memory");
  }

  absl::Status Resize(absl::string_view rgb, int64_t width, int64_t height,
                      int64_t index, uint8_t* out) override {
    if (width <= 0 || height <= 0 || width > limits_.max_width ||
        height > limits_.max_height) {
      return absl::InvalidArgumentError(absl::StrCat(
          "frame ", index, " is ", width, "x", height, "; frames must be 1x1 to ",
          limits_.max_width, "x", limits_.max_height));
    }
    if (rgb.size() != static_cast<size_t>(width * height * 3)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "frame ", index, " has ", rgb.size(), " bytes; a ", width, "x", height,
          " RGB frame has ", width * height * 3));
    }
    // The caller's bytes, viewed as a frame (swscale only reads them).
    frame_->format = AV_PIX_FMT_RGB24;
    frame_->width = static_cast<int>(width);
    frame_->height = static_cast<int>(height);
    frame_->data[0] = reinterpret_cast<uint8_t*>(const_cast<char*>(rgb.data()));
    frame_->linesize[0] = static_cast<int>(width * 3);
    absl::Status s = converter_.Write(*frame_, index, out);
    frame_->data[0] = nullptr;
    return s;
  }

 private:
  const Limits limits_;
  internal::FrameConverter converter_;
  internal::AvPtr<AVFrame> frame_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RgbResizer>> RgbResizer::Create(const Geometry& geometry,
                                                               const Limits& limits) {
  if (absl::Status s = internal::ValidateGeometry(geometry); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  auto resizer = std::make_unique<SwsRgbResizer>(geometry, limits);
  if (absl::Status s = resizer->Init(); !s.ok()) return s;
  return std::unique_ptr<RgbResizer>(std::move(resizer));
}

}  // namespace clipserve::video
