#include "video/av_convert.h"

#include <cstring>

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include "absl/numeric/int128.h"
#include "video/container.h"
#include "video/sampling_internal.h"

namespace clipserve::video::internal {

absl::Status CheckResizedSize(const ResizeCrop& rc, int64_t width,
                              int64_t height, const Geometry& geometry,
                              const Limits& limits) {
  const absl::int128 pixels =
      absl::int128(rc.resized_width) * rc.resized_height;
  const absl::int128 limit = limits.max_resized_pixels;
  if (pixels > limit) {
    return VideoError("resizing ", width, "x", height, " to a short side of ",
                      geometry.resize_short_side, " gives ", rc.resized_width,
                      "x", rc.resized_height, ", over the limit of ",
                      static_cast<int64_t>(limit),
                      " pixels");
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::string_view> CheckInput(absl::string_view bytes,
                                             const Sampling& sampling,
                                             const Geometry& geometry,
                                             const Limits& limits) {
  for (const absl::Status& s :
       {ValidateSampling(sampling), ValidateGeometry(geometry)}) {
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(kPrefix, s.message()));
    }
  }
  if (bytes.empty()) return VideoError("the input is empty (0 bytes)");
  if (bytes.size() > limits.max_bytes) {
    return VideoError("the input is ", bytes.size(),
                      " bytes, over the limit of ", limits.max_bytes);
  }
  const absl::string_view container = SniffContainer(bytes);
  if (container.empty()) {
    return VideoError("not a video in a supported container (",
                      AcceptedContainers(), ")");
  }
  return container;
}

FrameConverter::FrameConverter(const Geometry& geometry, const Limits& limits)
    : geometry_(geometry), limits_(limits) {}

FrameConverter::~FrameConverter() { sws_freeContext(sws_); }

absl::Status FrameConverter::Write(const AVFrame& frame, int64_t index,
                                   uint8_t* out) {
  if (frame.width < 1 || frame.height < 1 ||
      frame.width > limits_.max_width || frame.height > limits_.max_height) {
    return VideoError("frame ", index, " is ", frame.width, "x",
                      frame.height, ", outside 1x1..", limits_.max_width,
                      "x", limits_.max_height);
  }
  const ResizeCrop rc =
      ComputeResizeCrop(frame.width, frame.height, geometry_);
  if (absl::Status s =
          CheckResizedSize(rc, frame.width, frame.height, geometry_, limits_);
      !s.ok()) {
    return s;
  }
  sws_ = sws_getCachedContext(
      sws_, frame.width, frame.height,
      static_cast<AVPixelFormat>(frame.format),
      static_cast<int>(rc.resized_width), static_cast<int>(rc.resized_height),
      AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
  if (sws_ == nullptr) {
    const char* name =
        av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame.format));
    return VideoError("frame ", index, " has pixel format ",
                      name != nullptr ? name : "unknown",
                      ", which cannot be converted to RGB");
  }
  const int64_t row = rc.resized_width * 3;
  resized_.resize(static_cast<size_t>(row * rc.resized_height));
  uint8_t* dst[4] = {resized_.data(), nullptr, nullptr, nullptr};
  const int dst_stride[4] = {static_cast<int>(row), 0, 0, 0};
  sws_scale(sws_, frame.data, frame.linesize, 0, frame.height, dst,
            dst_stride);
  const int64_t crop_row = geometry_.crop_width * 3;
  for (int64_t y = 0; y < geometry_.crop_height; ++y) {
    std::memcpy(out + y * crop_row,
                resized_.data() + (rc.crop_y + y) * row + rc.crop_x * 3,
                static_cast<size_t>(crop_row));
  }
  return absl::OkStatus();
}

}  // namespace clipserve::video::internal
