// DecodeClip's planned decoding (restarts at keyframes, non-reference frames
// skipped) returns, bit for bit, the frames a full sequential decode returns
// at the sampled indices, on the GOP structures that make that hard.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/video/test_videos.h"
#include "video/decode.h"

namespace clipserve::video {
namespace {

using ::clipserve::video::testing::EncodeWithFfmpeg;
using ::clipserve::video::testing::FfmpegAvailable;
using ::clipserve::video::testing::ReadIndex;
using ::clipserve::video::testing::Stride;
using ::clipserve::video::testing::Uniform;

constexpr int kFrames = 300, kWidth = 160, kHeight = 120;

// The whole frame, unscaled: what is compared is what the decoder returned.
Geometry Whole() {
  Geometry g;
  g.resize_short_side = kHeight;
  g.crop_height = kHeight;
  g.crop_width = kWidth;
  return g;
}

struct GopCase {
  std::string name;
  std::string args;
  std::string extension;
  std::string filter;  // VFR timestamps
  bool expect_restarts;
};

void PrintTo(const GopCase& c, std::ostream* os) { *os << c.name; }

// Each case's video, and every one of its frames decoded in order (the
// reference: nothing to skip, no restart).
class DecodeExactTest : public ::testing::TestWithParam<GopCase> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FfmpegAvailable()) << "the ffmpeg CLI makes the test videos";
    const GopCase& c = GetParam();
    bytes_ = EncodeWithFfmpeg(kFrames, kWidth, kHeight, "25", c.args,
                              c.extension, c.filter);
    ASSERT_TRUE(bytes_.ok()) << bytes_.status();
    all_ = DecodeClip(*bytes_, Uniform(kFrames), Whole(), Limits());
    ASSERT_TRUE(all_.ok()) << all_.status();
  }
  absl::StatusOr<std::string> bytes_;
  absl::StatusOr<Clip> all_;
};

TEST_P(DecodeExactTest, SampledFramesEqualTheFullDecodeBitForBit) {
  const GopCase& c = GetParam();
  const absl::StatusOr<std::string>& bytes = bytes_;
  const Geometry whole = Whole();
  const absl::StatusOr<Clip>& all = all_;
  ASSERT_EQ(all->source_frames, kFrames);
  EXPECT_EQ(all->restarts, 0);
  EXPECT_EQ(all->packets_decoded, kFrames);
  const size_t frame_bytes = size_t{kWidth} * kHeight * 3;
  // The reference itself: frame i shows i (MakeFrame draws its index in 8
  // bits).
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_EQ(ReadIndex(reinterpret_cast<const uint8_t*>(all->frames.data()) +
                            i * frame_bytes,
                        kWidth, kHeight),
              i % 256)
        << c.name << ": frame " << i;
  }

  for (const Sampling& s : {Uniform(16), Uniform(5), Uniform(1),
                            Stride(8, 3.0, 7), Stride(4, 0, 60)}) {
    absl::StatusOr<Clip> clip = DecodeClip(*bytes, s, whole, Limits());
    ASSERT_TRUE(clip.ok()) << clip.status();
    for (int64_t t = 0; t < clip->frames_count; ++t) {
      const int64_t i = clip->frame_indices[t];
      EXPECT_EQ(std::memcmp(clip->frames.data() + t * frame_bytes,
                            all->frames.data() + i * frame_bytes, frame_bytes),
                0)
          << c.name << ": frame " << i << " of " << s.num_frames << " sampled";
    }
    if (c.expect_restarts && s.num_frames <= 5) {
      // Sparse samples: the decoder jumps, and reads a fraction of the file.
      EXPECT_GT(clip->restarts, 0) << c.name;
      EXPECT_LT(clip->packets_decoded, kFrames / 2) << c.name;
    }
  }
}

// Sampling::approximate: each sample stays inside its share of the video
// (halfway to its neighbours), moves only onto a keyframe, the frames are
// still bit for bit the full decode's at the indices returned, and it never
// decodes more than exact sampling does.
TEST_P(DecodeExactTest, ApproximateSamplesAreNearbyKeyframesAndExactAtThem) {
  const GopCase& c = GetParam();
  const absl::StatusOr<std::string>& bytes = bytes_;
  const Geometry whole = Whole();
  const absl::StatusOr<Clip>& all = all_;
  const size_t frame_bytes = size_t{kWidth} * kHeight * 3;
  for (int n : {16, 5}) {
    absl::StatusOr<Clip> exact = DecodeClip(*bytes, Uniform(n), whole, Limits());
    Sampling s = Uniform(n);
    s.approximate = true;
    absl::StatusOr<Clip> near = DecodeClip(*bytes, s, whole, Limits());
    ASSERT_TRUE(exact.ok() && near.ok()) << near.status();
    ASSERT_EQ(near->frame_indices.size(), size_t(n));
    EXPECT_LE(near->packets_decoded, exact->packets_decoded) << c.name;
    int moved = 0;
    for (int k = 0; k < n; ++k) {
      const int64_t at = exact->frame_indices[k], got = near->frame_indices[k];
      if (k > 0) {
        EXPECT_LT(near->frame_indices[k - 1], got) << c.name;
      }
      const int64_t lo = k > 0 ? at - (at - exact->frame_indices[k - 1]) / 2 : 0;
      const int64_t hi = k + 1 < n ? at + (exact->frame_indices[k + 1] - at + 1) / 2 : kFrames;
      EXPECT_GE(got, lo) << c.name << " sample " << k;
      EXPECT_LT(got, hi) << c.name << " sample " << k;
      EXPECT_EQ(std::memcmp(near->frames.data() + k * frame_bytes,
                            all->frames.data() + got * frame_bytes, frame_bytes),
                0)
          << c.name << ": frame " << got;
      moved += got != at;
    }
    if (c.name == "AllIntra") {
      EXPECT_EQ(moved, 0) << "every frame is a keyframe: nothing to gain";
    }
    if (c.name == "Keyint12" && n == 5) {
      // Samples 60 frames apart, keyframes 12: each sample is its share's
      // nearest keyframe, decoded alone.
      EXPECT_EQ(near->packets_decoded, n) << c.name;
      for (int64_t i : near->frame_indices) {
        EXPECT_EQ(i % 12, 0) << i;
      }
    }
  }
}

