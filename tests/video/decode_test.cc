// DecodeClip end to end, on videos generated here: every codec and container
// the tests use is made by the ffmpeg CLI or cv::VideoWriter, with frames
// that say which frame they are (test_videos.h).
#include "video/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/video/test_videos.h"

namespace clipserve::video {
namespace {

using ::clipserve::video::testing::EncodeWithFfmpeg;
using ::clipserve::video::testing::EncodeWithVideoWriter;
using ::clipserve::video::testing::FfmpegAvailable;
using ::clipserve::video::testing::HasRedLeftBlueRight;
using ::clipserve::video::testing::MakeGeometry;
using ::clipserve::video::testing::OpenFds;
using ::clipserve::video::testing::ReadFileOrDie;
using ::clipserve::video::testing::ReadIndex;
using ::clipserve::video::testing::TempPath;
using ::clipserve::video::testing::Stride;
using ::clipserve::video::testing::Uniform;
using ::clipserve::video::testing::WriteFileOrDie;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kPrefix[] = "could not decode video: ";

// The ffmpeg CLI comes with scripts/install-deps.sh: its absence fails.
#define REQUIRE_FFMPEG() \
  ASSERT_TRUE(FfmpegAvailable()) << "no ffmpeg CLI in PATH"

// Encodes or fails the test.
#define ENCODE_OR_FAIL(var, expr)                    \
  std::string var;                                   \
  {                                                  \
    absl::StatusOr<std::string> encoded_ = (expr);   \
    ASSERT_TRUE(encoded_.ok()) << encoded_.status(); \
    var = *std::move(encoded_);                      \
  }

// H.264 with the options most tests encode with; append "-f h264" and the
// like where needed.
constexpr char kX264[] = "-c:v libx264 -preset veryfast -pix_fmt yuv420p";

// The geometry that keeps a width x height frame as it is.
Geometry Whole(int width, int height) {
  return MakeGeometry(std::min(width, height), height, width);
}

const uint8_t* FrameData(const Clip& clip, int64_t t) {
  return reinterpret_cast<const uint8_t*>(clip.frames.data()) +
         t * clip.height * clip.width * 3;
}

// The index each frame of an uncropped clip shows.
std::vector<int64_t> ShownIndices(const Clip& clip) {
  std::vector<int64_t> shown;
  for (int64_t t = 0; t < clip.frames_count; ++t) {
    shown.push_back(ReadIndex(FrameData(clip, t), static_cast<int>(clip.width),
                              static_cast<int>(clip.height)));
  }
  return shown;
}

void ExpectError(const absl::StatusOr<Clip>& clip, absl::string_view message) {
  ASSERT_FALSE(clip.ok());
  EXPECT_EQ(clip.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(clip.status().message()),
            absl::StrCat(kPrefix, message));
}

void ExpectErrorStartingWith(const absl::StatusOr<Clip>& clip,
                             absl::string_view start) {
  ASSERT_FALSE(clip.ok());
  EXPECT_EQ(clip.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(clip.status().message()),
              StartsWith(absl::StrCat(kPrefix, start)));
}

// ---------------------------------------------------------------------------
// Which frames, across codecs, containers, frame rates and orientations.

struct CodecCase {
  std::string name;
  int width, height;
  std::string fps;  // as ffmpeg takes it
  double fps_value;
  std::string args;  // empty: cv::VideoWriter MJPG AVI
  std::string extension;
};

void PrintTo(const CodecCase& c, std::ostream* os) { *os << c.name; }

class DecodeCodecTest : public ::testing::TestWithParam<CodecCase> {};

TEST_P(DecodeCodecTest, UniformSamplingPicksTheRightFramesInRgb) {
  const CodecCase& c = GetParam();
  constexpr int kFrames = 60;
  absl::StatusOr<std::string> bytes;
  if (c.args.empty()) {
    bytes = EncodeWithVideoWriter(kFrames, c.width, c.height, c.fps_value);
  } else {
    REQUIRE_FFMPEG();
    bytes = EncodeWithFfmpeg(kFrames, c.width, c.height, c.fps, c.args,
                             c.extension);
  }
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  absl::StatusOr<Clip> clip =
      DecodeClip(*bytes, Uniform(16), Whole(c.width, c.height), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();

  const std::vector<int64_t> expected = *SampleFrameIndices(60, 0, Uniform(16));
  EXPECT_THAT(clip->frame_indices, ElementsAreArray(expected));
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(expected));
  for (int64_t t = 0; t < clip->frames_count; ++t) {
    EXPECT_TRUE(HasRedLeftBlueRight(FrameData(*clip, t), c.width, c.height))
        << "frame " << t;
  }
  EXPECT_EQ(clip->frames_count, 16);
  EXPECT_EQ(clip->height, c.height);
  EXPECT_EQ(clip->width, c.width);
  EXPECT_EQ(clip->frames.size(), size_t{16} * c.height * c.width * 3);
  EXPECT_EQ(clip->source_width, c.width);
  EXPECT_EQ(clip->source_height, c.height);
  EXPECT_EQ(clip->source_frames, kFrames);
  EXPECT_NEAR(clip->source_fps, c.fps_value, 0.01);
}

INSTANTIATE_TEST_SUITE_P(
    Codecs, DecodeCodecTest,
    ::testing::Values(
        CodecCase{"H264Mp4At25", 320, 240, "25", 25, kX264, "mp4"},
        CodecCase{"H264Mp4At29_97Portrait", 240, 320, "30000/1001", 29.97,
                  kX264, "mp4"},
        CodecCase{"H264MkvAt12_5Portrait", 240, 320, "12.5", 12.5, kX264,
                  "mkv"},
        CodecCase{"Mpeg4AviAt30", 320, 240, "30", 30, "-c:v mpeg4 -q:v 3",
                  "avi"},
        CodecCase{"MjpegAviAt12_5Portrait", 240, 320, "12.5", 12.5,
                  "-c:v mjpeg -q:v 3", "avi"},
        CodecCase{"Vp9WebmAt25", 320, 240, "25", 25,
                  "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 0 "
                  "-crf 30",
                  "webm"},
        CodecCase{"Vp8WebmAt30", 320, 240, "30", 30,
                  "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 2M", "webm"},
        CodecCase{"Mpeg2TsAt25", 320, 240, "25", 25,
                  "-c:v mpeg2video -q:v 3 -f mpegts", "ts"},
        CodecCase{"RawH264At25", 320, 240, "25", 25,
                  absl::StrCat(kX264, " -f h264"), "h264"},
        CodecCase{"Y4mAt25", 320, 240, "25", 25, "-pix_fmt yuv420p", "y4m"},
        CodecCase{"VideoWriterMjpgAviAt30", 320, 240, "30", 30, "", "avi"}),
    [](const ::testing::TestParamInfo<CodecCase>& info) {
      return info.param.name;
    });

TEST(DecodeClipTest, StrideSamplingStartsAtStartSeconds) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(60, 320, 240, "25", kX264, "mp4"));
  // 0.5 s at 25 fps: frame 12.5, rounded to 13.
  absl::StatusOr<Clip> clip =
      DecodeClip(bytes, Stride(10, 0.5, 3), Whole(320, 240), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  const std::vector<int64_t> expected = {13, 16, 19, 22, 25,
                                         28, 31, 34, 37, 40};
  EXPECT_THAT(clip->frame_indices, ElementsAreArray(expected));
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(expected));

