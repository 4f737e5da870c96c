// The pre-FFmpeg-library DecodeClip (see opencv_decode.h), unchanged but
// for its namespace: the baseline of bench/decode_compare.cc.
#include "bench/baseline/opencv_decode.h"

#include "video/decode.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <opencv2/core.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <utility>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "video/container.h"
#include "bench/baseline/mem_file.h"
#include "video/av_convert.h"
#include "video/sampling_internal.h"

namespace clipserve::bench_baseline {
using namespace ::clipserve::video;
namespace {

constexpr absl::string_view kPrefix = "could not decode video: ";

// FFmpeg's interrupt callback gives up on open() and on each grab() after
// this long; it bounds demuxer loops over garbage. Reads from the in-memory
// file never block, so only a pathological input comes near it.
constexpr int kOpenTimeoutMs = 10000;
constexpr int kReadTimeoutMs = 10000;

// Frame rates outside (0, kMaxFps] are taken as unknown (raw MPEG-4 streams
// report 1.2 MHz, for instance).
constexpr double kMaxFps = 1000;

using internal::CheckResizedSize;
using internal::ValidateGeometry;
using internal::ValidateSampling;

template <typename... Args>
absl::Status VideoError(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(kPrefix, args...));
}

absl::Status Prefixed(const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(kPrefix, status.message()));
}

// Makes OpenCV's own parallel loops (cv::resize, cv::cvtColor) run on the
// calling thread.
void SingleThreadedOpenCvOnce() {
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(1); });
}

std::vector<int> OpenParams(bool demux_only) {
  std::vector<int> params = {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, kOpenTimeoutMs,
                             cv::CAP_PROP_READ_TIMEOUT_MSEC, kReadTimeoutMs};
#if CV_VERSION_MAJOR > 4 || (CV_VERSION_MAJOR == 4 && CV_VERSION_MINOR >= 7)
  // One decoder thread per capture (opencv/opencv#22248, OpenCV 4.7). 4.6
  // uses one per online CPU and has no way to change it.
  params.insert(params.end(), {cv::CAP_PROP_N_THREADS, 1});
#endif
  if (demux_only) params.insert(params.end(), {cv::CAP_PROP_FORMAT, -1});
  return params;
}

bool Open(cv::VideoCapture& cap, const std::string& path, bool demux_only) {
  return cap.open(path, cv::CAP_FFMPEG, OpenParams(demux_only)) &&
         cap.isOpened();
}

// Containers whose frame count OpenCV reads from an index (MP4's sample
// table, AVI's header). Elsewhere it is duration * fps, a guess that is far
// off for variable frame rates.
bool DeclaresExactFrameCount(absl::string_view container) {
  return container == "MP4/MOV" || container == "AVI";
}

// Counts the video packets, without decoding: one per frame. At most
// max_frames + 1. -1 when the demuxer cannot be opened.
int64_t CountFramesByDemuxing(const std::string& path, int64_t max_frames) {
  cv::VideoCapture cap;
  if (!Open(cap, path, /*demux_only=*/true)) return -1;
  int64_t n = 0;
  while (n <= max_frames && cap.grab()) ++n;
  return n;
}


