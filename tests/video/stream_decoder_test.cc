// StreamDecoder: an H.264 Annex B stream fed in pieces of any size comes out
// frame by frame, in order; a corrupt stretch costs only the frames up to
// the next keyframe, counted.
#include "video/stream_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/video/test_videos.h"

namespace clipserve::video {
namespace {

using ::clipserve::video::testing::EncodeWithFfmpeg;
using ::clipserve::video::testing::FfmpegAvailable;
using ::clipserve::video::testing::ReadIndex;

constexpr int kWidth = 160, kHeight = 120, kFrames = 90;

StreamDecoder::Options WholeFrames() {
  StreamDecoder::Options o;
  o.codec = "h264";
  o.geometry.resize_short_side = kHeight;
  o.geometry.crop_height = kHeight;
  o.geometry.crop_width = kWidth;
  return o;
}

std::string Annexb(const std::string& gop_args) {
  absl::StatusOr<std::string> bytes = EncodeWithFfmpeg(
      kFrames, kWidth, kHeight, "25",
      "-c:v libx264 -preset ultrafast -pix_fmt yuv420p " + gop_args + " -f h264",
      "h264");
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

std::vector<int> Shown(const std::vector<StreamDecoder::Frame>& frames) {
  std::vector<int> out;
  for (const auto& f : frames) {
    out.push_back(ReadIndex(reinterpret_cast<const uint8_t*>(f.rgb.data()),
                            kWidth, kHeight));
  }
  return out;
}

TEST(StreamDecoderTest, PiecesOfAnySizeGiveEveryFrameInOrder) {
  ASSERT_TRUE(FfmpegAvailable());
  const std::string stream = Annexb("-g 30");
  ASSERT_FALSE(stream.empty());
  std::vector<int> want(kFrames);
  for (int i = 0; i < kFrames; ++i) want[i] = i;
  std::mt19937 rng(5);
  for (size_t max_piece : {size_t{1}, size_t{7}, size_t{1000}, stream.size()}) {
    auto d = StreamDecoder::Create(WholeFrames());
    ASSERT_TRUE(d.ok()) << d.status();
    std::vector<StreamDecoder::Frame> frames;
    for (size_t at = 0; at < stream.size();) {
      const size_t n = std::min(stream.size() - at, 1 + rng() % max_piece);
      ASSERT_TRUE((*d)->Push(absl::string_view(stream).substr(at, n), &frames).ok());
      at += n;
    }
    ASSERT_TRUE((*d)->Finish(&frames).ok());
    EXPECT_EQ(Shown(frames), want) << "pieces of up to " << max_piece;
    EXPECT_EQ((*d)->corrupt_packets(), 0);
    EXPECT_EQ((*d)->dropped_frames(), 0);
    ASSERT_FALSE(frames.empty());
    EXPECT_TRUE(frames.front().keyframe);
    EXPECT_EQ(frames.front().rgb.size(), size_t{kWidth} * kHeight * 3);
    for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i].index, int64_t(i));
  }
}

TEST(StreamDecoderTest, ACorruptStretchCostsOnlyTheFramesBeforeTheNextKeyframe) {
  ASSERT_TRUE(FfmpegAvailable());
  std::string stream = Annexb("-g 30 -bf 0");
  ASSERT_FALSE(stream.empty());
  // Garble bytes a third of the way in (inside the first GOP's P-frames).
  std::mt19937 rng(9);
  const size_t from = stream.size() / 6;
  for (size_t i = from; i < from + 400; ++i) stream[i] = static_cast<char>(rng());
  auto d = StreamDecoder::Create(WholeFrames());
  ASSERT_TRUE(d.ok());
  std::vector<StreamDecoder::Frame> frames;
  for (size_t at = 0; at < stream.size(); at += 512) {
    ASSERT_TRUE((*d)->Push(absl::string_view(stream).substr(at, 512), &frames).ok());
  }
  ASSERT_TRUE((*d)->Finish(&frames).ok());
  EXPECT_GT((*d)->corrupt_packets() + (*d)->dropped_frames(), 0);
  const std::vector<int> shown = Shown(frames);
  // Everything from the second keyframe (frame 30) on is intact and in order.
  std::vector<int> tail;
  for (int v : shown) {
    if (v >= 30) tail.push_back(v);
  }
  std::vector<int> want;
  for (int i = 30; i < kFrames; ++i) want.push_back(i);
  EXPECT_EQ(tail, want);
  // No frame shown is garbage: each reads as a valid index.
  for (int v : shown) EXPECT_GE(v, 0);
}

TEST(StreamDecoderTest, UnknownCodecIsRefused) {
  StreamDecoder::Options o = WholeFrames();
  o.codec = "vp9";
  auto d = StreamDecoder::Create(o);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()),
              ::testing::HasSubstr("unsupported stream codec \"vp9\" (known: h264, hevc)"));
}

}  // namespace
}  // namespace clipserve::video
