#include "tests/video/test_videos.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clipserve::video::testing {
namespace {

constexpr int kBits = 8;

// FFmpeg reports every corrupt input the tests feed it on stderr; silence it
// unless the environment asks otherwise (OPENCV_FFMPEG_LOGLEVEL=16 shows
// errors). Set before any capture opens: OpenCV reads it at each open.
const bool kQuietFfmpeg = setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0) == 0;

// Mean of channel c over [x0, x1) x [y0, y1) of an RGB image.
double Mean(const uint8_t* rgb, int width, int x0, int x1, int y0, int y1,
            int c) {
  double sum = 0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) sum += rgb[(y * width + x) * 3 + c];
  }
  return sum / ((x1 - x0) * (y1 - y0));
}

}  // namespace

cv::Mat MakeFrame(int index, int width, int height) {
  cv::Mat frame(height, width, CV_8UC3, cv::Scalar(0, 0, 0));
  const int half_w = width / 2, half_h = height / 2;
  frame(cv::Rect(0, 0, half_w, half_h)).setTo(cv::Scalar(0, 0, 255));
  frame(cv::Rect(half_w, 0, width - half_w, half_h))
      .setTo(cv::Scalar(255, 0, 0));
  for (int k = 0; k < kBits; ++k) {
    if (((index >> (kBits - 1 - k)) & 1) == 0) continue;
    const int x0 = k * width / kBits, x1 = (k + 1) * width / kBits;
    frame(cv::Rect(x0, half_h, x1 - x0, height - half_h))
        .setTo(cv::Scalar(255, 255, 255));
  }
  return frame;
}

int ReadIndex(const uint8_t* rgb, int width, int height) {
  int index = 0;
  for (int k = 0; k < kBits; ++k) {
    const int x0 = k * width / kBits, x1 = (k + 1) * width / kBits;
    const int margin = (x1 - x0) / 4;
    const double v = Mean(rgb, width, x0 + margin, x1 - margin,
                          height / 2 + height / 8, height - height / 8, 1);
    if (v > 200) {
      index |= 1 << (kBits - 1 - k);
    } else if (v > 55) {
      return -1;
    }
  }
  return index;
}

bool HasRedLeftBlueRight(const uint8_t* rgb, int width, int height) {
  const int x0 = width / 8, x1 = 3 * width / 8;
  const int y0 = height / 8, y1 = 3 * height / 8;
  const auto is = [&](int x_from, int x_to, double r, double g, double b) {
    return std::abs(Mean(rgb, width, x_from, x_to, y0, y1, 0) - r) < 40 &&
           std::abs(Mean(rgb, width, x_from, x_to, y0, y1, 1) - g) < 40 &&
           std::abs(Mean(rgb, width, x_from, x_to, y0, y1, 2) - b) < 40;
  };
  return is(x0, x1, 255, 0, 0) && is(width - x1, width - x0, 0, 0, 255);
}

bool FfmpegAvailable() {
  (void)kQuietFfmpeg;
  static const bool available =
      std::system("ffmpeg -hide_banner -version >/dev/null 2>&1") == 0;
  return available;
}

std::string TempPath(absl::string_view extension) {
  static std::atomic<int> counter{0};
  return absl::StrCat(::testing::TempDir(), "/clipserve_video_test_", getpid(),
                      "_", counter++, ".", extension);
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

absl::StatusOr<std::string> EncodeWithFfmpeg(int count, int width, int height,
                                             absl::string_view fps,
                                             absl::string_view output_args,
                                             absl::string_view extension,
                                             absl::string_view filter) {
  const std::string raw = TempPath("bgr");
  const std::string out = TempPath(extension);
  {
    std::string frames;
    for (int i = 0; i < count; ++i) {
      const cv::Mat f = MakeFrame(i, width, height);
      frames.append(reinterpret_cast<const char*>(f.data),
                    f.total() * f.elemSize());
    }
    WriteFileOrDie(raw, frames);
  }
  const std::string command = absl::StrCat(
      "ffmpeg -hide_banner -loglevel error -nostdin -y -f rawvideo "
      "-pix_fmt bgr24 -s ",
      width, "x", height, " -r ", fps, " -i '", raw, "' ",
      filter.empty() ? "" : absl::StrCat("-vf \"", filter, "\" -vsync vfr "),
      output_args, " '", out, "'");
  const int rc = std::system(command.c_str());
  std::remove(raw.c_str());
  if (rc != 0) {
    std::remove(out.c_str());
    return absl::InternalError(absl::StrCat("failed (", rc, "): ", command));
  }
  std::string bytes = ReadFileOrDie(out);
  std::remove(out.c_str());
  return bytes;
}

absl::StatusOr<std::string> EncodeWithVideoWriter(int count, int width,
                                                  int height, double fps) {
  const std::string out = TempPath("avi");
  {
    cv::VideoWriter writer(out, cv::CAP_FFMPEG,
                           cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps,
                           cv::Size(width, height));
    if (!writer.isOpened()) {
      return absl::InternalError("cv::VideoWriter cannot open " + out);
    }
    for (int i = 0; i < count; ++i) writer.write(MakeFrame(i, width, height));
  }
  std::string bytes = ReadFileOrDie(out);
  std::remove(out.c_str());
  return bytes;
}

int OpenFds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (fcntl(fd, F_GETFD) != -1) ++n;
  }
  return n;
}

}  // namespace clipserve::video::testing
