// The pure parts of the pipeline: which frames, and where they are cropped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "tests/video/test_videos.h"
#include "video/decode.h"

namespace clipserve::video {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::clipserve::video::testing::MakeGeometry;
using ::clipserve::video::testing::Stride;
using ::clipserve::video::testing::Uniform;

TEST(SampleFrameIndicesTest, UniformTakesTheCentreOfEachSegment) {
  // Segments of 25 frames; centres at 12.5, 37.5, ... floored.
  EXPECT_THAT(*SampleFrameIndices(100, 25, Uniform(4)),
              ElementsAre(12, 37, 62, 87));
  // floor((i + 0.5) * 60 / 16) for i = 0..15.
  EXPECT_THAT(
      *SampleFrameIndices(60, 25, Uniform(16)),
      ElementsAre(1, 5, 9, 13, 16, 20, 24, 28, 31, 35, 39, 43, 46, 50, 54, 58));
  EXPECT_THAT(*SampleFrameIndices(7, 0, Uniform(1)), ElementsAre(3));
}

TEST(SampleFrameIndicesTest, UniformWithAsManyFramesTakesEach) {
  std::vector<int64_t> all(16);
  for (int i = 0; i < 16; ++i) all[i] = i;
  EXPECT_THAT(*SampleFrameIndices(16, 30, Uniform(16)), ElementsAreArray(all));
}

TEST(SampleFrameIndicesTest, UniformIsStrictlyIncreasingAndInRange) {
  for (int64_t total : {16, 17, 31, 100, 301, 9999}) {
    for (int64_t num : {1, 2, 15, 16}) {
      const std::vector<int64_t> idx =
          *SampleFrameIndices(total, 25, Uniform(num));
      ASSERT_EQ(idx.size(), static_cast<size_t>(num));
      EXPECT_GE(idx.front(), 0);
      EXPECT_LT(idx.back(), total);
      for (size_t i = 1; i < idx.size(); ++i) EXPECT_LT(idx[i - 1], idx[i]);
    }
  }
}

TEST(SampleFrameIndicesTest, UniformNeedsAsManyFramesAsItTakes) {
  absl::StatusOr<std::vector<int64_t>> r =
      SampleFrameIndices(1, 25, Uniform(16));
  EXPECT_EQ(r.status(),
            absl::InvalidArgumentError(
                "video has 1 frame; sampling 16 frames needs at least 16"));
  EXPECT_EQ(SampleFrameIndices(15, 25, Uniform(16)).status().message(),
            "video has 15 frames; sampling 16 frames needs at least 16");
  EXPECT_EQ(SampleFrameIndices(0, 25, Uniform(1)).status().message(),
            "video has no frames; sampling 1 frame needs at least 1");
}

TEST(SampleFrameIndicesTest, StrideStartsAtTheRoundedFrameOfStartSeconds) {
  EXPECT_THAT(*SampleFrameIndices(100, 25, Stride(4, 2.0, 2)),
              ElementsAre(50, 52, 54, 56));
  // 0.5 s at 25 fps is frame 12.5: rounded half away from zero.
  EXPECT_THAT(*SampleFrameIndices(100, 25, Stride(3, 0.5, 1)),
              ElementsAre(13, 14, 15));
  // 1 s at 29.97 fps is frame 29.97 -> 30.
  EXPECT_THAT(*SampleFrameIndices(100, 29.97, Stride(2, 1.0, 5)),
              ElementsAre(30, 35));
  // From the start, the frame rate does not matter (unknown is fine).
  EXPECT_THAT(*SampleFrameIndices(10, 0, Stride(4, 0, 3)),
              ElementsAre(0, 3, 6, 9));
}

TEST(SampleFrameIndicesTest, StrideNeedsFramesUpToItsLast) {
  EXPECT_EQ(SampleFrameIndices(60, 25, Stride(16, 2.0, 2)).status(),
            absl::InvalidArgumentError(
                "video has 60 frames; sampling 16 frames from 2.0 s (frame 50) "
                "with stride 2 needs at least 81"));
  EXPECT_EQ(SampleFrameIndices(9, 25, Stride(4, 0, 3)).status().message(),
            "video has 9 frames; sampling 4 frames from 0.0 s (frame 0) with "
            "stride 3 needs at least 10");
  EXPECT_EQ(SampleFrameIndices(100, 25, Stride(1, 4.0, 1)).status().message(),
            "video has 100 frames; sampling 1 frame from 4.0 s (frame 100) "
            "with stride 1 needs at least 101");
  // Exactly enough.
  EXPECT_TRUE(SampleFrameIndices(81, 25, Stride(16, 2.0, 2)).ok());
}

TEST(SampleFrameIndicesTest, StrideWithHugeValuesFailsCleanly) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_THAT(SampleFrameIndices(100, 25, Stride(2, 0, max)).status().message(),
              HasSubstr("needs at least 9223372036854775808"));
  EXPECT_THAT(
      SampleFrameIndices(100, 25, Stride(1, 1e300, 1)).status().message(),
      HasSubstr("video has 100 frames; sampling 1 frame from 1e+300 s"));
}

TEST(SampleFrameIndicesTest, StrideFromALaterStartNeedsTheFrameRate) {
  EXPECT_EQ(SampleFrameIndices(100, 0, Stride(4, 1.5, 1)).status(),
            absl::InvalidArgumentError(
                "the frame rate is unknown, so start_seconds 1.5 cannot be "
                "turned into a frame"));
}

