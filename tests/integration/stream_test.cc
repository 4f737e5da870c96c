// End to end with live streams (ClassifyStream): the real clipserve binary,
// streams pushed by a gRPC client (raw frames, H.264, MPEG-TS, fragmented
// MP4) and sources it pulls (a replayed file, HTTP MPEG-TS and UDP MPEG-TS
// served on loopback by the ffmpeg command-line tool).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

using v1::StreamEvent;
using v1::StreamOpen;
using v1::StreamRequest;
using v1::StreamResponse;

constexpr int kT = 4, kSide = 32, kClasses = 10;
// Raw frames this size are not rescaled (the short side is already 256):
// the model sees their centre crop, which a test can cut out itself.
constexpr int kRawSide = 256;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void RunOrFail(const std::string& command) {
  ServerProcess::Output out = ServerProcess::RunCommand(command);
  ASSERT_EQ(out.exit_code, 0) << command << "\n" << out.text;
}

// A loopback port nothing listens on now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Frame i of a raw stream: seeded noise, kRawSide square.
std::string RawFrame(int i) {
  std::mt19937 rng(1000 + i);
  std::string rgb(static_cast<size_t>(kRawSide * kRawSide * 3), '\0');
  for (char& c : rgb) c = static_cast<char>(rng() & 0xff);
  return rgb;
}

// The centre kSide x kSide crop of a raw frame: what the model sees of it.
std::string CentreCrop(const std::string& rgb) {
  const int off = (kRawSide - kSide) / 2;
  std::string out;
  for (int y = 0; y < kSide; ++y) {
    out.append(rgb, static_cast<size_t>(((off + y) * kRawSide + off) * 3),
               static_cast<size_t>(kSide * 3));
  }
  return out;
}

StreamRequest FrameMessage(const std::string& rgb, int side, int64_t pts_us = 0) {
  StreamRequest m;
  v1::RawFrame* f = m.mutable_frame();
  f->set_width(side);
  f->set_height(side);
  f->set_rgb(rgb);
  f->set_pts_us(pts_us);
  return m;
}

StreamRequest DataMessage(absl::string_view bytes) {
  StreamRequest m;
  m.set_data(std::string(bytes));
  return m;
}

std::vector<StreamRequest> Chunks(const std::string& bytes, size_t size) {
  std::vector<StreamRequest> out;
  for (size_t i = 0; i < bytes.size(); i += size) {
    out.push_back(DataMessage(absl::string_view(bytes).substr(i, size)));
  }
  return out;
}

// What a stream answered.
struct StreamRun {
  grpc::Status status;
  bool started = false;
  v1::StreamStarted info;
  std::vector<v1::WindowResult> windows;
  std::vector<std::chrono::steady_clock::time_point> window_read;  // when each came
  std::vector<StreamEvent> events;

  int64_t Events(StreamEvent::Kind kind) const {
    int64_t n = 0;
    for (const StreamEvent& e : events) n += e.kind() == kind ? e.count() : 0;
    return n;
  }
};

void Collect(const StreamResponse& r, StreamRun* run) {
  switch (r.message_case()) {
    case StreamResponse::kStarted:
      EXPECT_FALSE(run->started) << "StreamStarted comes once";
      EXPECT_TRUE(run->windows.empty() && run->events.empty()) << "and first";
      run->started = true;
      run->info = r.started();
      break;
    case StreamResponse::kWindow:
      run->windows.push_back(r.window());
      run->window_read.push_back(std::chrono::steady_clock::now());
      break;
    case StreamResponse::kEvent:
      run->events.push_back(r.event());
      break;
    case StreamResponse::MESSAGE_NOT_SET:
      ADD_FAILURE() << "empty StreamResponse";
  }
}

// Opens a stream, writes `input` (then half-closes unless `half_close` is
// false), and reads every answer to the end.
StreamRun RunStream(ServerProcess& server, const StreamOpen& open,
                    const std::vector<StreamRequest>& input, bool half_close = true,
                    std::chrono::seconds limit = std::chrono::seconds(120)) {
  auto stub = v1::VideoClassifier::NewStub(server.Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + limit);
  auto stream = stub->ClassifyStream(&context);
  std::thread writer([&] {
    StreamRequest first;
    *first.mutable_open() = open;
    if (!stream->Write(first)) return;
    for (const StreamRequest& m : input) {
      if (!stream->Write(m)) return;
    }
    if (half_close) stream->WritesDone();
  });
  StreamRun run;
  for (StreamResponse r; stream->Read(&r);) Collect(r, &run);
  writer.join();
  run.status = stream->Finish();
  return run;
}

// A stream opened by hand (its open written), for tests that act while it
// runs.
struct OpenedStream {
  OpenedStream(ServerProcess& server, const StreamOpen& open,
               std::chrono::seconds limit = std::chrono::seconds(90))
      : stub(v1::VideoClassifier::NewStub(server.Channel())) {
    context.set_deadline(std::chrono::system_clock::now() + limit);
    stream = stub->ClassifyStream(&context);
    StreamRequest first;
    *first.mutable_open() = open;
    opened = stream->Write(first);
  }
  std::unique_ptr<v1::VideoClassifier::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<StreamRequest, StreamResponse>> stream;
  bool opened = false;
};

// A raw stream; every window answered unless `real_time`.
StreamOpen RawOpen(const std::string& model, int stride = 0, bool real_time = false) {
  StreamOpen open;
  open.set_model_name(model);
  open.set_input(StreamOpen::RAW_RGB);
  open.set_stride_frames(stride);
  open.set_top_k(3);
  open.set_every_window(!real_time);
  return open;
}

void ExpectStatus(const grpc::Status& s, grpc::StatusCode code, const std::string& fragment) {
  EXPECT_EQ(s.error_code(), code) << s.error_message();
  EXPECT_NE(s.error_message().find(fragment), std::string::npos) << s.error_message();
}

