// StreamDecoder: an H.264 Annex B, MPEG-TS or fragmented MP4 stream fed in
// pieces of any size comes out frame by frame, in order, as the bytes come;
// a corrupt stretch costs only the frames up to the next keyframe, counted.
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
  o.format = "h264";
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

// After damage inside the first GOP (keyframes every 30 frames): it was
// counted, everything from the second keyframe on is intact and in order,
// and no frame shown is garbage (each reads as a valid index).
void ExpectDamageCostsOnlyTheFirstGop(const StreamDecoder& d,
                                      const std::vector<StreamDecoder::Frame>& frames) {
  EXPECT_GT(d.corrupt_packets() + d.dropped_frames(), 0);
  const std::vector<int> shown = Shown(frames);
  std::vector<int> tail;
  for (int v : shown) {
    if (v >= 30) tail.push_back(v);
  }
  std::vector<int> want;
  for (int i = 30; i < kFrames; ++i) want.push_back(i);
  EXPECT_EQ(tail, want);
  for (int v : shown) EXPECT_GE(v, 0);
}

// `stream` (Annex B, `format`), pushed in pieces of random sizes up to 1
// byte, 7, 1000 and all of it, gives every frame, once, in order, intact.
void ExpectPiecesOfAnySizeGiveEveryFrameInOrder(const char* format,
                                                const std::string& stream) {
  std::vector<int> want(kFrames);
  for (int i = 0; i < kFrames; ++i) want[i] = i;
  std::mt19937 rng(5);
  for (size_t max_piece : {size_t{1}, size_t{7}, size_t{1000}, stream.size()}) {
    StreamDecoder::Options o = WholeFrames();
    o.format = format;
    auto d = StreamDecoder::Create(o);
    ASSERT_TRUE(d.ok()) << d.status();
    FrameCollector sink(o.geometry);
    std::vector<StreamDecoder::Frame>& frames = sink.frames;
    for (size_t at = 0; at < stream.size();) {
      const size_t n = std::min(stream.size() - at, 1 + rng() % max_piece);
      ASSERT_TRUE((*d)->Push(absl::string_view(stream).substr(at, n), &sink).ok());
      at += n;
    }
    ASSERT_TRUE((*d)->Finish(&sink).ok());
    EXPECT_EQ(Shown(frames), want) << format << ", pieces of up to " << max_piece;
    EXPECT_EQ((*d)->corrupt_packets(), 0);
    EXPECT_EQ((*d)->dropped_frames(), 0);
    ASSERT_FALSE(frames.empty());
    EXPECT_TRUE(frames.front().keyframe);
    EXPECT_EQ(frames.front().rgb.size(), size_t{kWidth} * kHeight * 3);
    for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(frames[i].index, int64_t(i));
  }
}

TEST(StreamDecoderTest, PiecesOfAnySizeGiveEveryFrameInOrder) {
  ASSERT_TRUE(FfmpegAvailable());
  const std::string stream = Annexb("-g 30");
  ASSERT_FALSE(stream.empty());
  ExpectPiecesOfAnySizeGiveEveryFrameInOrder("h264", stream);
}

// The same for H.265 (HEVC) Annex B, as cameras send it.
TEST(StreamDecoderTest, HevcPiecesOfAnySizeGiveEveryFrameInOrder) {
  ASSERT_TRUE(FfmpegAvailable());
  absl::StatusOr<std::string> stream = EncodeWithFfmpeg(
      kFrames, kWidth, kHeight, "25",
      "-c:v libx265 -preset ultrafast -pix_fmt yuv420p -x265-params log-level=error:keyint=30:bframes=0"
      " -f hevc",
      "hevc");
  ASSERT_TRUE(stream.ok()) << stream.status();
  ExpectPiecesOfAnySizeGiveEveryFrameInOrder("hevc", *stream);
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
  FrameCollector sink(WholeFrames().geometry);
  std::vector<StreamDecoder::Frame>& frames = sink.frames;
  for (size_t at = 0; at < stream.size(); at += 512) {
    ASSERT_TRUE((*d)->Push(absl::string_view(stream).substr(at, 512), &sink).ok());
  }
  ASSERT_TRUE((*d)->Finish(&sink).ok());
  ExpectDamageCostsOnlyTheFirstGop(**d, frames);
}

