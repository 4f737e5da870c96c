// The OpenCV-free half of decode.h: which frames to sample and how to resize
// and crop them. Built in every configuration (CLIPSERVE_VIDEO on or off).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "video/decode.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

// Geometry fields above this are refused (and keep the arithmetic small).
constexpr int64_t kMaxGeometry = 1 << 16;

// Most frames one sampling may pick.
constexpr int64_t kMaxSampledFrames = 1 << 20;

// Round half to even of n / 2, n >= 0.
int64_t HalfRoundedToEven(int64_t n) {
  const int64_t q = n / 2;
  return (n % 2 == 1 && q % 2 == 1) ? q + 1 : q;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

namespace internal {

std::string Frames(int64_t n) {
  return absl::StrCat(n, n == 1 ? " frame" : " frames");
}

// 2 -> "2.0", 1.04 -> "1.04".
std::string Seconds(double s) {
  if (std::isfinite(s) && s == std::floor(s) && std::fabs(s) < 1e15) {
    return absl::StrFormat("%.1f", s);
  }
  return absl::StrFormat("%g", s);
}

absl::Status ValidateSampling(const Sampling& s) {
  if (s.mode != Sampling::Mode::kUniform && s.mode != Sampling::Mode::kStride) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid sampling: unknown mode ", static_cast<int>(s.mode)));
  }
  if (s.num_frames < 1 || s.num_frames > kMaxSampledFrames) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid sampling: num_frames is ", s.num_frames,
                     "; must be in [1, ", kMaxSampledFrames, "]"));
  }
  if (s.mode == Sampling::Mode::kStride) {
    if (s.stride < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid sampling: stride is ", s.stride, "; must be >= 1"));
    }
    if (!std::isfinite(s.start_seconds) || s.start_seconds < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid sampling: start_seconds is ",
          absl::StrFormat("%g", s.start_seconds), "; must be finite and >= 0"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateGeometry(const Geometry& g) {
  const std::pair<const char*, int64_t> fields[] = {
      {"resize_short_side", g.resize_short_side},
      {"crop_height", g.crop_height},
      {"crop_width", g.crop_width},
  };
  for (const auto& [name, value] : fields) {
    if (value < 1 || value > kMaxGeometry) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid geometry: ", name, " is ", value,
                       "; must be in [1, ", kMaxGeometry, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(int64_t frames, double fps, const Limits& limits) {
  if (fps <= 0) return absl::OkStatus();
  const double seconds = static_cast<double>(frames) / fps;
  if (seconds <= limits.max_seconds) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "could not decode video: the video lasts ",
      absl::StrFormat("%.1f", seconds), " s (", Frames(frames), " at ",
      absl::StrFormat("%g", fps), " fps), over the limit of ",
      Seconds(limits.max_seconds), " s"));
}

absl::Status SizeClip(int64_t frames, const Geometry& geometry,
                      const Limits& limits, Clip* clip, int64_t* frame_bytes) {
  *frame_bytes = geometry.crop_height * geometry.crop_width * 3;
  const absl::int128 clip_bytes = absl::int128(*frame_bytes) * frames;
  if (clip_bytes >
      absl::int128(static_cast<uint64_t>(limits.max_output_bytes))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "could not decode video: the clip would be ",
        static_cast<int64_t>(clip_bytes), " bytes (", frames, " frames of ",
        geometry.crop_height, "x", geometry.crop_width,
        "x3), over the limit of ", limits.max_output_bytes));
  }
  clip->frames.resize(static_cast<size_t>(clip_bytes));
  clip->frames_count = frames;
  clip->height = geometry.crop_height;
  clip->width = geometry.crop_width;
  return absl::OkStatus();
}

}  // namespace internal

using internal::Frames;
using internal::Seconds;
using internal::ValidateSampling;

absl::StatusOr<std::vector<int64_t>> SampleFrameIndices(
    int64_t total_frames, double fps, const Sampling& sampling) {
  if (absl::Status s = ValidateSampling(sampling); !s.ok()) return s;
  const int64_t num = sampling.num_frames;
  if (total_frames < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("video has no frames; sampling ", Frames(num),
                     " needs at least ", num));
  }
  std::vector<int64_t> indices;
  if (sampling.mode == Sampling::Mode::kUniform) {
    if (total_frames < num) {
      return absl::InvalidArgumentError(
          absl::StrCat("video has ", Frames(total_frames), "; sampling ",
                       Frames(num), " needs at least ", num));
    }
    indices.reserve(static_cast<size_t>(num));
    for (int64_t i = 0; i < num; ++i) {
      // floor((i + 0.5) * total / num), exactly.
      indices.push_back(static_cast<int64_t>(
          (absl::int128(2 * i + 1) * total_frames) / (absl::int128(2) * num)));
    }
    return indices;
  }

  // kStride. `need` (frames the sampling reaches) in long double: exact for
  // any sane input, and no overflow for absurd ones.
  double first = 0;
  if (sampling.start_seconds > 0) {
    if (!(std::isfinite(fps) && fps > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the frame rate is unknown, so start_seconds ",
          Seconds(sampling.start_seconds), " cannot be turned into a frame"));
    }
    first = std::round(sampling.start_seconds * fps);
  }
  const long double need = static_cast<long double>(first) +
                           static_cast<long double>(num - 1) *
                               static_cast<long double>(sampling.stride) +
                           1;
  if (need > static_cast<long double>(total_frames)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video has ", Frames(total_frames), "; sampling ", Frames(num),
        " from ", Seconds(sampling.start_seconds), " s (frame ",
        absl::StrFormat("%.0f", first), ") with stride ", sampling.stride,
        " needs at least ", absl::StrFormat("%.0Lf", need)));
  }
  const int64_t start = static_cast<int64_t>(first);
  indices.reserve(static_cast<size_t>(num));
  for (int64_t i = 0; i < num; ++i) {
    indices.push_back(start + i * sampling.stride);
  }
  return indices;
}

ResizeCrop ComputeResizeCrop(int64_t width, int64_t height,
                             const Geometry& geometry) {
  const int64_t cw = geometry.crop_width;
  const int64_t ch = geometry.crop_height;
  ResizeCrop rc;
  if (width >= height) {
    // Landscape (or square): the height is the short side. The width,
    // floor(short * width / height), covers cw iff short >= cw*h/w.
    const int64_t short_side =
        std::max({geometry.resize_short_side, ch, CeilDiv(cw * height, width)});
    rc.resized_height = short_side;
    rc.resized_width =
        width == height ? short_side : short_side * width / height;
  } else {
    const int64_t short_side =
        std::max({geometry.resize_short_side, cw, CeilDiv(ch * width, height)});
    rc.resized_width = short_side;
    rc.resized_height = short_side * height / width;
  }
  rc.crop_x = HalfRoundedToEven(rc.resized_width - cw);
  rc.crop_y = HalfRoundedToEven(rc.resized_height - ch);
  return rc;
}

}  // namespace clipserve::video