constexpr const char* kX264 = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";

INSTANTIATE_TEST_SUITE_P(
    Gops, DecodeExactTest,
    ::testing::Values(
        GopCase{"AllIntra", absl::StrCat(kX264, " -g 1"), "mp4", "", true},
        GopCase{"Keyint12", absl::StrCat(kX264, " -g 12 -bf 0"), "mp4", "", true},
        GopCase{"Keyint250BFrames",
                "-c:v libx264 -preset medium -pix_fmt yuv420p -g 250 -bf 3",
                "mp4", "", false},
        GopCase{"OpenGopBFrames",
                "-c:v libx264 -preset medium -pix_fmt yuv420p "
                "-x264-params open-gop=1:keyint=24:min-keyint=24:bframes=3",
                "mkv", "", true},
        GopCase{"VariableFrameRate", absl::StrCat(kX264, " -g 30"), "mkv",
                "setpts='(N+floor(N/7)*0.6)/25/TB'", true},
        GopCase{"Mpeg2TsKeyint15BFrames",
                "-c:v mpeg2video -q:v 4 -g 15 -bf 2 -f mpegts", "ts", "", true}),
    [](const ::testing::TestParamInfo<GopCase>& info) { return info.param.name; });

}  // namespace
}  // namespace clipserve::video

namespace clipserve::video {
namespace {

// Asking for NVDEC where there is none decodes on the CPU, exactly as
// asked for the CPU, and says why. (scripts/gpu-check.sh runs it where
// there is a GPU.)
TEST(DecodeDeviceTest, CudaWithoutAGpuFallsBackToTheCpuAndSaysWhy) {
  ASSERT_TRUE(FfmpegAvailable());
  absl::StatusOr<std::string> bytes = EncodeWithFfmpeg(
      60, kWidth, kHeight, "25", "-c:v libx264 -preset ultrafast -pix_fmt yuv420p",
      "mp4");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<Clip> cpu = DecodeClip(*bytes, Uniform(8), Whole(), Limits());
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_FALSE(cpu->gpu_decoded);
  EXPECT_EQ(cpu->decode_fallback, "");
  DecodeOptions cuda;
  cuda.device = "cuda";
  absl::StatusOr<Clip> clip = DecodeClip(*bytes, Uniform(8), Whole(), Limits(), cuda);
  ASSERT_TRUE(clip.ok()) << clip.status();
  if (clip->gpu_decoded) {
    // On a GPU host: NVDEC decodes the same pictures (H.264 decoding is
    // exact); its NV12 frames go through swscale from another layout, so
    // the RGB may differ by rounding.
    EXPECT_EQ(clip->decode_fallback, "");
    ASSERT_EQ(clip->frames.size(), cpu->frames.size());
    double sum = 0;
    for (size_t i = 0; i < clip->frames.size(); ++i) {
      sum += std::abs(int{static_cast<uint8_t>(clip->frames[i])} -
                      int{static_cast<uint8_t>(cpu->frames[i])});
    }
    EXPECT_LT(sum / clip->frames.size(), 1.0);
  } else {
    EXPECT_THAT(clip->decode_fallback,
                ::testing::HasSubstr("cuda hwaccel cannot open a device"));
    EXPECT_EQ(clip->frames, cpu->frames);
  }

  DecodeOptions threads;
  threads.threads = 65;
  absl::StatusOr<Clip> too_many = DecodeClip(*bytes, Uniform(8), Whole(), Limits(), threads);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_many.status().message()),
              ::testing::HasSubstr("invalid decode threads 65; must be in [0, 64]"));

  DecodeOptions bad;
  bad.device = "vulkan";
  absl::StatusOr<Clip> refused = DecodeClip(*bytes, Uniform(8), Whole(), Limits(), bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("invalid decode device \"vulkan\"; must be cpu or cuda"));
}

}  // namespace
}  // namespace clipserve::video