  // Through the very last frame.
  clip = DecodeClip(bytes, Stride(2, 2.32, 1), Whole(320, 240), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray({58, 59}));
}

TEST(DecodeClipTest, StrideSamplingPastTheEndIsAnError) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(
      bytes, EncodeWithFfmpeg(60, 320, 240, "25", "-c:v mpeg4 -q:v 3", "avi"));
  ExpectError(DecodeClip(bytes, Stride(16, 2.0, 2), Geometry(), Limits()),
              "video has 60 frames; sampling 16 frames from 2.0 s (frame 50) "
              "with stride 2 needs at least 81");
}

TEST(DecodeClipTest, VariableFrameRateMatroskaCountsItsFrames) {
  REQUIRE_FFMPEG();
  // Keeps source frames n with n % 5 < 2: 24 of 60, with gaps in time, so the
  // duration-based count (57) is far off; the frames are counted instead.
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(60, 320, 240, "25", kX264, "mkv",
                                         "select='lt(mod(n\\,5)\\,2)'"));
  std::vector<int64_t> kept;
  for (int n = 0; n < 60; ++n) {
    if (n % 5 < 2) kept.push_back(n);
  }
  absl::StatusOr<Clip> clip =
      DecodeClip(bytes, Uniform(8), Whole(320, 240), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  EXPECT_EQ(clip->source_frames, 24);
  const std::vector<int64_t> sampled = *SampleFrameIndices(24, 0, Uniform(8));
  std::vector<int64_t> expected;
  for (int64_t i : sampled) expected.push_back(kept[i]);
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(expected));
}