// The top classes of `frames` (kT crops, T x H x W x 3) sent as one clip.
v1::ClassifyResponse ClassifyFrames(ServerProcess& server, const std::string& model,
                                    const std::string& frames) {
  v1::ClassifyRequest request;
  request.set_model_name(model);
  request.set_top_k(3);
  v1::Tensor* clip = request.mutable_clip();
  clip->set_dtype(v1::UINT8);
  for (int64_t d : {kT, kSide, kSide, 3}) clip->add_shape(d);
  clip->set_data(frames);
  auto stub = v1::VideoClassifier::NewStub(server.Channel());
  grpc::ClientContext context;
  v1::ClassifyResponse response;
  const grpc::Status s = stub->Classify(&context, request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response;
}

template <typename Classes>
void ExpectSameClasses(const Classes& got, const v1::ClassifyResponse& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.classes_size()) << what;
  for (int i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].class_index(), want.classes(i).class_index()) << what;
    EXPECT_NEAR(got[i].probability(), want.classes(i).probability(), 1e-4) << what;
  }
}

class StreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string repo = absl::StrCat(dir_->path(), "/models");
    WriteTinyModel(repo, "tiny",
                   ModelConfigText("tiny", 8, kT, kSide, kSide, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 1000 }"),
                   3);
    // ~100 ms a batch whatever its size: windows queue up behind it.
    WriteScriptModel(repo, "slow",
                     ModelConfigText("slow", 8, kT, kSide, kSide, kClasses, ""),
                     SlowForward(40), kClasses);
    // Batches only of 8 (the delay is an hour): a window waits until the
    // test completes its batch, whatever the machine's speed.
    WriteTinyModel(repo, "held",
                   ModelConfigText("held", 8, kT, kSide, kSide, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 3600000000 }"),
                   4);
    // The same, one window a batch: the queue's order shows.
    WriteScriptModel(repo, "slow1",
                     ModelConfigText("slow1", 1, kT, kSide, kSide, kClasses, ""),
                     SlowForward(40), kClasses);
    http_port_ = FreePort();
    udp_port_ = FreePort();
    rtsp_port_ = FreePort();
    server_ = ServerProcess::Start(
                  {"--model-repository", repo, "--max-streams", "5",
                   "--stream-idle-timeout-seconds", "2",
                   "--stream-source-timeout-seconds", "2", "--video-max-bytes",
                   "2000000", "--video-max-side", "1024", "--stream-source-prefix",
                   absl::StrCat("file://", dir_->path(), "/"), "--stream-source-prefix",
                   absl::StrCat("http://127.0.0.1:", http_port_, "/"),
                   "--stream-source-prefix", absl::StrCat("udp://127.0.0.1:", udp_port_),
                   "--stream-source-prefix", absl::StrCat("rtsp://127.0.0.1:", rtsp_port_, "/")})
                  .release();
    ASSERT_NE(server_, nullptr);
    const std::string d = dir_->path();
    // 100 frames at 25 fps, a keyframe every 25, no B-frames (as cameras).
    RunOrFail(absl::StrCat(
        "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=25 "
        "-t 4 -c:v libx264 -pix_fmt yuv420p -g 25 -bf 0 ", d, "/a.mp4"));
    RunOrFail(absl::StrCat("ffmpeg -nostdin -loglevel error -y -i ", d,
                           "/a.mp4 -c copy -bsf:v h264_mp4toannexb -f h264 ", d, "/a.h264"));
    RunOrFail(absl::StrCat("ffmpeg -nostdin -loglevel error -y -i ", d,
                           "/a.mp4 -c copy -f mpegts ", d, "/a.ts"));
    RunOrFail(absl::StrCat("ffmpeg -nostdin -loglevel error -y -i ", d,
                           "/a.mp4 -c copy -movflags frag_keyframe+empty_moov -f mp4 ",
                           d, "/a.fmp4"));
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->Wait(), 0);
    }
    delete server_;
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static std::string Path(const std::string& name) {
    return absl::StrCat(dir_->path(), "/", name);
  }
  // A series' value; 0 before it exists (a model's stream series appear
  // with its first stream).
  double Metric(const std::string& series) {
    return std::max(0.0, MetricValue(server_->ScrapeMetrics(), series));
  }
  void ExpectStillServing() {
    StreamOpen open = RawOpen("tiny");
    std::vector<StreamRequest> frames;
    for (int i = 0; i < kT; ++i) frames.push_back(FrameMessage(RawFrame(i), kRawSide));
    StreamRun run = RunStream(*server_, open, frames);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    EXPECT_EQ(run.windows.size(), 1u);
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  static int http_port_;
  static int udp_port_;
  static int rtsp_port_;
};

TempDir* StreamTest::dir_ = nullptr;
ServerProcess* StreamTest::server_ = nullptr;
int StreamTest::http_port_ = 0;
int StreamTest::udp_port_ = 0;
int StreamTest::rtsp_port_ = 0;

TEST_F(StreamTest, RawFramesAreWindowedLikeTheSameFramesSentAsClips) {
  std::vector<std::string> frames;
  std::vector<StreamRequest> input;
  for (int i = 0; i < 10; ++i) {
    frames.push_back(RawFrame(i));
    input.push_back(FrameMessage(frames.back(), kRawSide));
  }
  StreamRun run = RunStream(*server_, RawOpen("tiny", /*stride=*/2), input);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_TRUE(run.started);
  EXPECT_EQ(run.info.model_name(), "tiny");
  EXPECT_EQ(run.info.window_frames(), kT);
  EXPECT_EQ(run.info.stride_frames(), 2);
  EXPECT_EQ(run.info.crop_height(), kSide);
  // Windows 0..3 over frames [0,3], [2,5], [4,7], [6,9].
  ASSERT_EQ(run.windows.size(), 4u);
  for (int w = 0; w < 4; ++w) {
    const v1::WindowResult& r = run.windows[w];
    EXPECT_EQ(r.number(), w);
    EXPECT_EQ(r.first_frame(), 2 * w);
    EXPECT_EQ(r.last_frame(), 2 * w + 3);
    // Raw frames without timestamps are 40 ms apart.
    EXPECT_EQ(r.first_pts_us(), 80000 * w);
    EXPECT_EQ(r.last_pts_us(), 80000 * w + 120000);
    EXPECT_GT(r.latency_us(), 0);
    EXPECT_GE(r.timings().batch_size(), 1);
    std::string clip;
    for (int f = 2 * w; f < 2 * w + kT; ++f) clip += CentreCrop(frames[f]);
    ExpectSameClasses(r.classes(), ClassifyFrames(*server_, "tiny", clip),
                      absl::StrCat("window ", w));
  }
  EXPECT_TRUE(run.events.empty());
}

