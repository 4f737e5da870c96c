// The decoder clipserve shipped before it moved to FFmpeg's libraries
// (OpenCV's VideoCapture over an in-memory file), kept unchanged as the
// baseline of bench/decode_compare.cc: "today's DecodeClip" in the
// measurements of docs/benchmarks.md. Not linked into the server.
#ifndef CLIPSERVE_BENCH_BASELINE_OPENCV_DECODE_H_
#define CLIPSERVE_BENCH_BASELINE_OPENCV_DECODE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

namespace clipserve::bench_baseline {

absl::StatusOr<video::Clip> DecodeClip(absl::string_view bytes,
                                       const video::Sampling& sampling,
                                       const video::Geometry& geometry,
                                       const video::Limits& limits);

}  // namespace clipserve::bench_baseline

#endif  // CLIPSERVE_BENCH_BASELINE_OPENCV_DECODE_H_