// ---------------------------------------------------------------------------
// Geometry: DecodeClip must equal the reference pipeline, cv::resize of the
// whole frame (INTER_LINEAR), centre crop, BGR -> RGB, on the same decoder's
// frames, byte for byte.

struct GeometryCase {
  std::string name;
  int width, height;
  Geometry geometry;
  ResizeCrop expected;
};

void PrintTo(const GeometryCase& c, std::ostream* os) { *os << c.name; }

class DecodeGeometryTest : public ::testing::TestWithParam<GeometryCase> {};

TEST_P(DecodeGeometryTest, MatchesResizeThenCentreCrop) {
  REQUIRE_FFMPEG();
  const GeometryCase& c = GetParam();
  const std::string path = TempPath("mp4");
  {
    ENCODE_OR_FAIL(bytes,
                   EncodeWithFfmpeg(20, c.width, c.height, "25", kX264, "mp4"));
    WriteFileOrDie(path, bytes);
  }
  const std::string bytes = ReadFileOrDie(path);

  const ResizeCrop rc = ComputeResizeCrop(c.width, c.height, c.geometry);
  EXPECT_EQ(rc.resized_width, c.expected.resized_width);
  EXPECT_EQ(rc.resized_height, c.expected.resized_height);
  EXPECT_EQ(rc.crop_x, c.expected.crop_x);
  EXPECT_EQ(rc.crop_y, c.expected.crop_y);

  absl::StatusOr<Clip> clip =
      DecodeClip(bytes, Uniform(4), c.geometry, Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  ASSERT_EQ(clip->height, c.geometry.crop_height);
  ASSERT_EQ(clip->width, c.geometry.crop_width);

  cv::VideoCapture cap(path, cv::CAP_FFMPEG);
  ASSERT_TRUE(cap.isOpened());
  cv::Mat frame, resized, rgb;
  int64_t t = 0;
  for (int64_t i = 0; t < clip->frames_count; ++i) {
    ASSERT_TRUE(cap.read(frame));
    if (i != clip->frame_indices[t]) continue;
    cv::resize(frame, resized,
               cv::Size(static_cast<int>(rc.resized_width),
                        static_cast<int>(rc.resized_height)),
               0, 0, cv::INTER_LINEAR);
    cv::cvtColor(resized(cv::Rect(static_cast<int>(rc.crop_x),
                                  static_cast<int>(rc.crop_y),
                                  static_cast<int>(c.geometry.crop_width),
                                  static_cast<int>(c.geometry.crop_height))),
                 rgb, cv::COLOR_BGR2RGB);
    ASSERT_TRUE(rgb.isContinuous());
    // OpenCV converts to BGR at full size and then resizes; the decoder
    // converts and resizes in one swscale pass. Both bilinear: the pixels
    // agree to rounding and chroma siting.
    const uint8_t* got = FrameData(*clip, t);
    double sum = 0;
    int worst = 0;
    const size_t n = rgb.total() * 3;
    for (size_t k = 0; k < n; ++k) {
      const int d = std::abs(int{rgb.data[k]} - int{got[k]});
      sum += d;
      worst = std::max(worst, d);
    }
    EXPECT_LE(sum / n, 1.5) << "frame " << i;
    ++t;
  }
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeGeometryTest,
    ::testing::Values(
        // 640x360 -> 455x256 (downscaled), crop at (116, 16).
        GeometryCase{"Landscape", 640, 360, Geometry(), {455, 256, 116, 16}},
        GeometryCase{"Portrait", 360, 640, Geometry(), {256, 455, 16, 116}},
        GeometryCase{"Square", 300, 300, Geometry(), {256, 256, 16, 16}},
        // Smaller than 256: upscaled.
        GeometryCase{
            "SmallLandscapeUpscaled", 160, 120, Geometry(), {341, 256, 58, 16}},
        GeometryCase{
            "SmallPortraitUpscaled", 120, 160, Geometry(), {256, 341, 16, 58}},
        // Crops larger than the resize target grow it.
        GeometryCase{"CropLargerThanTarget",
                     320,
                     240,
                     MakeGeometry(128, 200, 160),
                     {266, 200, 53, 0}},
        GeometryCase{"WideCrop",
                     320,
                     240,
                     MakeGeometry(64, 100, 300),
                     {300, 225, 0, 62}}),
    [](const ::testing::TestParamInfo<GeometryCase>& info) {
      return info.param.name;
    });

// ---------------------------------------------------------------------------
// Bad input: each fails with its own message, and nothing crashes or leaks.

TEST(DecodeClipErrorTest, EmptyInput) {
  ExpectError(DecodeClip("", Uniform(16), Geometry(), Limits()),
              "the input is empty (0 bytes)");
}

TEST(DecodeClipErrorTest, OverMaxBytes) {
  Limits limits;
  limits.max_bytes = 1000;
  ExpectError(
      DecodeClip(std::string(1001, 'x'), Uniform(16), Geometry(), limits),
      "the input is 1001 bytes, over the limit of 1000");
}

TEST(DecodeClipErrorTest, RandomBytes) {
  std::mt19937 rng(7);
  std::string bytes(100000, '\0');
  for (char& b : bytes) b = static_cast<char>(rng());
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), Limits()),
              "not a video in a supported container (MP4/MOV, AVI, "
              "Matroska/WebM, MPEG-TS, MPEG-PS, FLV, Ogg, ASF, Y4M, raw "
              "H.264)");
}