TEST_F(StreamTest, FrameStepAndTargetFpsChooseTheFramesOfAWindow) {
  std::vector<std::string> frames;
  std::vector<StreamRequest> input;
  for (int i = 0; i < 12; ++i) {
    frames.push_back(RawFrame(i));
    input.push_back(FrameMessage(frames.back(), kRawSide, 1000000 + 40000 * i));
  }
  // Every 3rd frame: 0, 3, 6, 9.
  StreamOpen open = RawOpen("tiny");
  open.set_frame_step(3);
  StreamRun run = RunStream(*server_, open, input);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.windows.size(), 1u);
  EXPECT_EQ(run.windows[0].first_frame(), 0);
  EXPECT_EQ(run.windows[0].last_frame(), 9);
  EXPECT_EQ(run.windows[0].first_pts_us(), 1000000);
  EXPECT_EQ(run.windows[0].last_pts_us(), 1360000);
  std::string clip;
  for (int f : {0, 3, 6, 9}) clip += CentreCrop(frames[f]);
  ExpectSameClasses(run.windows[0].classes(), ClassifyFrames(*server_, "tiny", clip),
                    "frame_step 3");
  // 12.5 fps of a 25 fps stream, by timestamp: every other frame.
  open = RawOpen("tiny");
  open.set_target_fps(12.5);
  run = RunStream(*server_, open, input);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.windows.size(), 1u);
  EXPECT_EQ(run.windows[0].first_frame(), 0);
  EXPECT_EQ(run.windows[0].last_frame(), 6);
  clip.clear();
  for (int f : {0, 2, 4, 6}) clip += CentreCrop(frames[f]);
  ExpectSameClasses(run.windows[0].classes(), ClassifyFrames(*server_, "tiny", clip),
                    "target_fps 12.5");
}

TEST_F(StreamTest, PushedH264IsClassifiedLikeTheSameVideoUploaded) {
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_input(StreamOpen::H264);
  open.set_top_k(3);
  open.set_every_window(true);
  // Pieces that split NAL units and start codes anywhere.
  StreamRun run = RunStream(*server_, open, Chunks(ReadFile(Path("a.h264")), 777));
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.windows.size(), 25u);
  for (int w = 0; w < 25; ++w) {
    EXPECT_EQ(run.windows[w].number(), w);
    EXPECT_EQ(run.windows[w].first_frame(), 4 * w);
    EXPECT_EQ(run.windows[w].last_frame(), 4 * w + 3);
  }
  // The same frames of the same file, uploaded and sampled by stride.
  const std::string mp4 = ReadFile(Path("a.mp4"));
  for (int w : {0, 13, 24}) {
    v1::ClassifyRequest request;
    request.set_model_name("tiny");
    request.set_top_k(3);
    request.mutable_video()->set_data(mp4);
    v1::VideoSampling* s = request.mutable_video()->mutable_sampling();
    s->set_mode(v1::VideoSampling::STRIDE);
    s->set_start_seconds(4 * w / 25.0);
    auto stub = v1::VideoClassifier::NewStub(server_->Channel());
    grpc::ClientContext context;
    v1::ClassifyResponse response;
    ASSERT_TRUE(stub->Classify(&context, request, &response).ok());
    ASSERT_EQ(response.video().frame_indices(0), 4 * w);
    ExpectSameClasses(run.windows[w].classes(), response, absl::StrCat("window ", w));
  }
  EXPECT_TRUE(run.events.empty());
}

TEST_F(StreamTest, ContainersCarryTheirTimestamps) {
  for (const auto& [file, input] :
       {std::pair<std::string, StreamOpen::Input>{"a.ts", StreamOpen::MPEGTS},
        {"a.fmp4", StreamOpen::FMP4}}) {
    SCOPED_TRACE(file);
    StreamOpen open;
    open.set_model_name("tiny");
    open.set_input(input);
    open.set_every_window(true);
    StreamRun run = RunStream(*server_, open, Chunks(ReadFile(Path(file)), 5000));
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.windows.size(), 25u);
    for (int w = 1; w < 25; ++w) {
      // 4 frames of 40 ms between window starts, on the container's clock.
      EXPECT_EQ(run.windows[w].first_pts_us() - run.windows[w - 1].first_pts_us(), 160000);
      EXPECT_EQ(run.windows[w].last_pts_us() - run.windows[w].first_pts_us(), 120000);
    }
  }
}

TEST_F(StreamTest, DamagedInputIsSkippedToTheNextKeyframeAndReported) {
  std::string bytes = ReadFile(Path("a.ts"));
  // Lose 30 transport packets (188 bytes each) a little past the middle:
  // frames up to the next keyframe are lost; the stream goes on.
  bytes.erase(bytes.size() / 2, 188 * 30);
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_input(StreamOpen::MPEGTS);
  open.set_every_window(true);
  StreamRun run = RunStream(*server_, open, Chunks(bytes, 4096));
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  const int64_t lost = run.Events(StreamEvent::DECODE_ERRORS_SKIPPED);
  EXPECT_GT(lost, 0);
  EXPECT_LT(lost, 30) << "only up to the next keyframe (25 frames apart)";
  ASSERT_FALSE(run.windows.empty());
  EXPECT_GE(run.windows.back().last_frame(), 90) << "windows after the damage";
  for (size_t w = 1; w < run.windows.size(); ++w) {
    EXPECT_EQ(run.windows[w].number(), run.windows[w - 1].number() + 1);
  }
  EXPECT_GE(Metric("clipserve_stream_frames_lost_total{model=\"tiny\",version=\"1\"}"),
            static_cast<double>(lost));
}