// A container stream of kFrames frames at 25 fps, keyframe every 30.
std::string Container(const std::string& format) {
  const std::string args =
      format == "mpegts"
          ? "-f mpegts"
          : "-movflags frag_keyframe+empty_moov+default_base_moof -f mp4";
  absl::StatusOr<std::string> bytes = EncodeWithFfmpeg(
      kFrames, kWidth, kHeight, "25",
      "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 30 " + args,
      format == "mpegts" ? "ts" : "mp4");
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

StreamDecoder::Options ContainerFrames(const std::string& format) {
  StreamDecoder::Options o = WholeFrames();
  o.format = format;
  return o;
}

// The case's container stream, made once per test.
class ContainerStreamTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FfmpegAvailable());
    stream_ = Container(GetParam());
    ASSERT_FALSE(stream_.empty());
  }
  std::unique_ptr<StreamDecoder> NewDecoder() {
    auto d = StreamDecoder::Create(ContainerFrames(GetParam()));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : nullptr;
  }
  std::string stream_;
};

TEST_P(ContainerStreamTest, PiecesOfAnySizeGiveEveryFrameInOrderWithItsTime) {
  const std::string& stream = stream_;
  std::vector<int> want(kFrames);
  for (int i = 0; i < kFrames; ++i) want[i] = i;
  std::mt19937 rng(7);
  for (size_t max_piece : {size_t{5000}, stream.size(), size_t{188}, size_t{1}}) {
    auto d = StreamDecoder::Create(ContainerFrames(GetParam()));
    ASSERT_TRUE(d.ok()) << d.status();
    FrameCollector sink(WholeFrames().geometry);
    std::vector<StreamDecoder::Frame>& frames = sink.frames;
    for (size_t at = 0; at < stream.size();) {
      const size_t n = std::min(stream.size() - at, 1 + rng() % max_piece);
      absl::Status s = (*d)->Push(absl::string_view(stream).substr(at, n), &sink);
      ASSERT_TRUE(s.ok()) << s;
      at += n;
    }
    absl::Status finished = (*d)->Finish(&sink);
    ASSERT_TRUE(finished.ok()) << finished << ", pieces of up to " << max_piece;
    EXPECT_EQ(Shown(frames), want) << "pieces of up to " << max_piece;
    EXPECT_EQ((*d)->corrupt_packets(), 0);
    EXPECT_EQ((*d)->dropped_frames(), 0);
    ASSERT_EQ(frames.size(), size_t{kFrames});
    EXPECT_TRUE(frames.front().keyframe);
    // The container's clock: 25 fps is 40 ms a frame.
    for (size_t i = 1; i < frames.size(); ++i) {
      EXPECT_EQ(frames[i].time_us - frames[i - 1].time_us, 40000) << i;
    }
  }
}

TEST_P(ContainerStreamTest, FramesComeAsTheBytesDoNotAtTheEnd) {
  const std::string& stream = stream_;
  std::unique_ptr<StreamDecoder> d = NewDecoder();
  ASSERT_NE(d, nullptr);
  FrameCollector sink(WholeFrames().geometry);
  std::vector<StreamDecoder::Frame>& frames = sink.frames;
  const size_t half = stream.size() / 2;
  ASSERT_TRUE(d->Push(absl::string_view(stream).substr(0, half), &sink).ok());
  // Half the bytes give about half the frames (the demuxer and the decoder
  // hold back a few at most).
  EXPECT_GT(frames.size(), size_t{kFrames / 4});
  EXPECT_LT(frames.size(), size_t{kFrames});
  const size_t early = frames.size();
  ASSERT_TRUE(d->Push(absl::string_view(stream).substr(half), &sink).ok());
  ASSERT_TRUE(d->Finish(&sink).ok());
  EXPECT_EQ(frames.size(), size_t{kFrames});
  EXPECT_GT(frames.size(), early);
}

