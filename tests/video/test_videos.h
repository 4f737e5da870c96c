// Synthetic test videos whose frames say which frame they are.
//
// Frame i (BGR, width x height): the top half is pure red on the left, pure
// blue on the right; the bottom half is 8 vertical stripes, white where bit
// (7 - k) of i is set, black elsewhere. Lossy codecs keep that readable.
#ifndef CLIPSERVE_TESTS_VIDEO_TEST_VIDEOS_H_
#define CLIPSERVE_TESTS_VIDEO_TEST_VIDEOS_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

namespace clipserve::video::testing {

cv::Mat MakeFrame(int index, int width, int height);

// Reads the index back from a whole (uncropped) RGB frame; -1 when the
// stripes are not clearly black or white.
int ReadIndex(const uint8_t* rgb, int width, int height);

// Whether the top-left quarter is red and the top-right quarter blue, in RGB
// order.
bool HasRedLeftBlueRight(const uint8_t* rgb, int width, int height);

// Whether the ffmpeg command-line tool runs.
bool FfmpegAvailable();

// Encodes frames 0..count-1 of MakeFrame with the ffmpeg CLI: raw BGR input
// at `fps` (an ffmpeg rate: "25", "12.5", "30000/1001"), then `output_args`
// (codec and format options), written to a temporary file with `extension`
// and read back. `filter` (e.g. "select=...") is applied first when given.
absl::StatusOr<std::string> EncodeWithFfmpeg(int count, int width, int height,
                                             absl::string_view fps,
                                             absl::string_view output_args,
                                             absl::string_view extension,
                                             absl::string_view filter = "");

// Encodes with cv::VideoWriter (FFmpeg backend): MJPG in AVI.
absl::StatusOr<std::string> EncodeWithVideoWriter(int count, int width,
                                                  int height, double fps);

// A new path in the test's temporary directory.
std::string TempPath(absl::string_view extension);

std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, absl::string_view bytes);

// Sampling of `num_frames` frames spread over the whole video.
inline Sampling Uniform(int64_t num_frames) {
  Sampling s;
  s.mode = Sampling::Mode::kUniform;
  s.num_frames = num_frames;
  return s;
}

// Sampling of `num_frames` frames from `start_seconds`, `stride` apart.
inline Sampling Stride(int64_t num_frames, double start_seconds, int64_t stride) {
  Sampling s;
  s.mode = Sampling::Mode::kStride;
  s.num_frames = num_frames;
  s.start_seconds = start_seconds;
  s.stride = stride;
  return s;
}

// Geometry with the given short side and crop.
inline Geometry MakeGeometry(int64_t short_side, int64_t crop_h,
                             int64_t crop_w) {
  Geometry g;
  g.resize_short_side = short_side;
  g.crop_height = crop_h;
  g.crop_width = crop_w;
  return g;
}

// How many file descriptors (below 4096) this process has open.
int OpenFds();

}  // namespace clipserve::video::testing

#endif  // CLIPSERVE_TESTS_VIDEO_TEST_VIDEOS_H_