TEST_F(StreamTest, BadStreamsGetPreciseErrorsAndTheServerKeepsServing) {
  // Data before the open.
  {
    auto stub = v1::VideoClassifier::NewStub(server_->Channel());
    grpc::ClientContext context;
    auto stream = stub->ClassifyStream(&context);
    stream->Write(DataMessage("xyz"));
    stream->WritesDone();
    for (StreamResponse r; stream->Read(&r);) {
    }
    ExpectStatus(stream->Finish(), grpc::StatusCode::INVALID_ARGUMENT,
                 "first message must be open");
  }
  StreamOpen open = RawOpen("nope");
  ExpectStatus(RunStream(*server_, open, {}).status, grpc::StatusCode::NOT_FOUND, "nope");
  open = RawOpen("tiny");
  open.set_window_frames(5);
  ExpectStatus(RunStream(*server_, open, {}).status, grpc::StatusCode::INVALID_ARGUMENT,
               "takes 4 frames");
  open = RawOpen("tiny");
  open.set_source_url(absl::StrCat("file://", dir_->path(), "/a.ts"));
  ExpectStatus(RunStream(*server_, open, {}).status, grpc::StatusCode::INVALID_ARGUMENT,
               "exactly one of input");
  open = RawOpen("tiny");
  open.set_priority(9);
  ExpectStatus(RunStream(*server_, open, {}).status, grpc::StatusCode::INVALID_ARGUMENT,
               "priority 9");
  open = RawOpen("tiny");
  open.set_frame_step(2);
  open.set_target_fps(5);
  ExpectStatus(RunStream(*server_, open, {}).status, grpc::StatusCode::INVALID_ARGUMENT,
               "not both");
  // Sources outside the prefixes, or climbing out of one.
  for (const std::string& url :
       {std::string("file:///etc/passwd"),
        absl::StrCat("file://", dir_->path(), "/../x.ts"),
        std::string("rtsp://camera.example/door"),
        absl::StrCat("udp://127.0.0.1:", udp_port_ + 1)}) {
    StreamOpen pull;
    pull.set_model_name("tiny");
    pull.set_source_url(url);
    ExpectStatus(RunStream(*server_, pull, {}).status, grpc::StatusCode::PERMISSION_DENIED,
                 "not under a prefix");
  }
  // A frame in an encoded stream; data in a raw one; bad frames.
  open.Clear();
  open.set_model_name("tiny");
  open.set_input(StreamOpen::H264);
  ExpectStatus(RunStream(*server_, open, {FrameMessage(RawFrame(0), kRawSide)}).status,
               grpc::StatusCode::INVALID_ARGUMENT, "not frames");
  ExpectStatus(RunStream(*server_, RawOpen("tiny"), {DataMessage("abc")}).status,
               grpc::StatusCode::INVALID_ARGUMENT, "not data");
  ExpectStatus(RunStream(*server_, RawOpen("tiny"), {FrameMessage("abc", 2)}).status,
               grpc::StatusCode::INVALID_ARGUMENT, "has 3 bytes; a 2x2 RGB frame has 12");
  {
    StreamRequest wide;
    wide.mutable_frame()->set_width(1100);
    wide.mutable_frame()->set_height(2);
    wide.mutable_frame()->set_rgb(std::string(1100 * 2 * 3, 'a'));
    ExpectStatus(RunStream(*server_, RawOpen("tiny"), {wide}).status,
                 grpc::StatusCode::INVALID_ARGUMENT, "1100x2; frames must be 1x1 to 1024x1024");
  }
  // A second open, an empty message, and one data message over
  // --video-max-bytes (2000000 here).
  {
    StreamRequest again;
    *again.mutable_open() = RawOpen("tiny");
    ExpectStatus(RunStream(*server_, RawOpen("tiny"), {again}).status,
                 grpc::StatusCode::INVALID_ARGUMENT, "open may only be a stream's first message");
    ExpectStatus(RunStream(*server_, RawOpen("tiny"), {StreamRequest()}).status,
                 grpc::StatusCode::INVALID_ARGUMENT, "holds no frame or data");
    ExpectStatus(RunStream(*server_, open, {DataMessage(std::string(2100000, '\0'))}).status,
                 grpc::StatusCode::INVALID_ARGUMENT,
                 "a data message has 2100000 bytes; at most 2000000");
  }
  // Input messages after the open of a stream the server pulls.
  {
    StreamOpen pull;
    pull.set_model_name("tiny");
    pull.set_source_url(absl::StrCat("file://", dir_->path(), "/a.ts"));
    ExpectStatus(RunStream(*server_, pull, {DataMessage("abc")}).status,
                 grpc::StatusCode::INVALID_ARGUMENT,
                 "a stream with a source_url takes no messages after its open");
  }
  // Bytes that are no H.264 at all.
  std::mt19937 rng(7);
  std::string junk(300000, '\0');
  for (char& c : junk) c = static_cast<char>(rng() & 0xff);
  ExpectStatus(RunStream(*server_, open, Chunks(junk, 100000)).status,
               grpc::StatusCode::INVALID_ARGUMENT,
               "could not decode video: no frame in the stream's first 300000 bytes");
  // A real H.264 stream declared as H.265.
  open.set_input(StreamOpen::HEVC);
  ExpectStatus(RunStream(*server_, open, Chunks(ReadFile(Path("a.h264")), 4096)).status,
               grpc::StatusCode::INVALID_ARGUMENT, "is it hevc?");
  ExpectStillServing();
  EXPECT_GE(Metric("clipserve_streams_ended_total{code=\"INVALID_ARGUMENT\"}"), 14);
}

TEST_F(StreamTest, StreamsBeyondMaxStreamsAreRefusedUntilOneEnds) {
  // Five streams open (--max-streams 5), each holding its open.
  auto stub = v1::VideoClassifier::NewStub(server_->Channel());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<StreamRequest, StreamResponse>>>
      streams;
  for (int i = 0; i < 5; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->ClassifyStream(contexts.back().get()));
    StreamRequest open;
    *open.mutable_open() = RawOpen("tiny");
    ASSERT_TRUE(streams.back()->Write(open));
    StreamResponse started;
    ASSERT_TRUE(streams.back()->Read(&started));
    ASSERT_TRUE(started.has_started());
  }
  ExpectStatus(RunStream(*server_, RawOpen("tiny"), {}).status,
               grpc::StatusCode::RESOURCE_EXHAUSTED, "5 streams open, its limit (--max-streams)");
  EXPECT_EQ(Metric("clipserve_streams_active{model=\"tiny\",version=\"1\"}"), 5);
  for (auto& s : streams) {
    s->WritesDone();
    for (StreamResponse r; s->Read(&r);) {
    }
    EXPECT_TRUE(s->Finish().ok());
  }
  ExpectStillServing();
}