TEST_P(ContainerStreamTest, DestroyedMidStreamItStopsAtOnce) {
  std::unique_ptr<StreamDecoder> d = NewDecoder();
  ASSERT_NE(d, nullptr);
  FrameCollector sink(WholeFrames().geometry);
  std::vector<StreamDecoder::Frame>& frames = sink.frames;
  ASSERT_TRUE(d->Push(absl::string_view(stream_).substr(0, stream_.size() / 3), &sink).ok());
  EXPECT_FALSE(frames.empty());
  d.reset();  // its demuxer waits for bytes that never come: must not hang
}

TEST_P(ContainerStreamTest, BytesOfAnotherKindEndTheStreamWithInvalidArgument) {
  std::mt19937 rng(3);
  std::string junk(100000, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  auto d = StreamDecoder::Create(ContainerFrames(GetParam()));
  ASSERT_TRUE(d.ok());
  FrameCollector sink(WholeFrames().geometry);
  std::vector<StreamDecoder::Frame>& frames = sink.frames;
  absl::Status s = (*d)->Push(junk, &sink);
  if (s.ok()) s = (*d)->Finish(&sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::StartsWith("could not decode video: "));
  EXPECT_TRUE(frames.empty());
  // It stays ended.
  EXPECT_FALSE((*d)->Push("more", &sink).ok());
}

INSTANTIATE_TEST_SUITE_P(Formats, ContainerStreamTest,
                         ::testing::Values("mpegts", "fmp4"));

TEST(ContainerStreamTest, ACorruptStretchOfATransportStreamCostsOnlyTheFramesBeforeTheNextKeyframe) {
  ASSERT_TRUE(FfmpegAvailable());
  std::string stream = Container("mpegts");
  ASSERT_FALSE(stream.empty());
  std::mt19937 rng(11);
  const size_t from = stream.size() / 6;
  for (size_t i = from; i < from + 2000; ++i) stream[i] = static_cast<char>(rng());
  auto d = StreamDecoder::Create(ContainerFrames("mpegts"));
  ASSERT_TRUE(d.ok());
  FrameCollector sink(WholeFrames().geometry);
  std::vector<StreamDecoder::Frame>& frames = sink.frames;
  for (size_t at = 0; at < stream.size(); at += 1316) {
    ASSERT_TRUE((*d)->Push(absl::string_view(stream).substr(at, 1316), &sink).ok());
  }
  ASSERT_TRUE((*d)->Finish(&sink).ok());
  ExpectDamageCostsOnlyTheFirstGop(**d, frames);
}

// A sink that wants every third frame, into one reused buffer.
class EveryThird final : public StreamDecoder::Sink {
 public:
  uint8_t* Place(const StreamDecoder::FrameInfo& info) override {
    offered.push_back(static_cast<int>(info.index));
    return info.index % 3 == 0 ? buffer.data() : nullptr;
  }
  void Written(const StreamDecoder::FrameInfo& info) override {
    written.push_back(static_cast<int>(info.index));
    shown.push_back(ReadIndex(buffer.data(), kWidth, kHeight));
  }
  std::vector<uint8_t> buffer = std::vector<uint8_t>(size_t{kWidth} * kHeight * 3);
  std::vector<int> offered, written, shown;
};

TEST_P(ContainerStreamTest, ASinkGetsOnlyTheFramesItAsksForWrittenWhereItSays) {
  std::unique_ptr<StreamDecoder> d = NewDecoder();
  ASSERT_NE(d, nullptr);
  EveryThird sink;
  for (size_t at = 0; at < stream_.size(); at += 4096) {
    ASSERT_TRUE(d->Push(absl::string_view(stream_).substr(at, 4096), &sink).ok());
  }
  ASSERT_TRUE(d->Finish(&sink).ok());
  std::vector<int> all(kFrames), thirds;
  for (int i = 0; i < kFrames; ++i) {
    all[i] = i;
    if (i % 3 == 0) thirds.push_back(i);
  }
  EXPECT_EQ(sink.offered, all);
  EXPECT_EQ(sink.written, thirds);
  EXPECT_EQ(sink.shown, thirds);
}

TEST(StreamDecoderTest, BadThreadCountsAreRefused) {
  for (int threads : {-1, 65}) {
    StreamDecoder::Options o = WholeFrames();
    o.threads = threads;
    auto d = StreamDecoder::Create(o);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << threads;
    EXPECT_THAT(std::string(d.status().message()),
                ::testing::HasSubstr("invalid decode threads " + std::to_string(threads)));
  }
}

// Every format: bytes after the end are refused, not silently dropped.
TEST(StreamDecoderTest, PushAfterFinishIsFailedPrecondition) {
  for (const char* format : {"h264", "hevc", "mpegts", "fmp4"}) {
    StreamDecoder::Options o = WholeFrames();
    o.format = format;
    auto d = StreamDecoder::Create(o);
    ASSERT_TRUE(d.ok()) << d.status();
    FrameCollector sink(o.geometry);
    ASSERT_TRUE((*d)->Finish(&sink).ok()) << format;
    absl::Status s = (*d)->Push("\x00\x00\x00\x01", &sink);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << format << ": " << s;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("Push() after Finish()"));
    EXPECT_TRUE(sink.frames.empty());
  }
}