TEST(DecodeClipErrorTest, RandomBytesBehindAContainerSignature) {
  std::mt19937 rng(11);
  for (const std::string& head :
       {std::string("RIFF\x10\0\0\0AVI LIST", 16),
        std::string("\0\0\0\x20"
                    "ftypisom",
                    12),
        std::string("\x1a\x45\xdf\xa3", 4), std::string("OggS")}) {
    std::string bytes = head;
    for (int i = 0; i < 50000; ++i) bytes.push_back(static_cast<char>(rng()));
    const absl::StatusOr<Clip> clip =
        DecodeClip(bytes, Uniform(16), Geometry(), Limits());
    ASSERT_FALSE(clip.ok());
    EXPECT_EQ(clip.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(clip.status().message()),
                StartsWith(absl::StrCat(kPrefix, "cannot open the ")));
  }
}

TEST(DecodeClipErrorTest, PlaylistNamingALocalFileIsRefused) {
  REQUIRE_FFMPEG();
  // FFmpeg's HLS demuxer would open the named file: never let it see this.
  const std::string path = TempPath("ts");
  {
    ENCODE_OR_FAIL(ts, EncodeWithFfmpeg(20, 160, 120, "25",
                                        "-c:v mpeg2video -f mpegts", "ts"));
    WriteFileOrDie(path, ts);
  }
  const std::string playlist =
      absl::StrCat("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.8,\n", path,
                   "\n#EXT-X-ENDLIST\n");
  ExpectErrorStartingWith(
      DecodeClip(playlist, Uniform(4), Geometry(), Limits()),
      "not a video in a supported container");
  std::remove(path.c_str());
}