TEST_F(StreamTest, AStreamWithoutInputEndsAfterTheIdleTimeout) {
  const auto start = std::chrono::steady_clock::now();
  StreamRun run = RunStream(*server_, RawOpen("tiny"), {}, /*half_close=*/false);
  ExpectStatus(run.status, grpc::StatusCode::DEADLINE_EXCEEDED,
               "no input for 2 s (--stream-idle-timeout-seconds)");
  EXPECT_TRUE(run.started);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1900));
}

TEST_F(StreamTest, FreshestWindowWinsWhenTheModelFallsBehind) {
  const std::string superseded =
      "clipserve_stream_windows_total{model=\"held\",outcome=\"superseded\",version=\"1\"}";
  const double superseded_before = Metric(superseded);
  // 10 windows of a real-time stream on a model whose batch cannot form
  // until the test completes it: each window is still queued when the next
  // one is ready, and is replaced by it.
  std::vector<StreamRequest> input;
  for (int i = 0; i < 40; ++i) input.push_back(FrameMessage(RawFrame(i % 3), kRawSide));
  auto running = std::async(std::launch::async, [&] {
    return RunStream(*server_, RawOpen("held", 0, /*real_time=*/true), input);
  });
  ASSERT_EQ(server_->WaitForMetric(superseded, superseded_before + 9), superseded_before + 9);
  // The freshest took the place of the others: one window queued.
  EXPECT_EQ(Metric("clipserve_queue_depth{model=\"held\",version=\"1\"}"), 1);
  // Seven clips more (over KServe: a batch mixes protocols) complete it.
  InferResult fill =
      Infer(server_->Channel(), InferRequest("held", 7, kT, kSide, kSide, 5));
  ASSERT_TRUE(fill.status.ok()) << fill.status.error_message();
  EXPECT_EQ(Param(fill.response, "batch_size"), 8);
  StreamRun run = running.get();
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.windows.size(), 1u);
  EXPECT_EQ(run.windows[0].number(), 9) << "the freshest window is answered";
  EXPECT_EQ(run.windows[0].timings().batch_size(), 8);
  EXPECT_EQ(run.Events(StreamEvent::WINDOWS_DROPPED), 9);
  EXPECT_EQ(Metric(superseded) - superseded_before, 9);
}

TEST_F(StreamTest, EveryWindowAnswersAllBySlowingItsInput) {
  std::vector<StreamRequest> input;
  for (int i = 0; i < 40; ++i) input.push_back(FrameMessage(RawFrame(i % 3), kRawSide));
  StreamOpen open = RawOpen("slow");
  open.set_every_window(true);
  StreamRun run = RunStream(*server_, open, input);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.windows.size(), 10u);
  for (int w = 0; w < 10; ++w) EXPECT_EQ(run.windows[w].number(), w);
  EXPECT_TRUE(run.events.empty());
}

TEST_F(StreamTest, ManyStreamsShareBatchesAndNoneStarves) {
  // Four streams push 25 windows each as fast as they can (every window
  // answered); a fifth, real-time one starts after them with a single
  // window. Windows of different streams share the slow model's batches,
  // and the late window waits behind at most 4 windows of each (their
  // every_window bound), not behind the ~100 they push in all.
  std::vector<StreamRequest> input;
  for (int i = 0; i < 100; ++i) {
    input.push_back(FrameMessage(std::string(kSide * kSide * 3, static_cast<char>(i)), kSide));
  }
  std::vector<std::future<StreamRun>> floods;
  for (int s = 0; s < 4; ++s) {
    floods.push_back(std::async(std::launch::async, [&] {
      return RunStream(*server_, RawOpen("slow"), input);
    }));
  }
  // Once the floods are under way (windows computed), the late stream.
  server_->WaitForMetric("clipserve_batch_executions_total{model=\"slow\",version=\"1\"}",
                         2);
  StreamRun late = RunStream(*server_, RawOpen("slow", 0, /*real_time=*/true),
                             std::vector<StreamRequest>(input.begin(), input.begin() + kT));
  ASSERT_TRUE(late.status.ok()) << late.status.error_message();
  ASSERT_EQ(late.windows.size(), 1u);
  // From when the late window reached the server (its answer's arrival less
  // its latency) to its answer, count the flood windows answered: at most
  // the 4 x 4 in flight when it came, and 7 sharing its batch. Counted by
  // order, not time (steady_clock is the machine's monotonic clock, the
  // server's too).
  const auto arrived =
      late.window_read[0] - std::chrono::microseconds(late.windows[0].latency_us());
  int max_batch = 0;
  int answered_meanwhile = 0;
  for (auto& f : floods) {
    StreamRun run = f.get();
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    EXPECT_EQ(run.windows.size(), 25u);
    for (const auto& w : run.windows) max_batch = std::max(max_batch, w.timings().batch_size());
    for (const auto& t : run.window_read) {
      answered_meanwhile += t > arrived && t < late.window_read[0];
    }
  }
  EXPECT_GT(max_batch, 1) << "windows of several streams in one batch";
  EXPECT_LE(answered_meanwhile, 4 * 4 + 7)
      << "the late stream's window waited behind more than the floods' bound";
}