TEST(StreamDecoderTest, UnknownCodecIsRefused) {
  StreamDecoder::Options o = WholeFrames();
  o.format = "vp9";
  auto d = StreamDecoder::Create(o);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()),
              ::testing::HasSubstr("unsupported stream format \"vp9\" (known: h264, hevc, mpegts, fmp4)"));
}

}  // namespace
}  // namespace clipserve::video

namespace clipserve::video {
namespace {

// An Annex B stream of one slice per frame cut into its access units: a
// unit begins at a parameter set, SEI or delimiter after a slice, or at a
// slice after a slice.
std::vector<std::string> AccessUnits(const std::string& stream) {
  std::vector<size_t> starts;   // where each NAL's start code begins
  std::vector<int> types;
  for (size_t i = 0; i + 3 < stream.size(); ++i) {
    if (stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1) {
      starts.push_back(i > 0 && stream[i - 1] == 0 ? i - 1 : i);
      types.push_back(stream[i + 3] & 0x1f);
      i += 2;
    }
  }
  std::vector<std::string> units;
  size_t unit_start = 0;
  for (size_t n = 1; n < starts.size(); ++n) {
    const bool prev_slice = types[n - 1] == 1 || types[n - 1] == 5;
    if (prev_slice) {
      units.push_back(stream.substr(unit_start, starts[n] - unit_start));
      unit_start = starts[n];
    }
  }
  units.push_back(stream.substr(unit_start));
  return units;
}

TEST(StreamDecoderTest, WholeAccessUnitsAreDecodedAsTheyArriveAndPlacedByTheStreamsRate) {
  ASSERT_TRUE(FfmpegAvailable());
  const std::string stream = Annexb("-g 30 -bf 0 -x264-params threads=1:sliced-threads=0");
  const std::vector<std::string> units = AccessUnits(stream);
  ASSERT_EQ(units.size(), size_t{kFrames});
  for (bool whole : {true, false}) {
    SCOPED_TRACE(whole ? "one access unit a Push()" : "split anywhere");
    StreamDecoder::Options o = WholeFrames();
    o.whole_access_units = whole;
    auto d = StreamDecoder::Create(o);
    ASSERT_TRUE(d.ok()) << d.status();
    FrameCollector sink(o.geometry);
    for (size_t i = 0; i < units.size(); ++i) {
      ASSERT_TRUE((*d)->Push(units[i], &sink).ok());
      // Without the promise, a unit is known complete only when the next
      // one begins.
      ASSERT_EQ(sink.frames.size(), whole ? i + 1 : i) << "after unit " << i;
    }
    ASSERT_TRUE((*d)->Finish(&sink).ok());
    ASSERT_EQ(sink.frames.size(), size_t{kFrames});
    std::vector<int> want(kFrames);
    for (int i = 0; i < kFrames; ++i) want[i] = i;
    EXPECT_EQ(Shown(sink.frames), want);
    // No container, but the stream says 25 fps (its VUI timing).
    for (int i = 0; i < kFrames; ++i) EXPECT_EQ(sink.frames[i].time_us, 40000 * i) << i;
  }
}

}  // namespace
}  // namespace clipserve::video