TEST(DecodeClipErrorTest, OneFrameVideoIsTooShortFor16) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes,
                 EncodeWithFfmpeg(1, 320, 240, "25",
                                  "-c:v libx264 -pix_fmt yuv420p", "mp4"));
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), Limits()),
              "video has 1 frame; sampling 16 frames needs at least 16");
  // One frame is enough for one.
  absl::StatusOr<Clip> clip =
      DecodeClip(bytes, Uniform(1), Geometry(), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  EXPECT_EQ(clip->frames_count, 1);
}

TEST(DecodeClipErrorTest, Mp4CutInHalfWithItsIndexAtTheEnd) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(100, 320, 240, "25", kX264, "mp4"));
  ExpectError(DecodeClip(bytes.substr(0, bytes.size() / 2), Uniform(16),
                         Geometry(), Limits()),
              "cannot open the MP4/MOV data (corrupt or truncated?)");
}

// A file that ends before the frames its header declares (an MP4 whose
// index comes first, an AVI) is sampled from the frames that are there, as
// a Matroska file is, and says what it declared.
TEST(DecodeClipTest, Mp4CutInHalfWithItsIndexFirstKeepsTheFramesThatAreThere) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(
                            100, 320, 240, "25",
                            absl::StrCat(kX264, " -movflags +faststart"),
                            "mp4"));
  const absl::StatusOr<Clip> clip = DecodeClip(
      bytes.substr(0, bytes.size() / 2), Uniform(8), Whole(320, 240), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  EXPECT_EQ(clip->declared_frames, 100);
  EXPECT_GT(clip->source_frames, 20);
  EXPECT_LT(clip->source_frames, 80);
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(clip->frame_indices));
}

TEST(DecodeClipTest, AviCutInHalfKeepsTheFramesThatAreThere) {
  REQUIRE_FFMPEG();
  for (const char* codec : {"mpeg4", "mjpeg"}) {
    ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(
                              60, 320, 240, "25",
                              absl::StrCat("-c:v ", codec, " -q:v 3"), "avi"));
    const absl::StatusOr<Clip> clip = DecodeClip(
        bytes.substr(0, bytes.size() / 2), Uniform(8), Whole(320, 240),
        Limits());
    ASSERT_TRUE(clip.ok()) << codec << ": " << clip.status();
    EXPECT_EQ(clip->declared_frames, 60) << codec;
    EXPECT_GT(clip->source_frames, 15) << codec;
    EXPECT_LT(clip->source_frames, 45) << codec;
    EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(clip->frame_indices))
        << codec;
  }
}

TEST(DecodeClipErrorTest, MatroskaCutInHalfKeepsTheFramesThatAreThere) {
  REQUIRE_FFMPEG();
  // Matroska declares no frame count: the demuxed frames are what counts.
  ENCODE_OR_FAIL(
      bytes, EncodeWithFfmpeg(60, 320, 240, "25", "-c:v mjpeg -q:v 3", "mkv"));
  const absl::StatusOr<Clip> clip = DecodeClip(
      bytes.substr(0, bytes.size() / 2), Uniform(8), Whole(320, 240), Limits());
  ASSERT_TRUE(clip.ok()) << clip.status();
  EXPECT_GT(clip->source_frames, 20);
  EXPECT_LT(clip->source_frames, 40);
  EXPECT_THAT(ShownIndices(*clip), ElementsAreArray(clip->frame_indices));
}