TEST_F(StreamTest, AnUrgentStreamOvertakesTheQueuedWindowsOfALessUrgentOne) {
  // A least-urgent stream keeps four windows in flight on a model that
  // runs one window a batch; an urgent stream's window, sent once three of
  // them wait, goes ahead of them: it waits for at most the batch running,
  // not for the three queued before it.
  std::vector<StreamRequest> input;
  for (int i = 0; i < 40; ++i) {
    input.push_back(FrameMessage(std::string(kSide * kSide * 3, static_cast<char>(i)), kSide));
  }
  StreamOpen background = RawOpen("slow1");
  background.set_priority(3);
  auto flood = std::async(std::launch::async,
                          [&] { return RunStream(*server_, background, input); });
  ASSERT_GE(server_->WaitForMetric("clipserve_queue_depth{model=\"slow1\",version=\"1\"}", 3),
            3);
  StreamOpen urgent = RawOpen("slow1");
  urgent.set_priority(1);
  StreamRun run = RunStream(*server_, urgent,
                            std::vector<StreamRequest>(input.begin(), input.begin() + kT));
  StreamRun rest = flood.get();
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_EQ(run.windows.size(), 1u);
  ASSERT_EQ(rest.windows.size(), 10u);
  // Background windows answered while the urgent one waited (from when its
  // last frame reached the server, by its own latency, to its answer): the
  // one computing when it came (two if a batch ended just then), not the
  // three queued ahead of it. Counted by order, not time: compute times
  // vary with the machine's load. (steady_clock is the machine's monotonic
  // clock, the server's too.)
  const auto arrived =
      run.window_read[0] - std::chrono::microseconds(run.windows[0].latency_us());
  int overtaken_by = 0;
  for (const auto& t : rest.window_read) {
    overtaken_by += t > arrived && t < run.window_read[0];
  }
  EXPECT_LE(overtaken_by, 2) << "waited behind queued windows of lower priority";
}

TEST_F(StreamTest, AClientThatDoesNotReadHasItsAnswersBeyondTheBoundDroppedAndCounted) {
  // Stride 1: every frame after the third completes a window, ~3000
  // answers while the client reads none of them.
  const double classified_before = Metric(
      "clipserve_stream_windows_total{model=\"tiny\",outcome=\"classified\",version=\"1\"}");
  const double dropped_before = Metric(
      "clipserve_stream_windows_total{model=\"tiny\",outcome=\"answer_dropped\",version=\"1\"}");
  // A small receive window, as a slow reader over a slow link has: the
  // server's writes stop after a few answers.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  auto stub = v1::VideoClassifier::NewStub(grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  auto stream = stub->ClassifyStream(&context);
  StreamRequest open;
  *open.mutable_open() = RawOpen("tiny", /*stride=*/1);
  ASSERT_TRUE(stream->Write(open));
  const StreamRequest frame = FrameMessage(std::string(kSide * kSide * 3, 'x'), kSide);
  const int kFrames = 3003;
  for (int i = 0; i < kFrames; ++i) ASSERT_TRUE(stream->Write(frame));
  stream->WritesDone();
  const std::string classified_series =
      "clipserve_stream_windows_total{model=\"tiny\",outcome=\"classified\",version=\"1\"}";
  const std::string dropped_series =
      "clipserve_stream_windows_total{model=\"tiny\",outcome=\"answer_dropped\",version=\"1\"}";
  // Every window is computed before the client reads a thing (polled on
  // the metrics, bounded).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    const std::string scrape = server_->ScrapeMetrics();
    const double done = std::max(0.0, MetricValue(scrape, classified_series)) -
                        classified_before +
                        std::max(0.0, MetricValue(scrape, dropped_series)) - dropped_before;
    if (done >= kFrames - kT + 1) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << done;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  StreamRun run;
  for (StreamResponse r; stream->Read(&r);) Collect(r, &run);
  ASSERT_TRUE(stream->Finish().ok());
  const int64_t lost = run.Events(StreamEvent::ANSWERS_DROPPED);
  EXPECT_GT(lost, 0);
  EXPECT_EQ(static_cast<int64_t>(run.windows.size()) + lost, kFrames - kT + 1);
  EXPECT_EQ(Metric(dropped_series) - dropped_before, static_cast<double>(lost));
}

TEST_F(StreamTest, AReplayedFileIsPulledInRealTime) {
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_source_url(absl::StrCat("file://", dir_->path(), "/a.ts"));
  open.set_every_window(true);
  const auto start = std::chrono::steady_clock::now();
  StreamRun run = RunStream(*server_, open, {}, /*half_close=*/false);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_EQ(run.windows.size(), 25u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(3500))
      << "4 s of video at real time";
  // As fast as it decodes.
  open.mutable_source()->set_replay_speed(-1);
  const auto fast_start = std::chrono::steady_clock::now();
  run = RunStream(*server_, open, {}, /*half_close=*/false);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  EXPECT_EQ(run.windows.size(), 25u);
  EXPECT_LT(std::chrono::steady_clock::now() - fast_start, std::chrono::milliseconds(3500));
}

// `ffmpeg -re` serving `seconds` of MPEG-TS to one client on `url`.
std::string LiveSourceCommand(double seconds, const std::string& output) {
  return absl::StrCat(
      "ffmpeg -nostdin -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=25 -t ",
      seconds, " -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -bf 0 "
      "-pix_fmt yuv420p -f mpegts ", output);
}