TEST(SampleFrameIndicesTest, RefusesBadOptions) {
  EXPECT_EQ(SampleFrameIndices(100, 25, Uniform(0)).status(),
            absl::InvalidArgumentError(
                "invalid sampling: num_frames is 0; must be in [1, 1048576]"));
  EXPECT_EQ(
      SampleFrameIndices(100, 25, Uniform(int64_t{1} << 40)).status().message(),
      "invalid sampling: num_frames is 1099511627776; must be in [1, "
      "1048576]");
  EXPECT_EQ(SampleFrameIndices(100, 25, Stride(4, 0, 0)).status().message(),
            "invalid sampling: stride is 0; must be >= 1");
  EXPECT_EQ(SampleFrameIndices(100, 25, Stride(4, -1, 1)).status().message(),
            "invalid sampling: start_seconds is -1; must be finite and >= 0");
  EXPECT_EQ(SampleFrameIndices(
                100, 25, Stride(4, std::numeric_limits<double>::quiet_NaN(), 1))
                .status()
                .message(),
            "invalid sampling: start_seconds is nan; must be finite and >= 0");
  // Uniform ignores stride and start_seconds.
  Sampling s = Uniform(2);
  s.stride = 0;
  s.start_seconds = -3;
  EXPECT_TRUE(SampleFrameIndices(10, 25, s).ok());
}

void ExpectResizeCrop(int64_t w, int64_t h, const Geometry& g, int64_t rw,
                      int64_t rh, int64_t x, int64_t y) {
  const ResizeCrop rc = ComputeResizeCrop(w, h, g);
  EXPECT_EQ(rc.resized_width, rw) << w << "x" << h;
  EXPECT_EQ(rc.resized_height, rh) << w << "x" << h;
  EXPECT_EQ(rc.crop_x, x) << w << "x" << h;
  EXPECT_EQ(rc.crop_y, y) << w << "x" << h;
}

TEST(ComputeResizeCropTest, LandscapeShortSideToTarget) {
  const Geometry g;  // 256, 224x224
  // 256 * 1920 / 1080 = 455.1 -> 455; (455 - 224) / 2 = 115.5 -> 116.
  ExpectResizeCrop(1920, 1080, g, 455, 256, 116, 16);
  // 256 * 1280 / 720 = 455.1.
  ExpectResizeCrop(1280, 720, g, 455, 256, 116, 16);
  // 256 * 640 / 480 = 341.3 -> 341; 117 / 2 = 58.5 -> 58 (even).
  ExpectResizeCrop(640, 480, g, 341, 256, 58, 16);
  // Truncated, not rounded: 256 * 176 / 144 = 312.9 -> 312.
  ExpectResizeCrop(176, 144, g, 312, 256, 44, 16);
}

TEST(ComputeResizeCropTest, PortraitShortSideToTarget) {
  const Geometry g;
  ExpectResizeCrop(1080, 1920, g, 256, 455, 16, 116);
  ExpectResizeCrop(240, 320, g, 256, 341, 16, 58);
}

TEST(ComputeResizeCropTest, Square) {
  const Geometry g;
  ExpectResizeCrop(300, 300, g, 256, 256, 16, 16);
  ExpectResizeCrop(100, 100, g, 256, 256, 16, 16);  // upscaled
  ExpectResizeCrop(256, 256, g, 256, 256, 16, 16);  // untouched
}

TEST(ComputeResizeCropTest, SmallSourcesAreUpscaled) {
  const Geometry g;
  ExpectResizeCrop(160, 120, g, 341, 256, 58, 16);
  ExpectResizeCrop(32, 24, g, 341, 256, 58, 16);
  ExpectResizeCrop(1, 1, g, 256, 256, 16, 16);
}

TEST(ComputeResizeCropTest, CropLargerThanTheResizeTargetGrowsTheShortSide) {
  // 300x300 crop, short side 256: the short side becomes 300.
  ExpectResizeCrop(1920, 1080, MakeGeometry(256, 300, 300), 533, 300, 116, 0);
  ExpectResizeCrop(1080, 1920, MakeGeometry(256, 300, 300), 300, 533, 0, 116);
  // 200 high, 160 wide on 320x240, short side 128: height 200 rules.
  ExpectResizeCrop(320, 240, MakeGeometry(128, 200, 160), 266, 200, 53, 0);
  // A wide crop on a 4:3 frame: the width rules; short side
  // ceil(300 * 240 / 320) = 225.
  ExpectResizeCrop(320, 240, MakeGeometry(64, 100, 300), 300, 225, 0, 62);
  // A tall crop on a portrait frame: the height rules;
  // ceil(400 * 240 / 320) = 300.
  ExpectResizeCrop(240, 320, MakeGeometry(64, 400, 100), 300, 400, 100, 0);
}

TEST(ComputeResizeCropTest, AlwaysCoversTheCrop) {
  for (int64_t w : {1, 7, 100, 333, 1920, 4096}) {
    for (int64_t h : {1, 9, 100, 240, 1080, 4096}) {
      for (const Geometry& g :
           {Geometry(), MakeGeometry(1, 50, 300), MakeGeometry(500, 224, 224),
            MakeGeometry(64, 333, 17)}) {
        const ResizeCrop rc = ComputeResizeCrop(w, h, g);
        EXPECT_GE(rc.resized_width, g.crop_width);
        EXPECT_GE(rc.resized_height, g.crop_height);
        EXPECT_GE(std::min(rc.resized_width, rc.resized_height),
                  g.resize_short_side);
        EXPECT_GE(rc.crop_x, 0);
        EXPECT_GE(rc.crop_y, 0);
        EXPECT_LE(rc.crop_x + g.crop_width, rc.resized_width);
        EXPECT_LE(rc.crop_y + g.crop_height, rc.resized_height);
      }
    }
  }
}

}  // namespace
}  // namespace clipserve::video
