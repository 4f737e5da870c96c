// The live-stream client pieces without the real server: SOURCE
// classification, pacing schedules, the per-stream aggregation, the
// --find-max-streams search, the stream command's lines, the reports, the
// FFmpeg side (test stream encoding, MPEG-TS writing and remuxing, checked by
// decoding them with video::StreamDecoder), and RunStreams against an
// in-process fake ClassifyStream server.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "client/av_stream.h"
#include "client/channel.h"
#include "client/perf_stream.h"
#include "client/perf_stream_report.h"
#include "client/stream_command.h"
#include "client/stream_input.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "video/stream_decoder.h"

namespace clipserve::client {
namespace {

using std::chrono::milliseconds;

// ---- SOURCE ----------------------------------------------------------------

TEST(ClassifySourceTest, UrlsArePulled) {
  for (const char* url : {"rtsp://cam/1", "RTSPS://cam/1", "http://h/live.ts",
                          "https://h/x.m3u8", "udp://@:5000", "file:///srv/a.mp4"}) {
    absl::StatusOr<StreamSource> s = ClassifySource(url);
    ASSERT_TRUE(s.ok()) << url;
    EXPECT_EQ(s->url, url);
    EXPECT_TRUE(s->path.empty());
  }
}

TEST(ClassifySourceTest, OtherSchemesAreRefused) {
  absl::StatusOr<StreamSource> s = ClassifySource("ftp://host/a.ts");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("\"ftp\""), std::string::npos);
  EXPECT_FALSE(ClassifySource("").ok());
}

TEST(ClassifySourceTest, FilesByExtension) {
  struct Case {
    const char* path;
    v1::StreamOpen::Input input;
    bool remux;
  };
  for (const Case& c : {Case{"a.ts", v1::StreamOpen::MPEGTS, false},
                        Case{"dir/A.M2TS", v1::StreamOpen::MPEGTS, false},
                        Case{"a.h264", v1::StreamOpen::H264, false},
                        Case{"a.264", v1::StreamOpen::H264, false},
                        Case{"a.hevc", v1::StreamOpen::HEVC, false},
                        Case{"a.H265", v1::StreamOpen::HEVC, false},
                        Case{"a.265", v1::StreamOpen::HEVC, false},
                        Case{"a.mp4", v1::StreamOpen::MPEGTS, true},
                        Case{"a.mkv", v1::StreamOpen::MPEGTS, true},
                        Case{"noext", v1::StreamOpen::MPEGTS, true},
                        Case{"dir.ts/file", v1::StreamOpen::MPEGTS, true}}) {
    absl::StatusOr<StreamSource> s = ClassifySource(c.path);
    ASSERT_TRUE(s.ok()) << c.path;
    EXPECT_TRUE(s->url.empty());
    EXPECT_EQ(s->path, c.path);
    EXPECT_EQ(s->input, c.input) << c.path;
    EXPECT_EQ(s->remux, c.remux) << c.path;
  }
}

// ---- pacing ----------------------------------------------------------------

TEST(PacerTest, FirstChunkAtOnceThenByStreamTime) {
  Pacer pacer;
  const auto t0 = Pacer::Clock::time_point(milliseconds(1000));
  EXPECT_EQ(pacer.Due(500000, t0), t0);  // the first chunk's time is the origin
  EXPECT_EQ(pacer.Due(540000, t0 + milliseconds(1)), t0 + milliseconds(40));
  EXPECT_EQ(pacer.Due(1500000, t0), t0 + milliseconds(1000));
  // Untimed chunks are due at once.
  EXPECT_EQ(pacer.Due(-1, t0 + milliseconds(7)), t0 + milliseconds(7));
}

TEST(FrameScheduleTest, StaggeredOverOneFrameInterval) {
  EXPECT_EQ(FrameDueUs(0, 4, 0, 25), 0);
  EXPECT_EQ(FrameDueUs(1, 4, 0, 25), 10000);
  EXPECT_EQ(FrameDueUs(3, 4, 2, 25), 110000);
  EXPECT_EQ(FrameDueUs(0, 1, 25, 25), 1000000);
  EXPECT_EQ(FrameDueUs(0, 3, 1, 30), 33333);
  // The pacer walks frames, then streams: the times never go backwards.
  int64_t last = -1;
  for (int64_t f = 0; f < 50; ++f) {
    for (int s = 0; s < 7; ++s) {
      const int64_t t = FrameDueUs(s, 7, f, 29.97);
      EXPECT_GE(t, last);
      last = t;
    }
  }
}

// ---- aggregation -----------------------------------------------------------

StreamStats Stats(std::vector<double> latency, std::vector<double> client, int64_t dropped) {
  StreamStats s;
  s.frames_sent = 100;
  s.window_frames = 16;
  s.stride_frames = 8;
  s.windows = static_cast<int64_t>(latency.size());
  s.dropped = dropped;
  if (dropped > 0) s.events["WINDOWS_DROPPED"] = dropped;
  s.latency_us = std::move(latency);
  s.client_latency_us = std::move(client);
  for (int64_t i = 0; i < s.windows; ++i) {
    s.decode_us_sum += 4000;
    s.queue_us_sum += 1000;
    s.compute_us_sum += 32000;
    s.batch_sum += 2;
  }
  return s;
}

TEST(SummariseTest, OneStream) {
  const StreamStats s = Stats({30000, 10000, 20000, 40000}, {11000, 12000}, 1);
  const StreamSummary sum = Summarise({&s}, 25);
  EXPECT_EQ(sum.streams, 1);
  EXPECT_EQ(sum.windows, 4);
  EXPECT_EQ(sum.dropped, 1);
  EXPECT_DOUBLE_EQ(sum.drop_rate, 0.2);
  EXPECT_EQ(sum.p50_us, 20000);
  EXPECT_EQ(sum.p99_us, 40000);
  EXPECT_EQ(sum.max_us, 40000);
  EXPECT_EQ(sum.client_count, 2);
  EXPECT_EQ(sum.client_p50_us, 11000);
  EXPECT_EQ(sum.client_p99_us, 12000);
  EXPECT_DOUBLE_EQ(sum.mean_decode_us, 4000);
  EXPECT_DOUBLE_EQ(sum.mean_batch, 2);
  // 4 ms per 40 ms frame; 32 ms per 8-frame (320 ms) window.
  EXPECT_DOUBLE_EQ(sum.decode_share, 0.1);
  EXPECT_DOUBLE_EQ(sum.compute_share, 0.1);
  EXPECT_EQ(sum.events.at("WINDOWS_DROPPED"), 1);
  EXPECT_EQ(sum.ended.at("OK"), 1);
  EXPECT_EQ(sum.failed(), 0);
}

TEST(SummariseTest, OverallPoolsTheWindowsOfEveryStream) {
  std::vector<double> many;
  for (int i = 1; i <= 99; ++i) many.push_back(i * 1000.0);
  StreamStats a = Stats(many, {}, 0);
  StreamStats b = Stats({500000}, {}, 3);
  b.code = "UNAVAILABLE";
  b.stride_frames = 16;  // its own window interval
  StreamStats c;         // answered nothing, cancelled
  c.code = "CANCELLED";
  c.unfinished = true;
  const StreamSummary sum = Summarise({&a, &b, &c}, 25);
  EXPECT_EQ(sum.streams, 3);
  EXPECT_EQ(sum.windows, 100);
  EXPECT_EQ(sum.dropped, 3);
  EXPECT_DOUBLE_EQ(sum.drop_rate, 3.0 / 103);
  EXPECT_EQ(sum.p50_us, 50000);
  EXPECT_EQ(sum.p99_us, 99000);
  EXPECT_EQ(sum.max_us, 500000);
  EXPECT_EQ(sum.client_count, 0);
  EXPECT_EQ(sum.failed(), 2);
  EXPECT_EQ(sum.unfinished, 1);
  // 99 windows at 32/320 and one at 32/640.
  EXPECT_NEAR(sum.compute_share, (99 * 0.1 + 0.05) / 100, 1e-12);
  EXPECT_EQ(sum.frames_sent, 200);
}

TEST(SummariseTest, NothingAnswered) {
  StreamStats s;
  const StreamSummary sum = Summarise({&s}, 25);
  EXPECT_EQ(sum.windows, 0);
  EXPECT_EQ(sum.drop_rate, 0);
  EXPECT_EQ(sum.p99_us, 0);
  EXPECT_EQ(sum.decode_share, 0);
  EXPECT_FALSE(WithinBudget(sum, 1e9));
}

TEST(WithinBudgetTest, NeedsOkStreamsNoDropsAndP99InBudget) {
  const StreamStats s = Stats({100000, 200000}, {}, 0);
  StreamSummary sum = Summarise({&s}, 25);
  EXPECT_TRUE(WithinBudget(sum, 200000));
  EXPECT_FALSE(WithinBudget(sum, 199999));
  StreamStats dropped = Stats({1000}, {}, 1);
  EXPECT_FALSE(WithinBudget(Summarise({&dropped}, 25), 1e9));
  StreamStats failed = Stats({1000}, {}, 0);
  failed.code = "RESOURCE_EXHAUSTED";
  EXPECT_FALSE(WithinBudget(Summarise({&failed}, 25), 1e9));
}

// ---- --find-max-streams ----------------------------------------------------

std::vector<int> Tried(const StreamSearch& s) {
  std::vector<int> n;
  for (const auto& [streams, passed] : s.trials) n.push_back(streams);
  return n;
}

TEST(FindMaxStreamsTest, DoublesThenBisects) {
  const StreamSearch s = FindMaxStreams([](int n) { return n <= 5; }, 1024);
  EXPECT_EQ(s.max_streams, 5);
  EXPECT_EQ(Tried(s), (std::vector<int>{1, 2, 4, 8, 6, 5}));
  EXPECT_TRUE(s.trials[2].second);
  EXPECT_FALSE(s.trials[3].second);
}

TEST(FindMaxStreamsTest, PowerOfTwoAndNeighbours) {
  EXPECT_EQ(FindMaxStreams([](int n) { return n <= 8; }, 1024).max_streams, 8);
  EXPECT_EQ(Tried(FindMaxStreams([](int n) { return n <= 8; }, 1024)),
            (std::vector<int>{1, 2, 4, 8, 16, 12, 10, 9}));
  EXPECT_EQ(FindMaxStreams([](int n) { return n <= 7; }, 1024).max_streams, 7);
  EXPECT_EQ(FindMaxStreams([](int n) { return n <= 1; }, 1024).max_streams, 1);
  EXPECT_EQ(Tried(FindMaxStreams([](int n) { return n <= 1; }, 1024)),
            (std::vector<int>{1, 2}));
}

TEST(FindMaxStreamsTest, NotEvenOne) {
  const StreamSearch s = FindMaxStreams([](int) { return false; }, 1024);
  EXPECT_EQ(s.max_streams, 0);
  EXPECT_EQ(Tried(s), (std::vector<int>{1}));
}

TEST(FindMaxStreamsTest, StopsAtTheLimit) {
  const StreamSearch s = FindMaxStreams([](int) { return true; }, 10);
  EXPECT_EQ(s.max_streams, 10);
  EXPECT_EQ(Tried(s), (std::vector<int>{1, 2, 4, 8, 10}));
  const StreamSearch t = FindMaxStreams([](int n) { return n < 10; }, 10);
  EXPECT_EQ(t.max_streams, 9);
  EXPECT_EQ(Tried(t), (std::vector<int>{1, 2, 4, 8, 10, 9}));
  EXPECT_EQ(FindMaxStreams([](int) { return true; }, 0).trials.size(), 0u);
}

// ---- the stream command's lines --------------------------------------------

TEST(StreamLinesTest, StartedWindowEventSummary) {
  v1::StreamStarted started;
  started.set_model_name("i3d");
  started.set_model_version("1");
  started.set_window_frames(16);
  started.set_stride_frames(8);
  started.set_crop_height(224);
  started.set_crop_width(224);
  EXPECT_EQ(FormatStarted(started),
            "started: model i3d version 1, window 16 frames, stride 8, crop 224x224");

  v1::WindowResult w;
  w.set_number(3);
  w.set_first_frame(24);
  w.set_last_frame(31);
  w.set_first_pts_us(960000);
  w.set_last_pts_us(1240000);
  auto* c = w.add_classes();
  c->set_label("label_a");
  c->set_probability(0.414f);
  c = w.add_classes();
  c->set_class_index(17);
  c->set_probability(0.2f);
  w.set_latency_us(38400);
  w.mutable_timings()->set_decode_us(1600);
  w.mutable_timings()->set_queue_us(2000);
  w.mutable_timings()->set_compute_us(30000);
  w.mutable_timings()->set_batch_size(3);
  EXPECT_EQ(FormatWindow(w),
            "window 3 frames 24-31 (0.960-1.240 s): 0.41 label_a, 0.20 class 17 latency 38 ms "
            "(decode 2, queue 2, compute 30, batch 3)");

  v1::StreamEvent e;
  e.set_kind(v1::StreamEvent::WINDOWS_DROPPED);
  e.set_count(2);
  e.set_message("the next window was ready");
  EXPECT_EQ(FormatEvent(e), "event WINDOWS_DROPPED count 2: the next window was ready");
  v1::StreamEvent lost;
  lost.set_kind(v1::StreamEvent::SOURCE_LOST);
  EXPECT_EQ(FormatEvent(lost), "event SOURCE_LOST");

  StreamTally tally;
  v1::StreamResponse r;
  *r.mutable_started() = started;
  tally.Add(r);
  *r.mutable_window() = w;
  tally.Add(r);
  tally.Add(r);
  *r.mutable_event() = e;
  tally.Add(r);
  tally.Add(r);
  *r.mutable_event() = lost;
  tally.Add(r);
  EXPECT_EQ(tally.windows, 2);
  EXPECT_EQ(tally.dropped, 4);
  EXPECT_EQ(FormatSummary(tally, "OK", 10, 2048, 1.25),
            "ended OK: 2 windows, 4 dropped, events: SOURCE_LOST 1, WINDOWS_DROPPED 2; pushed "
            "10 messages, 2048 bytes in 1.2 s");
  EXPECT_EQ(FormatSummary(StreamTally(), "UNAVAILABLE", 0, 0, 0),
            "ended UNAVAILABLE: 0 windows, 0 dropped, events: none; pushed 0 messages, 0 "
            "bytes in 0.0 s");
}

// ---- reports ---------------------------------------------------------------

StreamRunRecord SampleRecord() {
  StreamRunRecord r;
  r.result.streams = 2;
  r.result.fps = 25;
  r.result.seconds = 4;
  r.result.per_stream.push_back(Stats({1000, 2000}, {1500}, 0));
  r.result.per_stream.push_back(Stats({3000}, {}, 2));
  r.result.per_stream.back().code = "UNAVAILABLE";
  r.result.per_stream.back().message = "bye \"now\"";
  std::vector<const StreamStats*> all = {&r.result.per_stream[0], &r.result.per_stream[1]};
  r.result.overall = Summarise(all, 25);
  r.passed = false;
  return r;
}

TEST(StreamReportTest, JsonIsValid) {
  StreamRunInfo run;
  run.model = "m";
  run.fps = 25;
  run.width = 64;
  run.height = 48;
  const std::string json = StreamReportJson(run, {SampleRecord(), SampleRecord()}, 1);
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("mode").string_value(), "streams");
  EXPECT_EQ(f.at("transport").string_value(), "push");
  EXPECT_EQ(f.at("max_streams").number_value(), 1);
  EXPECT_EQ(f.at("source_url").kind_case(), google::protobuf::Value::kNullValue);
  const auto& runs = f.at("runs").list_value();
  ASSERT_EQ(runs.values_size(), 2);
  const auto& r = runs.values(0).struct_value().fields();
  EXPECT_FALSE(r.at("passed").bool_value());
  const auto& overall = r.at("overall").struct_value().fields();
  EXPECT_EQ(overall.at("windows").number_value(), 3);
  EXPECT_EQ(overall.at("dropped").number_value(), 2);
  EXPECT_EQ(overall.at("ended").struct_value().fields().at("UNAVAILABLE").number_value(), 1);
  const auto& per = r.at("per_stream").list_value();
  ASSERT_EQ(per.values_size(), 2);
  const auto& second = per.values(1).struct_value().fields();
  EXPECT_EQ(second.at("message").string_value(), "bye \"now\"");
  EXPECT_EQ(second.at("client_p50_us").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(per.values(0).struct_value().fields().at("client_p50_us").number_value(), 1500);
  EXPECT_EQ(StreamReportJson(run, {}, std::nullopt).find("\"max_streams\": null") !=
                std::string::npos,
            true);
}

TEST(StreamReportTest, CsvRowsPerStreamAndAll) {
  const std::string csv = StreamReportCsv({SampleRecord()});
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  const auto columns = std::count(lines[0].begin(), lines[0].end(), ',');
  for (const std::string& line : lines) {
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), columns) << line;
  }
  EXPECT_EQ(lines[3].rfind("0,2,all,false,", 0), 0u) << lines[3];
}