TEST_F(StreamTest, AnHttpSourceThatDropsIsReconnectedAndFramesGoOn) {
  const std::string url = absl::StrCat("http://127.0.0.1:", http_port_, "/live.ts");
  auto serve = [&] {
    return std::async(std::launch::async, [&] {
      return ServerProcess::RunCommand(LiveSourceCommand(3, absl::StrCat("-listen 1 ", url)));
    });
  };
  auto first = serve();
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_source_url(url);
  open.set_every_window(true);
  open.mutable_source()->set_max_reconnects(-1);
  OpenedStream s(*server_, open);
  ASSERT_TRUE(s.opened);
  auto& stream = s.stream;
  StreamRun run;
  std::future<ServerProcess::Output> second;
  int64_t windows_at_reconnect = -1;
  for (StreamResponse r; stream->Read(&r);) {
    Collect(r, &run);
    if (r.has_event() && r.event().kind() == StreamEvent::SOURCE_LOST && !second.valid()) {
      // The first source ended (ffmpeg exits after 3 s): serve it again.
      EXPECT_EQ(first.get().exit_code, 0);
      second = serve();
    }
    if (r.has_event() && r.event().kind() == StreamEvent::SOURCE_RECONNECTED) {
      windows_at_reconnect = static_cast<int64_t>(run.windows.size());
    }
    // Ten windows after the reconnect are enough: end the stream.
    if (windows_at_reconnect >= 0 &&
        static_cast<int64_t>(run.windows.size()) == windows_at_reconnect + 10) {
      stream->WritesDone();
    }
  }
  const grpc::Status status = stream->Finish();
  if (second.valid()) second.wait();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GE(windows_at_reconnect, 5) << "windows of the first connection";
  EXPECT_GE(run.Events(StreamEvent::SOURCE_LOST), 1);
  EXPECT_EQ(run.Events(StreamEvent::SOURCE_RECONNECTED), 1);
  ASSERT_GE(run.windows.size(), static_cast<size_t>(windows_at_reconnect + 10));
  // Numbers go on across the reconnect.
  for (size_t w = 1; w < run.windows.size(); ++w) {
    EXPECT_EQ(run.windows[w].number(), run.windows[w - 1].number() + 1);
    EXPECT_GT(run.windows[w].first_frame(), run.windows[w - 1].last_frame() - kT);
  }
  EXPECT_GE(Metric("clipserve_stream_reconnects_total{model=\"tiny\",version=\"1\"}"), 1);
}

TEST_F(StreamTest, AnHlsPlaylistIsPulledAndItsSegmentsMustBeUnderAPrefixToo) {
  const std::string dir = Path("hls");
  RunOrFail(absl::StrCat("mkdir -p ", dir, " && ffmpeg -nostdin -loglevel error -y -i ",
                         Path("a.mp4"), " -c copy -f hls -hls_time 1 -hls_list_size 0 ",
                         "-hls_segment_filename ", dir, "/seg%d.ts ", dir, "/live.m3u8"));
  // A playlist whose segment lies on a host the server may not pull from.
  const int elsewhere = FreePort();
  std::ofstream(dir + "/evil.m3u8")
      << "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n"
      << "http://127.0.0.1:" << elsewhere << "/seg0.ts\n#EXT-X-ENDLIST\n";
  // Served on the port under --stream-source-prefix, for at most 60 s.
  const std::string serve = absl::StrCat("python3 -m http.server ", http_port_,
                                         " --bind 127.0.0.1 --directory ", dir);
  auto web = std::async(std::launch::async, [&] {
    return ServerProcess::RunCommand(absl::StrCat("timeout 60 ", serve));
  });
  const std::string base = absl::StrCat("http://127.0.0.1:", http_port_, "/");
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_every_window(true);
  open.mutable_source()->set_max_reconnects(-1);  // until the web server is up
  {
    open.set_source_url(base + "live.m3u8");
    OpenedStream s(*server_, open, std::chrono::seconds(60));
    ASSERT_TRUE(s.opened);
    auto& stream = s.stream;
    StreamRun run;
    for (StreamResponse r; stream->Read(&r);) {
      Collect(r, &run);
      if (run.windows.size() == 25) stream->WritesDone();
    }
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    ASSERT_GE(run.windows.size(), 25u);
    for (int w = 0; w < 25; ++w) EXPECT_EQ(run.windows[w].first_frame(), 4 * w);
  }
  open.set_source_url(base + "evil.m3u8");
  ExpectStatus(RunStream(*server_, open, {}, /*half_close=*/false).status,
               grpc::StatusCode::PERMISSION_DENIED,
               absl::StrCat("led to http://127.0.0.1:", elsewhere, "/seg0.ts"));
  ServerProcess::RunCommand(absl::StrCat("pkill -f '", serve, "'"));
  web.wait();
}

TEST_F(StreamTest, AnRtspCameraOverTcpIsPulledAndReconnectedWhenItDrops) {
  // A camera (tests/integration/rtsp_server.py: RTSP, RTP interleaved on
  // TCP) that sends 3 s of live H.264, drops the connection, and takes the
  // next one.
  const std::string camera =
      absl::StrCat("python3 ", CLIPSERVE_RTSP_TEST_SERVER, " --port ", rtsp_port_, " --file ",
                   Path("a.h264"), " --seconds 3");
  auto running = std::async(std::launch::async, [&] {
    return ServerProcess::RunCommand(absl::StrCat("timeout 60 ", camera));
  });
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_source_url(absl::StrCat("rtsp://127.0.0.1:", rtsp_port_, "/live"));
  open.set_every_window(true);
  open.mutable_source()->set_rtsp_tcp(true);
  open.mutable_source()->set_max_reconnects(-1);  // until the camera listens
  OpenedStream s(*server_, open);
  ASSERT_TRUE(s.opened);
  StreamRun run;
  int64_t windows_at_reconnect = -1;
  for (StreamResponse r; s.stream->Read(&r);) {
    Collect(r, &run);
    if (r.has_event() && r.event().kind() == StreamEvent::SOURCE_RECONNECTED &&
        windows_at_reconnect < 0 && !run.windows.empty()) {
      windows_at_reconnect = static_cast<int64_t>(run.windows.size());
    }
    if (windows_at_reconnect >= 0 &&
        static_cast<int64_t>(run.windows.size()) == windows_at_reconnect + 10) {
      s.stream->WritesDone();
    }
  }
  const grpc::Status status = s.stream->Finish();
  ServerProcess::RunCommand(absl::StrCat("pkill -f '", camera, "'"));
  running.wait();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GE(windows_at_reconnect, 10) << "3 s of 25 fps before the drop: ~18 windows";
  EXPECT_GE(run.Events(StreamEvent::SOURCE_LOST), 1);
  for (size_t w = 1; w < run.windows.size(); ++w) {
    EXPECT_EQ(run.windows[w].number(), run.windows[w - 1].number() + 1);
  }
  EXPECT_GT(run.windows.back().first_frame(), 75) << "frame numbers went on";
}