std::string Y4mHeader(int width, int height) {
  return absl::StrCat("YUV4MPEG2 W", width, " H", height,
                      " F25:1 Ip A1:1 C420jpeg\nFRAME\n", std::string(64, 'x'));
}

TEST(DecodeClipErrorTest, HugeDeclaredResolutionIsRefusedBeforeDecoding) {
  ExpectError(
      DecodeClip(Y4mHeader(8192, 8192), Uniform(16), Geometry(), Limits()),
      "resolution 8192x8192 is over the limit of 4096x4096");
  ExpectError(
      DecodeClip(Y4mHeader(16000, 200), Uniform(16), Geometry(), Limits()),
      "resolution 16000x200 is over the limit of 4096x4096");
  // FFmpeg itself refuses frames of more than INT_MAX / 8 bytes.
  ExpectError(
      DecodeClip(Y4mHeader(30000, 30000), Uniform(16), Geometry(), Limits()),
      "cannot open the Y4M data (corrupt or truncated?)");
}

TEST(DecodeClipErrorTest, ResolutionLimitAppliesToRealVideos) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(20, 640, 360, "25", kX264, "mp4"));
  Limits limits;
  limits.max_width = 639;
  ExpectError(DecodeClip(bytes, Uniform(4), Geometry(), limits),
              "resolution 640x360 is over the limit of 639x4096");
  limits = Limits();
  limits.max_height = 300;
  ExpectError(DecodeClip(bytes, Uniform(4), Geometry(), limits),
              "resolution 640x360 is over the limit of 4096x300");
}

TEST(DecodeClipErrorTest, ExtremeAspectRatioIsRefusedBeforeResizing) {
  // 4096x15 at a short side of 256 would be 69905x256.
  ExpectError(DecodeClip(Y4mHeader(4096, 15), Uniform(1), Geometry(), Limits()),
              "resizing 4096x15 to a short side of 256 gives 69905x256, over "
              "the limit of 16777216 pixels");
  // 4096x16 gives 65536x256: exactly the limit, so it goes on (and this
  // header-only file has no frames).
  ExpectError(DecodeClip(Y4mHeader(4096, 16), Uniform(1), Geometry(), Limits()),
              "the Y4M data holds no video frames");
}

TEST(DecodeClipErrorTest, OverMaxSeconds) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(60, 160, 120, "25", kX264, "mp4"));
  Limits limits;
  limits.max_seconds = 2;
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), limits),
              "the video lasts 2.4 s (60 frames at 25 fps), over the limit of "
              "2.0 s");
  limits.max_seconds = 2.4;
  EXPECT_TRUE(DecodeClip(bytes, Uniform(16), Geometry(), limits).ok());
}

TEST(DecodeClipErrorTest, OverMaxFramesDeclared) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes,
                 EncodeWithFfmpeg(60, 160, 120, "25", "-c:v mpeg4", "avi"));
  Limits limits;
  limits.max_frames = 59;
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), limits),
              "the video declares 60 frames, over the limit of 59");
  limits.max_frames = 60;
  EXPECT_TRUE(DecodeClip(bytes, Uniform(16), Geometry(), limits).ok());
}

TEST(DecodeClipErrorTest, OverMaxFramesCounted) {
  REQUIRE_FFMPEG();
  // A raw H.264 stream declares no frame count: they are counted, up to the
  // limit.
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(60, 160, 120, "25",
                                         absl::StrCat(kX264, " -f h264"),
                                         "h264"));
  Limits limits;
  limits.max_frames = 59;
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), limits),
              "the video has more than 59 frames, the limit");
  limits.max_frames = 60;
  EXPECT_TRUE(DecodeClip(bytes, Uniform(16), Geometry(), limits).ok());
}