TEST(StreamReportTest, TableRowsLineUpWithTheHeader) {
  const StreamRunRecord r = SampleRecord();
  const std::string header = StreamTableHeader("stream", false);
  const std::string row = StreamTableRow("all", r.result.overall, false, "");
  // Both end in the "ended" column; up to it they have the same width.
  EXPECT_EQ(header.find("ended"), row.find("UNAVAILABLE:1")) << header << row;
  EXPECT_NE(StreamTableRow("3", r.result.overall, true, "fail").find("      -  "),
            std::string::npos);
  EXPECT_NE(StreamPreamble(StreamRunInfo{}).find("dec share"), std::string::npos);
}

// ---- FFmpeg: encoding, TS writing, remuxing --------------------------------

class TempDir {
 public:
  TempDir() {
    std::string t = ::testing::TempDir() + "stream_client_XXXXXX";
    path_ = mkdtemp(t.data());
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Frames decoded from `chunks` pushed in order as `format`.
int64_t DecodedFrames(const std::string& format, const std::vector<std::string>& chunks) {
  video::StreamDecoder::Options o;
  o.format = format;
  o.geometry.resize_short_side = 16;
  o.geometry.crop_height = 16;
  o.geometry.crop_width = 16;
  auto decoder = video::StreamDecoder::Create(o);
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  if (!decoder.ok()) return -1;
  video::FrameCollector frames(o.geometry);
  for (const std::string& c : chunks) {
    absl::Status s = (*decoder)->Push(c, &frames);
    EXPECT_TRUE(s.ok()) << s;
  }
  absl::Status s = (*decoder)->Finish(&frames);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ((*decoder)->corrupt_packets(), 0);
  return static_cast<int64_t>(frames.frames.size());
}

TestStreamOptions Small() {
  TestStreamOptions o;
  o.width = 64;
  o.height = 48;
  o.fps = 10;
  o.gop = 5;
  o.frames = 10;
  return o;
}

TEST(TestStreamTest, EncodesOneAccessUnitPerFrameAndLoops) {
  absl::StatusOr<std::vector<std::string>> units = EncodeTestStream(Small());
  ASSERT_TRUE(units.ok()) << units.status();
  ASSERT_EQ(units->size(), 10u);
  EXPECT_EQ(DecodedFrames("h264", *units), 10);
  // Looped twice, as each pushed stream does, and sent one unit per chunk.
  std::vector<std::string> looped = *units;
  looped.insert(looped.end(), units->begin(), units->end());
  EXPECT_EQ(DecodedFrames("h264", looped), 20);
}

TEST(TestStreamTest, RefusesOddSizes) {
  TestStreamOptions o = Small();
  o.width = 65;
  EXPECT_EQ(EncodeTestStream(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// All chunks of `path` read as `source` describes.
std::vector<std::string> ReadChunks(const StreamSource& source, bool timed,
                                    std::vector<int64_t>* times) {
  ChunkOptions o;
  o.timed = timed;
  o.raw_chunk_bytes = 1000;
  auto reader = OpenChunks(source, o);
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> chunks;
  if (!reader.ok()) return chunks;
  std::string bytes;
  int64_t t = 0;
  for (;;) {
    absl::StatusOr<bool> more = (*reader)->Next(&bytes, &t);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    chunks.push_back(bytes);
    if (times != nullptr) times->push_back(t);
  }
  return chunks;
}

TEST(ChunksTest, TsFileRawTimedAndRemuxed) {
  TempDir dir;
  auto units = EncodeTestStream(Small());
  ASSERT_TRUE(units.ok()) << units.status();
  const std::string ts = dir.File("a.ts");
  ASSERT_TRUE(WriteMpegTsFile(*units, 64, 48, 10, 25, ts).ok());
  absl::StatusOr<StreamSource> source = ClassifySource(ts);
  ASSERT_TRUE(source.ok());

  // Untimed: the file's bytes, 1000 at a time.
  std::vector<int64_t> times;
  std::vector<std::string> raw = ReadChunks(*source, false, &times);
  ASSERT_GT(raw.size(), 1u);
  EXPECT_EQ(raw.front().size(), 1000u);
  EXPECT_EQ(times.front(), -1);
  EXPECT_EQ(DecodedFrames("mpegts", raw), 25);

  // Timed: one packet per chunk, 100 ms apart, remuxed.
  times.clear();
  std::vector<std::string> timed = ReadChunks(*source, true, &times);
  ASSERT_GE(timed.size(), 25u);
  EXPECT_EQ(times[0], 0);
  EXPECT_EQ(times[1], 100000);
  EXPECT_EQ(times[24], 2400000);
  EXPECT_EQ(DecodedFrames("mpegts", timed), 25);

  // The same file under another extension is remuxed, also untimed.
  const std::string other = dir.File("a.video");
  std::rename(ts.c_str(), other.c_str());
  source = ClassifySource(other);
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(source->remux);
  EXPECT_EQ(DecodedFrames("mpegts", ReadChunks(*source, false, nullptr)), 25);
}

TEST(ChunksTest, AnnexBFileTimedIsOneAccessUnitPerChunk) {
  TempDir dir;
  auto units = EncodeTestStream(Small());
  ASSERT_TRUE(units.ok()) << units.status();
  const std::string path = dir.File("a.h264");
  {
    std::ofstream out(path, std::ios::binary);
    for (const std::string& u : *units) out << u;
  }
  absl::StatusOr<StreamSource> source = ClassifySource(path);
  ASSERT_TRUE(source.ok());
  std::vector<int64_t> times;
  std::vector<std::string> chunks = ReadChunks(*source, true, &times);
  EXPECT_EQ(chunks.size(), units->size());
  for (size_t i = 1; i < times.size(); ++i) EXPECT_GT(times[i], times[i - 1]);
  EXPECT_EQ(DecodedFrames("h264", chunks), 10);
  // Untimed: raw bytes.
  EXPECT_EQ(DecodedFrames("h264", ReadChunks(*source, false, nullptr)), 10);
  // An extension that lies is caught.
  const std::string hevc = dir.File("a.hevc");
  std::rename(path.c_str(), hevc.c_str());
  ChunkOptions o;
  o.timed = true;
  auto wrong = OpenChunks(*ClassifySource(hevc), o);
  EXPECT_FALSE(wrong.ok());
}

TEST(ChunksTest, RefusesWhatIsNotVideo) {
  TempDir dir;
  const std::string path = dir.File("notes.mp4");
  {
    std::ofstream out(path);
    out << "not a video at all";
  }
  auto reader = OpenChunks(*ClassifySource(path), ChunkOptions());
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(OpenChunks(*ClassifySource(dir.File("missing.ts")), ChunkOptions()).ok());
}

// ---- RunStreams against a fake server --------------------------------------

// Opens with window 4 / stride 4; answers a window for every 4 frames read
// (last_frame = the 4th's index), a WINDOWS_DROPPED event of count 1 after
// the first window; ends OK at the half-close. Model "full": refused at
// once; "hang": answers nothing until cancelled.
class FakeStreams final : public v1::VideoClassifier::Service {
 public:
  grpc::Status ClassifyStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::StreamResponse, v1::StreamRequest>* stream) override {
    v1::StreamRequest request;
    if (!stream->Read(&request) || !request.has_open()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no open");
    }
    const v1::StreamOpen open = request.open();
    if (open.model_name() == "full") {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many streams");
    }
    if (open.input() == v1::StreamOpen::INPUT_UNSPECIFIED && open.source_url().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "input");
    }
    v1::StreamResponse response;
    auto* started = response.mutable_started();
    started->set_window_frames(4);
    started->set_stride_frames(4);
    stream->Write(response);
    if (!open.source_url().empty()) return grpc::Status::OK;  // an empty file
    int64_t frames = 0, windows = 0;
    while (stream->Read(&request)) {
      if (!request.has_data() || request.data().empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not data");
      }
      ++frames;
      if (open.model_name() == "hang" || frames % 4 != 0) continue;
      auto* w = response.mutable_window();
      w->set_number(windows++);
      w->set_first_frame(frames - 4);
      w->set_last_frame(frames - 1);
      w->set_latency_us(1000 * windows);
      w->mutable_timings()->set_decode_us(400);
      w->mutable_timings()->set_compute_us(8000);
      w->mutable_timings()->set_batch_size(2);
      stream->Write(response);
      if (windows == 1) {
        auto* e = response.mutable_event();
        e->set_kind(v1::StreamEvent::WINDOWS_DROPPED);
        e->set_count(1);
        stream->Write(response);
      }
    }
    if (open.model_name() == "hang") {
      while (!context->IsCancelled()) std::this_thread::sleep_for(milliseconds(5));
      return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }
};

class FakeStreamServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    for (int i = 0; i < 2; ++i) {
      ChannelOptions o;
      o.address = "127.0.0.1:" + std::to_string(port);
      o.own_connection = true;
      channels_.push_back(*MakeChannel(o));
    }
    for (int i = 0; i < 5; ++i) units_.emplace_back().set_data(std::string(100 + i, 'x'));
    options_.units = &units_;
    options_.fps = 100;
    options_.seconds = 0.2;  // 20 frames each
    options_.drain = milliseconds(5000);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
  }

  FakeStreams service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<v1::StreamRequest> units_;
  StreamRunOptions options_;
};

TEST_F(FakeStreamServerTest, PushesEveryFrameAndCountsTheAnswers) {
  options_.streams = 3;
  const StreamRunResult r = RunStreams(channels_, options_);
  ASSERT_EQ(r.per_stream.size(), 3u);
  for (const StreamStats& s : r.per_stream) {
    EXPECT_EQ(s.code, "OK") << s.message;
    EXPECT_EQ(s.frames_sent, 20);
    EXPECT_EQ(s.windows, 5);
    EXPECT_EQ(s.dropped, 1);
    EXPECT_EQ(s.stride_frames, 4);
    EXPECT_EQ(s.client_latency_us.size(), 5u);
    for (double us : s.client_latency_us) EXPECT_GE(us, 0);
    EXPECT_FALSE(s.unfinished);
  }
  EXPECT_EQ(r.overall.windows, 15);
  EXPECT_EQ(r.overall.dropped, 3);
  EXPECT_DOUBLE_EQ(r.overall.drop_rate, 3.0 / 18);
  EXPECT_EQ(r.overall.max_us, 5000);
  EXPECT_EQ(r.overall.p50_us, 3000);
  // 0.4 ms of a 10 ms frame; 8 ms of a 40 ms window.
  EXPECT_DOUBLE_EQ(r.overall.decode_share, 0.04);
  EXPECT_DOUBLE_EQ(r.overall.compute_share, 0.2);
  EXPECT_EQ(r.overall.client_count, 15);
  EXPECT_FALSE(WithinBudget(r.overall, 1e9));  // windows were dropped
}

TEST_F(FakeStreamServerTest, RefusedStreamsEndWithTheirCode) {
  options_.streams = 2;
  options_.open.set_model_name("full");
  const StreamRunResult r = RunStreams(channels_, options_);
  EXPECT_EQ(r.overall.ended.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(r.overall.failed(), 2);
  EXPECT_EQ(r.overall.windows, 0);
  EXPECT_EQ(r.per_stream[0].message, "too many streams");
}

TEST_F(FakeStreamServerTest, StreamsStillOpenAfterTheDrainAreCancelled) {
  options_.streams = 2;
  options_.open.set_model_name("hang");
  options_.drain = milliseconds(100);
  const StreamRunResult r = RunStreams(channels_, options_);
  EXPECT_EQ(r.overall.unfinished, 2);
  EXPECT_EQ(r.overall.ended.at("CANCELLED"), 2);
  for (const StreamStats& s : r.per_stream) EXPECT_EQ(s.frames_sent, 20);
}

TEST_F(FakeStreamServerTest, PullSendsOnlyTheOpen) {
  options_.streams = 2;
  options_.units = nullptr;
  options_.source_url = "file:///srv/replay.ts";
  const StreamRunResult r = RunStreams(channels_, options_);
  EXPECT_EQ(r.overall.ended.at("OK"), 2);
  EXPECT_EQ(r.overall.frames_sent, 0);
  EXPECT_EQ(r.overall.client_count, 0);
}

TEST_F(FakeStreamServerTest, StreamCommandPushesAFileAndReportsTheCode) {
  TempDir dir;
  auto units = EncodeTestStream(Small());
  ASSERT_TRUE(units.ok()) << units.status();
  const std::string ts = dir.File("a.ts");
  ASSERT_TRUE(WriteMpegTsFile(*units, 64, 48, 10, 20, ts).ok());
  StreamCommandOptions o;
  o.source = ts;
  o.chunk_bytes = 512;  // several messages, so windows come back
  EXPECT_EQ(RunStreamCommand(channels_[0], o), 0);
  o.open.set_model_name("full");
  EXPECT_EQ(RunStreamCommand(channels_[0], o), 8);  // RESOURCE_EXHAUSTED
  o.open.set_model_name("");
  o.source = "file:///srv/replay.ts";  // pulled: only the open
  EXPECT_EQ(RunStreamCommand(channels_[0], o), 0);
  o.source = dir.File("missing.mp4");
  EXPECT_EQ(RunStreamCommand(channels_[0], o), 64);
  o.source = ts;
  o.realtime = true;  // the file's 2 s: paced
  o.seconds = 0.3;    // ... cut short by a half-close
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RunStreamCommand(channels_[0], o), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace clipserve::client