TEST_F(StreamTest, AUdpSourceIsPulled) {
  StreamOpen open;
  open.set_model_name("tiny");
  open.set_source_url(absl::StrCat("udp://127.0.0.1:", udp_port_));
  open.set_every_window(true);
  open.mutable_source()->set_max_reconnects(-1);
  OpenedStream s(*server_, open);
  ASSERT_TRUE(s.opened);
  auto& stream = s.stream;
  StreamResponse started;
  ASSERT_TRUE(stream->Read(&started));
  ASSERT_TRUE(started.has_started());
  // The server listens now; send it 6 s of video.
  auto source = std::async(std::launch::async, [&] {
    return ServerProcess::RunCommand(LiveSourceCommand(
        6, absl::StrCat("'udp://127.0.0.1:", udp_port_, "?pkt_size=1316'")));
  });
  StreamRun run;
  for (StreamResponse r; stream->Read(&r);) {
    Collect(r, &run);
    if (run.windows.size() == 10) stream->WritesDone();
  }
  const grpc::Status status = stream->Finish();
  source.wait();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(run.windows.size(), 10u);
}

TEST(StreamShutdownTest, SigtermAnswersQueuedWindowsThenEndsStreamsUnavailable) {
  TempDir dir;
  const std::string repo = absl::StrCat(dir.path(), "/models");
  WriteScriptModel(repo, "slow", ModelConfigText("slow", 1, kT, kSide, kSide, kClasses, ""),
                   SlowForward(60), kClasses);
  auto server = ServerProcess::Start({"--model-repository", repo});
  ASSERT_NE(server, nullptr);
  auto stub = v1::VideoClassifier::NewStub(server->Channel());
  grpc::ClientContext context;
  auto stream = stub->ClassifyStream(&context);
  StreamRequest open;
  *open.mutable_open() = RawOpen("slow");
  ASSERT_TRUE(stream->Write(open));
  StreamResponse started;
  ASSERT_TRUE(stream->Read(&started));
  // Three windows, one computing and two queued when the signal comes.
  for (int i = 0; i < 3 * kT; ++i) {
    ASSERT_TRUE(stream->Write(FrameMessage(RawFrame(i), kRawSide)));
  }
  // Every frame decoded: windows 1 and 2 are queued or running behind
  // window 0 (each takes ~150 ms).
  ASSERT_GE(server->WaitForMetric("clipserve_stream_frames_total{model=\"slow\",version=\"1\"}",
                                  3 * kT),
            3 * kT);
  server->Signal(SIGTERM);
  StreamRun run;
  for (StreamResponse r; stream->Read(&r);) Collect(r, &run);
  ExpectStatus(stream->Finish(), grpc::StatusCode::UNAVAILABLE, "shutting down");
  EXPECT_EQ(run.windows.size(), 3u) << "every queued window is answered";
  EXPECT_TRUE(run.events.empty());
  EXPECT_EQ(server->Wait(), 0);
}

// A stream that named no version follows the model's lifecycle: a swapped
// version takes over its windows (MODEL_CHANGED), and an unloaded model drops
// them, reported, while the stream stays open.
TEST(StreamLifecycleTest, AStreamFollowsItsModelAcrossASwapAndAnUnload) {
  TempDir dir;
  const std::string repo = absl::StrCat(dir.path(), "/models");
  WriteTinyModel(repo, "tiny",
                 ModelConfigText("tiny", 8, kT, kSide, kSide, kClasses,
                                 "dynamic_batching { max_queue_delay_microseconds: 1000 }"),
                 3);
  auto server = ServerProcess::Start({"--model-repository", repo, "--model-control-mode",
                                      "explicit", "--load-model", "tiny",
                                      "--repository-api-open"});
  ASSERT_NE(server, nullptr);
  auto repository = inference::GRPCInferenceService::NewStub(server->Channel());
  OpenedStream s(*server, RawOpen("tiny"));
  ASSERT_TRUE(s.opened);
  StreamRun run;
  int frame = 0;
  // Writes one window's frames, then reads until `done` holds.
  auto window = [&](const std::function<bool()>& done) {
    for (int i = 0; i < kT; ++i) {
      ASSERT_TRUE(s.stream->Write(FrameMessage(RawFrame(frame++), kRawSide)));
    }
    StreamResponse r;
    while (!done() && s.stream->Read(&r)) Collect(r, &run);
  };
  window([&] { return run.windows.size() == 1; });

  std::filesystem::copy(absl::StrCat(repo, "/tiny/1"), absl::StrCat(repo, "/tiny/2"),
                        std::filesystem::copy_options::recursive);
  {
    grpc::ClientContext context;
    inference::RepositoryModelLoadRequest load;
    load.set_model_name("tiny");
    inference::RepositoryModelLoadResponse ignored;
    ASSERT_TRUE(repository->RepositoryModelLoad(&context, load, &ignored).ok());
  }
  window([&] { return run.windows.size() == 2; });
  ASSERT_EQ(run.Events(StreamEvent::MODEL_CHANGED), 1);
  EXPECT_NE(run.events.back().message().find("version 2"), std::string::npos)
      << run.events.back().message();
  // Version 1 was freed although the stream that used it is still open.
  EXPECT_TRUE(server->WaitForLog("model 'tiny' version 1 freed", std::chrono::seconds(10)));

  {
    grpc::ClientContext context;
    inference::RepositoryModelUnloadRequest unload;
    unload.set_model_name("tiny");
    inference::RepositoryModelUnloadResponse ignored;
    ASSERT_TRUE(repository->RepositoryModelUnload(&context, unload, &ignored).ok());
  }
  window([&] { return run.Events(StreamEvent::WINDOWS_DROPPED) == 1; });
  EXPECT_EQ(run.Events(StreamEvent::MODEL_CHANGED), 2);
  EXPECT_EQ(run.windows.size(), 2u);
  s.stream->WritesDone();
  for (StreamResponse r; s.stream->Read(&r);) Collect(r, &run);
  EXPECT_TRUE(s.stream->Finish().ok());
  bool unloaded_reason = false;
  for (const StreamEvent& e : run.events) {
    unloaded_reason |= e.kind() == StreamEvent::WINDOWS_DROPPED &&
                       e.message().find("not served now") != std::string::npos;
  }
  EXPECT_TRUE(unloaded_reason);
}

}  // namespace
}  // namespace clipserve::testing