TEST(DecodeClipErrorTest, OverMaxOutputBytes) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes,
                 EncodeWithFfmpeg(20, 160, 120, "25", "-c:v mpeg4", "avi"));
  Limits limits;
  limits.max_output_bytes = 16 * 224 * 224 * 3 - 1;
  ExpectError(DecodeClip(bytes, Uniform(16), Geometry(), limits),
              "the clip would be 2408448 bytes (16 frames of 224x224x3), over "
              "the limit of 2408447");
}

// Limits::max_decode_seconds bounds the time one decode may take, however
// the codec and the machine behave: a limit already passed when the first
// packet is read stops it there.
TEST(DecodeClipErrorTest, DecodingPastItsTimeLimitStops) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(20, 160, 120, "25", kX264, "mp4"));
  Limits limits;
  limits.max_decode_seconds = 1e-9;
  ExpectError(DecodeClip(bytes, Uniform(4), Geometry(), limits),
              "decoding took longer than the limit of 1e-09 s");
  limits.max_decode_seconds = 0;
  ExpectError(DecodeClip(bytes, Uniform(4), Geometry(), limits),
              "invalid decode time limit 0 s; must be above 0");
  limits.max_decode_seconds = 600;
  EXPECT_TRUE(DecodeClip(bytes, Uniform(4), Geometry(), limits).ok());
}

// DecodeOptions::interrupt is asked before every packet, demuxed or decoded,
// and its first non-OK status is returned as is: a decode stops within one
// packet of its caller's cancellation.
TEST(DecodeClipTest, InterruptIsAskedBeforeEachPacketAndStopsDecoding) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(20, 160, 120, "25", kX264, "mp4"));
  DecodeOptions options;
  int asked = 0;
  options.interrupt = [&asked] {
    ++asked;
    return absl::OkStatus();
  };
  absl::StatusOr<Clip> clip = DecodeClip(bytes, Uniform(4), Geometry(), Limits(), options);
  ASSERT_TRUE(clip.ok()) << clip.status();
  // Before each of the 20 packets demuxed and the end of data, then before
  // each packet sent to the decoder and each drain (at most one a sample).
  EXPECT_GE(asked, 21 + clip->packets_decoded);
  EXPECT_LE(asked, 21 + clip->packets_decoded + 4);
  for (int stop_at : {1, 10, 22, asked}) {
    int calls = 0;
    options.interrupt = [&calls, stop_at]() -> absl::Status {
      if (++calls < stop_at) return absl::OkStatus();
      return absl::CancelledError("the caller gave up");
    };
    absl::StatusOr<Clip> stopped = DecodeClip(bytes, Uniform(4), Geometry(), Limits(), options);
    EXPECT_EQ(stopped.status(), absl::CancelledError("the caller gave up")) << stop_at;
    EXPECT_EQ(calls, stop_at) << "nothing asked after the stop";
  }
}

TEST(DecodeClipErrorTest, BadOptionsHaveThePrefixToo) {
  ExpectError(DecodeClip("x", Uniform(0), Geometry(), Limits()),
              "invalid sampling: num_frames is 0; must be in [1, 1048576]");
  ExpectError(DecodeClip("x", Stride(4, 0, -2), Geometry(), Limits()),
              "invalid sampling: stride is -2; must be >= 1");
  ExpectError(DecodeClip("x", Uniform(4), MakeGeometry(256, 0, 224), Limits()),
              "invalid geometry: crop_height is 0; must be in [1, 65536]");
  ExpectError(
      DecodeClip("x", Uniform(4), MakeGeometry(1 << 20, 224, 224), Limits()),
      "invalid geometry: resize_short_side is 1048576; must be in [1, 65536]");
}