// Resizes, crops and converts `frame` into the crop_height x crop_width x 3
// RGB bytes at `out`. `resized` is scratch space, reused between frames.
absl::Status WriteFrame(const cv::Mat& frame, int64_t index,
                        const Geometry& geometry, const Limits& limits,
                        cv::Mat& resized, uint8_t* out) {
  int code;
  switch (frame.type()) {
    case CV_8UC3:
      code = cv::COLOR_BGR2RGB;
      break;
    case CV_8UC1:
      code = cv::COLOR_GRAY2RGB;
      break;
    case CV_8UC4:
      code = cv::COLOR_BGRA2RGB;
      break;
    default:
      return VideoError("frame ", index, " has unsupported pixel type ",
                        frame.type());
  }
  if (frame.cols > limits.max_width || frame.rows > limits.max_height) {
    return VideoError("frame ", index, " is ", frame.cols, "x", frame.rows,
                      ", over the limit of ", limits.max_width, "x",
                      limits.max_height);
  }
  const ResizeCrop rc = ComputeResizeCrop(frame.cols, frame.rows, geometry);
  if (absl::Status s =
          CheckResizedSize(rc, frame.cols, frame.rows, geometry, limits);
      !s.ok()) {
    return s;
  }
  const cv::Mat* source = &frame;
  if (rc.resized_width != frame.cols || rc.resized_height != frame.rows) {
    cv::resize(frame, resized,
               cv::Size(static_cast<int>(rc.resized_width),
                        static_cast<int>(rc.resized_height)),
               0, 0, cv::INTER_LINEAR);
    source = &resized;
  }
  const cv::Mat crop = (*source)(
      cv::Rect(static_cast<int>(rc.crop_x), static_cast<int>(rc.crop_y),
               static_cast<int>(geometry.crop_width),
               static_cast<int>(geometry.crop_height)));
  cv::Mat dst(static_cast<int>(geometry.crop_height),
              static_cast<int>(geometry.crop_width), CV_8UC3, out);
  cv::cvtColor(crop, dst, code);
  if (dst.data != out) {  // cvtColor reallocated: cannot happen
    return absl::InternalError(
        absl::StrCat(kPrefix, "colour conversion did not write in place"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Clip> DecodeClipImpl(absl::string_view bytes,
                                    const Sampling& sampling,
                                    const Geometry& geometry,
                                    const Limits& limits) {
  absl::StatusOr<absl::string_view> checked =
      internal::CheckInput(bytes, sampling, geometry, limits);
  if (!checked.ok()) return checked.status();
  const absl::string_view container = *checked;

  SingleThreadedOpenCvOnce();
  absl::StatusOr<MemFile> file = MemFile::Create("clipserve-video", bytes);
  if (!file.ok()) return Prefixed(file.status());

  // Declared after `file`, so destroyed (closing FFmpeg's own descriptor)
  // before it.
  cv::VideoCapture cap;
  if (!Open(cap, file->path(), /*demux_only=*/false)) {
    return VideoError("cannot open the ", container,
                      " data (corrupt or truncated?)");
  }

  // Resolution first: before anything is decoded.
  const double width_d = cap.get(cv::CAP_PROP_FRAME_WIDTH);
  const double height_d = cap.get(cv::CAP_PROP_FRAME_HEIGHT);
  if (!(width_d >= 1 && height_d >= 1)) {
    return VideoError("the ", container, " data declares no frame size");
  }
  if (width_d > static_cast<double>(limits.max_width) ||
      height_d > static_cast<double>(limits.max_height)) {
    return VideoError("resolution ", absl::StrFormat("%.0f", width_d), "x",
                      absl::StrFormat("%.0f", height_d),
                      " is over the limit of ", limits.max_width, "x",
                      limits.max_height);
  }
  Clip clip;
  clip.source_width = static_cast<int64_t>(width_d);
  clip.source_height = static_cast<int64_t>(height_d);
  {
    const ResizeCrop rc =
        ComputeResizeCrop(clip.source_width, clip.source_height, geometry);
    if (absl::Status s = CheckResizedSize(rc, clip.source_width,
                                          clip.source_height, geometry, limits);
        !s.ok()) {
      return s;
    }
  }

  const double fps = cap.get(cv::CAP_PROP_FPS);
  clip.source_fps = (std::isfinite(fps) && fps > 0 && fps <= kMaxFps) ? fps : 0;

  // The frame count: declared, or counted by demuxing.
  const double declared = cap.get(cv::CAP_PROP_FRAME_COUNT);
  int64_t total = 0;
  bool counted = false;
  if (DeclaresExactFrameCount(container) && std::isfinite(declared) &&
      declared >= 1) {
    if (declared > static_cast<double>(limits.max_frames)) {
      return VideoError("the video declares ",
                        absl::StrFormat("%.0f", declared),
                        " frames, over the limit of ", limits.max_frames);
    }
    total = static_cast<int64_t>(std::llround(declared));
  } else {
    counted = true;
    total = CountFramesByDemuxing(file->path(), limits.max_frames);
    if (total < 0) {  // fall back on decoding, then start again
      total = 0;
      while (total <= limits.max_frames && cap.grab()) ++total;
      cap.release();
      if (total <= limits.max_frames &&
          !Open(cap, file->path(), /*demux_only=*/false)) {
        return VideoError("cannot reopen the ", container, " data");
      }
    }
    if (total > limits.max_frames) {
      return VideoError("the video has more than ", limits.max_frames,
                        " frames, the limit");
    }
    if (total == 0) {
      return VideoError("the ", container, " data holds no video frames");
    }
  }
  clip.source_frames = total;
  if (absl::Status s = internal::CheckDuration(total, clip.source_fps, limits);
      !s.ok()) {
    return s;
  }

  absl::StatusOr<std::vector<int64_t>> indices =
      SampleFrameIndices(total, clip.source_fps, sampling);
  if (!indices.ok()) return Prefixed(indices.status());

  int64_t frame_bytes = 0;
  if (absl::Status s =
          internal::SizeClip(static_cast<int64_t>(indices->size()), geometry,
                             limits, &clip, &frame_bytes);
      !s.ok()) {
    return s;
  }

  // Decode up to the last sampled frame; convert only the sampled ones.
  uint8_t* out = reinterpret_cast<uint8_t*>(clip.frames.data());
  cv::Mat frame, resized;
  size_t next = 0;
  for (int64_t i = 0; next < indices->size(); ++i) {
    if (!cap.grab()) {
      return VideoError("stream ended at frame ", i, " of ", total,
                        counted ? " (corrupt?)" : " (truncated?)");
    }
    if (i != (*indices)[next]) continue;
    if (!cap.retrieve(frame) || frame.empty()) {
      return VideoError("frame ", i, " could not be decoded");
    }
    if (absl::Status s = WriteFrame(frame, i, geometry, limits, resized,
                                    out + next * frame_bytes);
        !s.ok()) {
      return s;
    }
    ++next;
  }
  clip.frame_indices = *std::move(indices);
  return clip;
}

}  // namespace

absl::StatusOr<Clip> DecodeClip(absl::string_view bytes,
                                const Sampling& sampling,
                                const Geometry& geometry,
                                const Limits& limits) {
  try {
    return DecodeClipImpl(bytes, sampling, geometry, limits);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat(kPrefix, "OpenCV: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(kPrefix, e.what()));
  }
}

}  // namespace clipserve::bench_baseline