// Bit flips, truncations and garbage in valid files of several containers:
// each decodes or fails with INVALID_ARGUMENT, never anything else.
TEST(DecodeClipErrorTest, MangledFilesFailCleanly) {
  REQUIRE_FFMPEG();
  struct Source {
    const char* args;
    const char* extension;
  };
  std::mt19937 rng(2024);
  for (const Source& s :
       {Source{kX264, "mp4"},
        Source{"-c:v mpeg4", "avi"},
        Source{"-c:v libvpx-vp9 -deadline realtime -cpu-used 8", "webm"},
        Source{"-c:v mpeg2video -f mpegts", "ts"}}) {
    ENCODE_OR_FAIL(bytes,
                   EncodeWithFfmpeg(30, 160, 120, "25", s.args, s.extension));
    for (int trial = 0; trial < 24; ++trial) {
      std::string mangled = bytes;
      switch (trial % 3) {
        case 0:  // flip bytes anywhere after the signature
          for (int k = 0; k < 1 + trial; ++k) {
            mangled[16 + rng() % (mangled.size() - 16)] ^=
                static_cast<char>(1 + rng() % 255);
          }
          break;
        case 1:  // cut anywhere
          mangled.resize(16 + rng() % (mangled.size() - 16));
          break;
        case 2:  // overwrite a run with garbage
          for (size_t k = 0, at = 16 + rng() % (mangled.size() - 16);
               k < 4096 && at + k < mangled.size(); ++k) {
            mangled[at + k] = static_cast<char>(rng());
          }
          break;
      }
      const absl::StatusOr<Clip> clip =
          DecodeClip(mangled, Uniform(8), Geometry(), Limits());
      if (!clip.ok()) {
        EXPECT_EQ(clip.status().code(), absl::StatusCode::kInvalidArgument)
            << clip.status();
        EXPECT_THAT(std::string(clip.status().message()), StartsWith(kPrefix));
      } else {
        EXPECT_EQ(clip->frames.size(), size_t{8} * 224 * 224 * 3);
      }
    }
  }
}

TEST(DecodeClipErrorTest, NoDescriptorLeaks) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(mp4, EncodeWithFfmpeg(40, 160, 120, "25", kX264, "mp4"));
  ENCODE_OR_FAIL(avi,
                 EncodeWithFfmpeg(40, 160, 120, "25", "-c:v mpeg4", "avi"));
  ENCODE_OR_FAIL(h264, EncodeWithFfmpeg(40, 160, 120, "25",
                                        "-c:v libx264 -f h264", "h264"));
  const std::vector<std::string> inputs = {
      mp4,                            // decodes
      h264,                           // decodes, after counting
      mp4.substr(0, mp4.size() / 2),  // cannot open
      avi.substr(0, avi.size() / 2),  // ends early
      Y4mHeader(8192, 8192),          // resolution
      std::string("RIFF\x10\0\0\0AVI LIST", 16) + std::string(1000, 'z'),
      std::string(5000, 'z'),  // not a container
  };
  // Warm up OpenCV and FFmpeg (their first use opens what they keep open).
  for (const std::string& in : inputs) {
    (void)DecodeClip(in, Uniform(16), Geometry(), Limits());
  }
  const int before = OpenFds();
  for (int round = 0; round < 10; ++round) {
    for (const std::string& in : inputs) {
      (void)DecodeClip(in, Uniform(16), Geometry(), Limits());
    }
  }
  Limits tiny;
  tiny.max_seconds = 0.1;
  for (int round = 0; round < 10; ++round) {
    (void)DecodeClip(mp4, Uniform(16), Geometry(), tiny);
  }
  EXPECT_EQ(OpenFds(), before);
}

TEST(DecodeClipTest, ConcurrentCallsAgree) {
  REQUIRE_FFMPEG();
  ENCODE_OR_FAIL(bytes, EncodeWithFfmpeg(60, 320, 240, "25", kX264, "mp4"));
  const absl::StatusOr<Clip> reference =
      DecodeClip(bytes, Uniform(16), Geometry(), Limits());
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        const absl::StatusOr<Clip> clip =
            DecodeClip(bytes, Uniform(16), Geometry(), Limits());
        same[t] += clip.ok() && clip->frames == reference->frames;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_THAT(same, ::testing::Each(3));
}

}  // namespace
}  // namespace clipserve::video
