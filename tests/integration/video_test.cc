// End to end with encoded video: the real clipserve binary decodes, samples
// and crops videos made here with the ffmpeg command-line tool.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"
#include "tests/integration/video_sources.h"

namespace clipserve::testing {
namespace {

constexpr int kT = 4, kSide = 32, kClasses = 10;

CallResult Classify(ServerProcess& server, const std::string& model,
                    const std::string& video_bytes,
                    const v1::VideoSampling* sampling = nullptr) {
  v1::ClassifyRequest request;
  request.set_model_name(model);
  request.set_top_k(3);
  request.mutable_video()->set_data(video_bytes);
  if (sampling != nullptr) *request.mutable_video()->mutable_sampling() = *sampling;
  return Call(server.Channel(), request);
}

class VideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string repo = absl::StrCat(dir_->path(), "/models");
    WriteTinyModel(repo, "tiny",
                   ModelConfigText("tiny", 4, kT, kSide, kSide, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 1000 }"),
                   3);
    // Native I3D without weights: random, reported untrained.
    std::filesystem::create_directories(absl::StrCat(repo, "/i3d-small"));
    std::ofstream(absl::StrCat(repo, "/i3d-small/config.pbtxt"))
        << "backend: \"i3d\"\nmax_batch_size: 2\n"
           "input { name: \"clip\" data_type: TYPE_FP32 dims: [3, 8, 64, 64] }\n"
           "output { name: \"logits\" data_type: TYPE_FP32 dims: [7] }\n";
    server_ = ServerProcess::Start({"--model-repository", repo, "--video-max-bytes",
                                    "2000000", "--decode-threads", "2"})
                  .release();
    ASSERT_NE(server_, nullptr);
    h264_ = MakeVideo(dir_->path(), "a.mp4", "320x240", 2, 25,
                      kX264Args);
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

  void ExpectStillServing() {
    CallResult r = Classify(*server_, "tiny", h264_);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  static std::string h264_;
};

TempDir* VideoTest::dir_ = nullptr;
ServerProcess* VideoTest::server_ = nullptr;
std::string VideoTest::h264_;

TEST_F(VideoTest, EncodedVideoEqualsItsFramesDecodedByTheClient) {
  CallResult served = Classify(*server_, "tiny", h264_);
  ASSERT_TRUE(served.status.ok()) << served.status.error_message();
  EXPECT_GT(served.response.timings().decode_us(), 0);
  EXPECT_EQ(served.response.classes_size(), 3);

  // The client decodes the same file the same way and sends frames: same answer.
  const std::string path = absl::StrCat(dir_->path(), "/a.mp4");
  ServerProcess::Output local = ServerProcess::RunCommand(absl::StrCat(
      CLIPSERVE_CLIENT_BINARY, " --server ", server_->address(),
      " --model tiny --top-k 1 --decode-local ", path));
  ASSERT_EQ(local.exit_code, 0) << local.text;
  EXPECT_NE(local.text.find(absl::StrCat(
                "class ", served.response.classes(0).class_index(), " ")),
            std::string::npos)
      << local.text;
  EXPECT_NE(local.text.find("decode 0.000 ms"), std::string::npos) << local.text;
}

TEST_F(VideoTest, SeveralContainersAndCodecs) {
  struct Case {
    std::string name, size, args;
    int fps;
  } cases[] = {
      {"portrait.mkv", "180x320", kX264Args, 30},
      {"mpeg4.avi", "320x240", "-c:v mpeg4", 12},
      {"mjpeg.avi", "200x150", "-c:v mjpeg -pix_fmt yuvj420p", 25},
      {"vp9.webm", "160x120", "-c:v libvpx-vp9 -b:v 200k", 24},
  };
  for (const Case& c : cases) {
    const std::string bytes = MakeVideo(dir_->path(), c.name, c.size, 1, c.fps, c.args);
    CallResult r = Classify(*server_, "tiny", bytes);
    EXPECT_TRUE(r.status.ok()) << c.name << ": " << r.status.error_message();
  }
}

// An AVI whose header promises more frames than it holds (cut short, like
// OpenCV's sample tree.avi: 444 declared, 68 there) is classified from the
// frames that are there, and the response says so.
TEST_F(VideoTest, FileEndingBeforeItsDeclaredFramesIsClassifiedAndSaysSo) {
  const std::string whole =
      MakeVideo(dir_->path(), "short.avi", "320x240", 4, 25, "-c:v mpeg4 -q:v 3");
  const std::string cut = whole.substr(0, whole.size() / 2);
  CallResult r = Classify(*server_, "tiny", cut);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.classes_size(), 3);
  const v1::SourceVideo& v = r.response.video();
  EXPECT_EQ(v.declared_frames(), 100);
  EXPECT_GT(v.frames(), 20);
  EXPECT_LT(v.frames(), 80);
  EXPECT_EQ(v.width(), 320);
  EXPECT_EQ(v.height(), 240);
  EXPECT_NEAR(v.fps(), 25, 0.01);
  ASSERT_EQ(v.frame_indices_size(), kT);
  EXPECT_LT(v.frame_indices(kT - 1), v.frames());
  // A whole file declares what it has.
  CallResult full = Classify(*server_, "tiny", whole);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  EXPECT_EQ(full.response.video().frames(), 100);
  EXPECT_EQ(full.response.video().declared_frames(), 100);
}

TEST_F(VideoTest, StrideSamplingAndItsLimits) {
  v1::VideoSampling s;
  s.set_mode(v1::VideoSampling::STRIDE);
  s.set_start_seconds(0.5);
  s.set_stride(5);
  CallResult ok = Classify(*server_, "tiny", h264_, &s);  // frames 12..27 of 50
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  s.set_start_seconds(1.8);  // frame 45 + 3 * 5 = 60 > 50 frames
  ExpectError(Classify(*server_, "tiny", h264_, &s), grpc::StatusCode::INVALID_ARGUMENT,
              "could not decode video");
  s.set_num_frames(kT + 1);
  ExpectError(Classify(*server_, "tiny", h264_, &s), grpc::StatusCode::INVALID_ARGUMENT,
              "model 'tiny' takes 4 frames");
  ExpectStillServing();
}

TEST_F(VideoTest, BadVideosGetClearErrorsAndTheServerKeepsServing) {
  std::string random(50000, '\0');
  for (size_t i = 0; i < random.size(); ++i) random[i] = static_cast<char>((i * 7919) >> 3);
  const std::string one_frame = MakeVideo(dir_->path(), "one.mp4", "64x64", 0.04, 25,
                                          "-frames:v 1 -c:v libx264 -pix_fmt yuv420p");
  const std::string truncated = h264_.substr(0, h264_.size() / 2);
  struct Case {
    std::string what, bytes, message;
  } cases[] = {
      {"zero-length", "", "could not decode video"},
      {"random bytes", random, "could not decode video"},
      {"truncated mp4", truncated, "could not decode video"},
      {"one frame", one_frame, "could not decode video"},
      {"over --video-max-bytes", std::string(2000001, 'x'), "could not decode video"},
  };
  for (const Case& c : cases) {
    CallResult r = Classify(*server_, "tiny", c.bytes);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.what << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.message), std::string::npos)
        << c.what << ": " << r.status.error_message();
    ExpectStillServing();
  }
}

TEST_F(VideoTest, ConcurrentVideosAreEachDecodedAndAnsweredAlike) {
  // Eight copies of one video at once, on two decoder threads: every one is
  // decoded (its own decode time) and gets the same answer as the others.
  std::vector<std::future<CallResult>> calls;
  for (int i = 0; i < 8; ++i) {
    calls.push_back(std::async(std::launch::async,
                               [] { return Classify(*server_, "tiny", h264_); }));
  }
  std::vector<CallResult> results;
  for (auto& c : calls) results.push_back(c.get());
  for (const CallResult& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_GT(r.response.timings().decode_us(), 0);
    ASSERT_EQ(r.response.classes_size(), 3);
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(r.response.classes(k).class_index(),
                results[0].response.classes(k).class_index());
      EXPECT_NEAR(r.response.classes(k).probability(),
                  results[0].response.classes(k).probability(), 1e-5);
    }
  }
}

TEST_F(VideoTest, BadSamplingIsRefusedBeforeDecoding) {
  v1::VideoSampling s;
  s.set_num_frames(-1);
  CallResult negative = Classify(*server_, "tiny", h264_, &s);
  EXPECT_EQ(negative.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(negative.status.error_message(),
            "video.sampling: num_frames, stride and start_seconds must not be negative");
  EXPECT_EQ(negative.response.timings().decode_us(), 0);
  v1::ClassifyRequest empty;
  empty.set_model_name("tiny");
  auto stub = v1::VideoClassifier::NewStub(server_->Channel());
  grpc::ClientContext context;
  v1::ClassifyResponse response;
  const grpc::Status none = stub->Classify(&context, empty, &response);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(none.error_message(), "request has no clip or video");
  ExpectStillServing();
}

TEST_F(VideoTest, NativeI3dWithoutWeightsIsServedAndReportedUntrained) {
  ServerProcess::Output meta = ServerProcess::RunCommand(absl::StrCat(
      CLIPSERVE_CLIENT_BINARY, " --server ", server_->address(),
      " --model i3d-small metadata"));
  ASSERT_EQ(meta.exit_code, 0) << meta.text;
  EXPECT_NE(meta.text.find("(i3d) UNTRAINED"), std::string::npos) << meta.text;
  EXPECT_NE(meta.text.find("[3, 8, 64, 64]"), std::string::npos) << meta.text;
  EXPECT_NE(server_->Log().find("RANDOM, UNTRAINED"), std::string::npos);

  CallResult r = Classify(*server_, "i3d-small", h264_);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  float sum = 0;
  for (const auto& c : r.response.classes()) sum += c.probability();
  EXPECT_GT(sum, 0);
  EXPECT_LE(sum, 1.0001);
}

// The README's main job: the built-in I3D (16 x 224 x 224, 400 classes)
// classifies a generated video through the command-line client.
// --decode-device cuda where FFmpeg finds no CUDA device (hidden here on any
// machine): videos still decode, on the CPU; one warning says why, and the
// metric counts each video.
TEST(DecodeDeviceTest, CudaWithoutADeviceDecodesOnTheCpuWarnsOnceAndCounts) {
  TempDir dir;
  const std::string repo = absl::StrCat(dir.path(), "/models");
  WriteTinyModel(repo, "tiny",
                 ModelConfigText("tiny", 4, kT, kSide, kSide, kClasses, ""), 3);
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--decode-device", "cuda"});
  unsetenv("CUDA_VISIBLE_DEVICES");
  ASSERT_NE(server, nullptr);
  const std::string video = MakeVideo(dir.path(), "a.mp4", "320x240", 1, 25,
                                      kX264Args);
  for (int i = 0; i < 2; ++i) {
    CallResult r = Classify(*server, "tiny", video);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.classes_size(), 3);
  }
  EXPECT_EQ(server->WaitForMetric("clipserve_decode_gpu_fallbacks_total", 2), 2);
  const std::string log = server->Log();
  const std::string warning = "--decode-device cuda: decoding on the CPU (";
  ASSERT_NE(log.find(warning), std::string::npos) << log;
  EXPECT_EQ(log.find(warning, log.find(warning) + 1), std::string::npos)
      << "warned more than once";
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

TEST(BuiltinModelTest, ClassifiesAGeneratedVideoOutOfTheBox) {
  TempDir dir;
  std::unique_ptr<ServerProcess> server = ServerProcess::Start({});
  ASSERT_NE(server, nullptr);
  MakeVideo(dir.path(), "demo.mp4", "640x360", 2, 25, kX264Args);
  ServerProcess::Output out = ServerProcess::RunCommand(
      absl::StrCat(CLIPSERVE_CLIENT_BINARY, " --server ", server->address(), " ",
                   dir.path(), "/demo.mp4"));
  ASSERT_EQ(out.exit_code, 0) << out.text;
  EXPECT_NE(out.text.find("model i3d version 1"), std::string::npos) << out.text;
  EXPECT_NE(out.text.find("  5. class"), std::string::npos) << out.text;
  EXPECT_NE(out.text.find("timings: decode"), std::string::npos) << out.text;
  EXPECT_NE(server->Log().find("UNTRAINED"), std::string::npos);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing

namespace clipserve::testing {
namespace {

CallResult ClassifyUri(ServerProcess& server, const std::string& uri,
                       const std::string& data = "") {
  v1::ClassifyRequest request;
  request.set_model_name("tiny");
  request.set_top_k(3);
  request.set_return_logits(true);
  request.mutable_video()->set_uri(uri);
  request.mutable_video()->set_data(data);
  return Call(server.Channel(), request);
}

// A video named by URI is read by the server under the prefixes it was
// given, and classified exactly as the same bytes uploaded; anything else
// is refused before a byte is read.
TEST(VideoUriTest, ReadsOnlyUnderItsPrefixesAndClassifiesAsTheBytes) {
  TempDir dir;
  const std::string allowed = absl::StrCat(dir.path(), "/allowed");
  std::filesystem::create_directories(allowed);
  const std::string bytes =
      MakeVideo(allowed, "a.mp4", "320x240", 2, 25, kX264Args);
  MakeVideo(dir.path(), "secret.mp4", "320x240", 2, 25, kX264Args);
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-uri-prefix",
       absl::StrCat("file://", allowed, "/")});
  ASSERT_NE(server, nullptr);

  CallResult by_uri = ClassifyUri(*server, absl::StrCat("file://", allowed, "/a.mp4"));
  ASSERT_TRUE(by_uri.status.ok()) << by_uri.status.error_message();
  v1::ClassifyRequest upload;
  upload.set_model_name("tiny");
  upload.set_return_logits(true);
  upload.mutable_video()->set_data(bytes);
  CallResult by_bytes = Call(server->Channel(), upload);
  ASSERT_TRUE(by_bytes.status.ok()) << by_bytes.status.error_message();
  ASSERT_EQ(by_uri.response.logits_size(), kClasses);
  for (int i = 0; i < kClasses; ++i) {
    EXPECT_EQ(by_uri.response.logits(i), by_bytes.response.logits(i)) << i;
  }
  EXPECT_EQ(by_uri.response.video().frames(), 50);

  for (const std::string& uri :
       {absl::StrCat("file://", dir.path(), "/secret.mp4"),
        absl::StrCat("file://", allowed, "/../secret.mp4"),
        absl::StrCat("file://", allowed), std::string("http://127.0.0.1:1/a.mp4"),
        std::string("/etc/passwd")}) {
    ExpectError(ClassifyUri(*server, uri), grpc::StatusCode::PERMISSION_DENIED,
                "is not under a prefix this server reads from");
  }
  CallResult missing = ClassifyUri(*server, absl::StrCat("file://", allowed, "/none.mp4"));
  ExpectError(missing, grpc::StatusCode::INVALID_ARGUMENT, "could not read video file://");
  ExpectError(missing, grpc::StatusCode::INVALID_ARGUMENT, "No such file or directory");
  CallResult both = ClassifyUri(*server, absl::StrCat("file://", allowed, "/a.mp4"), bytes);
  EXPECT_EQ(both.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(both.status.error_message(), "video: set data or uri, not both");
  // And it still serves.
  EXPECT_TRUE(ClassifyUri(*server, absl::StrCat("file://", allowed, "/a.mp4")).status.ok());
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// A source that accepts the connection and then sends nothing (a stalled
// server) holds a decoder only for --video-uri-timeout-seconds, even for a
// request with no deadline: it is refused, and the one decoder is free
// again for the next video.
TEST(VideoUriStallTest, AStalledSourceIsGivenUpAndTheDecoderServesOn) {
  TempDir dir;
  // Its connections wait in the backlog: connecting succeeds, no answer comes.
  SilentSource source;
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-uri-prefix", source.prefix(),
       "--video-uri-timeout-seconds", "1", "--decode-threads", "1"});
  ASSERT_NE(server, nullptr);
  const std::string bytes =
      MakeVideo(dir.path(), "a.mp4", "160x120", 1, 25, kX264Args);

  const auto start = std::chrono::steady_clock::now();
  CallResult stalled = ClassifyUri(*server, source.prefix() + "a.mp4");
  const auto took = std::chrono::steady_clock::now() - start;
  ExpectError(stalled, grpc::StatusCode::INVALID_ARGUMENT,
              "no video within 1000 ms (--video-uri-timeout-seconds)");
  EXPECT_LT(took, std::chrono::seconds(30)) << "given up at the timeout, not the client's deadline";
  // The one decoder is free: an uploaded video is decoded and classified.
  const v1::ClassifyRequest upload = UploadRequest("tiny", bytes);
  CallResult served = Call(server->Channel(), upload);
  EXPECT_TRUE(served.status.ok()) << served.status.error_message();
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// A burst of videos against one decoder thread (--decode-threads 1,
// --decode-queue-size 3). The decoder is held, deterministically, by a
// video read from a silent source; three uploads wait (the
// clipserve_decode_queue_depth gauge witnesses each), the fourth is refused
// with RESOURCE_EXHAUSTED. Of the three, one's deadline passes and one is
// cancelled while they wait: when the decoder is free, both are answered
// without being decoded, and only the third is decoded and classified. The
// server's own counts say so: a code for each, one decode.
TEST(DecodeQueueTest, ABurstPastTheQueueIsRefusedAndWaitingVideosAreCheckedBeforeDecoding) {
  TempDir dir;
  SilentSource source;
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-uri-prefix", source.prefix(),
       "--video-uri-timeout-seconds", "600", "--decode-threads", "1",
       "--decode-queue-size", "3"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(MetricValue(server->ScrapeMetrics(), "clipserve_decode_queue_capacity"), 3);
  const v1::ClassifyRequest upload = UploadRequest(
      "tiny", MakeVideo(dir.path(), "a.mp4", "160x120", 1, 25, kX264Args));
  const v1::ClassifyRequest by_uri = UriRequest("tiny", source.prefix() + "a.mp4");

  std::future<CallResult> held = CallAsync(server->Channel(), by_uri);
  ASSERT_TRUE(source.Accept(std::chrono::seconds(60))) << "the decoder never read the source";
  // Waits for a decoder; its deadline passes meanwhile.
  std::future<CallResult> late =
      CallAsync(server->Channel(), upload, std::chrono::milliseconds(1000));
  ASSERT_EQ(server->WaitForMetric("clipserve_decode_queue_depth", 1), 1);
  // The server had the call by now, so its deadline (the time it received
  // it plus the timeout the client sent, under 1 s) passes before this.
  const auto late_expired_on_server =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(1050);
  // Waits; its client cancels it.
  auto stub = v1::VideoClassifier::NewStub(server->Channel());
  grpc::ClientContext cancelled_context;
  v1::ClassifyResponse cancelled_response;
  std::promise<grpc::Status> cancelled_status;
  stub->async()->Classify(&cancelled_context, &upload, &cancelled_response,
                          [&cancelled_status](grpc::Status s) { cancelled_status.set_value(s); });
  ASSERT_EQ(server->WaitForMetric("clipserve_decode_queue_depth", 2), 2);
  // Waits, and is decoded in the end.
  std::future<CallResult> served = CallAsync(server->Channel(), upload);
  ASSERT_EQ(server->WaitForMetric("clipserve_decode_queue_depth", 3), 3);

  ExpectError(Call(server->Channel(), upload), grpc::StatusCode::RESOURCE_EXHAUSTED,
              "decode queue full: 3 videos wait for 1 decoder thread(s) "
              "(--decode-queue-size 3)");
  EXPECT_EQ(late.get().status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  cancelled_context.TryCancel();
  EXPECT_EQ(cancelled_status.get_future().get().error_code(), grpc::StatusCode::CANCELLED);

  // The client's deadline came first: the server's, which counts from when
  // it received the call, may still be ahead. Free the decoder only after
  // it, so that the server finds `late` expired (on a loaded machine the
  // call may have taken a while to reach it).
  std::this_thread::sleep_until(late_expired_on_server);
  source.Release();
  ExpectError(held.get(), grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("could not read video ", source.prefix(), "a.mp4"));
  CallResult ok = served.get();
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  // Answered in queue order: `served` last, so every count below is final.
  const std::string scrape = server->ScrapeMetrics();
  const std::string requests = "clipserve_requests_total";
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "OK")), 1);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "RESOURCE_EXHAUSTED")), 1);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "DEADLINE_EXCEEDED")), 1);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "CANCELLED")), 1);
  // Neither the late nor the cancelled video was decoded (the server may
  // learn of the cancellation, or pass the deadline, only as the decoder
  // takes the video up: then it stops at the first packet, unobserved);
  // the one read from the source never reached the decoder.
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_decode_duration_seconds_count", "tiny")), 1);
  EXPECT_GT(MetricValue(scrape, Series("clipserve_decode_duration_seconds_sum", "tiny")), 0);
  EXPECT_EQ(MetricValue(scrape, "clipserve_decode_queue_depth"), 0);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_inflight_requests", "tiny")), 0);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// Each video limit flag on the real binary: a video over it is refused with
// INVALID_ARGUMENT naming the limit, a message over --max-request-bytes
// gets gRPC's RESOURCE_EXHAUSTED before the server reads it, a video within
// them all is classified after each refusal, and the server counts what it
// answered.
TEST(VideoLimitFlagsTest, EachLimitRefusesWithItsMessageAndTheServerServesOn) {
  TempDir dir;
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-max-side", "200", "--video-max-frames", "40",
       "--video-max-seconds", "2", "--video-max-bytes", "100000",
       "--max-request-bytes", "200000", "--decode-threads", "1"});
  ASSERT_NE(server, nullptr);
  const std::string x264 = kX264Args;
  const std::string within = MakeVideo(dir.path(), "ok.mp4", "160x120", 1, 25, x264);
  ASSERT_LT(within.size(), 100000u);
  struct Case {
    std::string what, bytes, message;
  } cases[] = {
      {"--video-max-side", MakeVideo(dir.path(), "side.mp4", "320x240", 0.4, 25, x264),
       "could not decode video: resolution 320x240 is over the limit of 200x200"},
      {"--video-max-frames", MakeVideo(dir.path(), "frames.mp4", "64x64", 0.9, 50, x264),
       "could not decode video: the video declares 45 frames, over the limit of 40"},
      {"--video-max-seconds", MakeVideo(dir.path(), "seconds.mp4", "64x64", 3, 10, x264),
       "could not decode video: the video lasts 3.0 s (30 frames at 10 fps), over the "
       "limit of 2.0 s"},
      {"--video-max-bytes", std::string(150000, 'x'),
       "could not decode video: the input is 150000 bytes, over the limit of 100000"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ExpectError(Classify(*server, "tiny", c.bytes), grpc::StatusCode::INVALID_ARGUMENT,
                c.message);
    CallResult r = Classify(*server, "tiny", within);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  ExpectError(Classify(*server, "tiny", std::string(250000, 'x')),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "larger than max");
  CallResult r = Classify(*server, "tiny", within);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();

  const std::string scrape = server->ScrapeMetrics();
  const std::string requests = "clipserve_requests_total";
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "INVALID_ARGUMENT")), 4);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "tiny", "OK")), 5);
  // gRPC refused the oversized message: the server never saw a request.
  EXPECT_LE(MetricValue(scrape, Series(requests, "tiny", "RESOURCE_EXHAUSTED")), 0);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_decode_duration_seconds_count", "tiny")), 9);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// A decoder that stalls: --video-decode-timeout-seconds bounds each decode,
// whatever the video (here a limit no decode can meet, so every video
// stops at its first packet). Each is refused with INVALID_ARGUMENT naming
// the limit, the one decoder thread is free again at once, and requests
// that need no decoder are served meanwhile.
TEST(VideoDecodeTimeoutTest, ADecodePastTheLimitIsGivenUpAndTheDecoderServesOn) {
  TempDir dir;
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-decode-timeout-seconds", "0.000001",
       "--decode-threads", "1"});
  ASSERT_NE(server, nullptr);
  const std::string video =
      MakeVideo(dir.path(), "a.mp4", "160x120", 1, 25, kX264Args);
  v1::ClassifyRequest clip;
  clip.set_model_name("tiny");
  *clip.mutable_clip() = client::RandomClip(v1::UINT8, kT, kSide, kSide, 7);
  for (int i = 0; i < 3; ++i) {
    ExpectError(Classify(*server, "tiny", video), grpc::StatusCode::INVALID_ARGUMENT,
                "could not decode video: decoding took longer than the limit of 1e-06 s");
    CallResult r = Call(server->Channel(), clip);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  const std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "tiny", "INVALID_ARGUMENT")), 3);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "tiny", "OK")), 3);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_decode_duration_seconds_count", "tiny")), 3);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// approximate sampling, asked for per request, moves each sample to the
// nearest keyframe within its share of the video, and the answer says so.
TEST_F(VideoTest, ApproximateSamplingUsesNearbyKeyframesAndSaysWhich) {
  const std::string video = MakeVideo(dir_->path(), "k25.mp4", "160x120", 10, 25,
                                      "-c:v libx264 -pix_fmt yuv420p -g 25 -sc_threshold 0");
  v1::VideoSampling exact;
  CallResult e = Classify(*server_, "tiny", video, &exact);
  v1::VideoSampling approximate;
  approximate.set_approximate(true);
  CallResult a = Classify(*server_, "tiny", video, &approximate);
  ASSERT_TRUE(e.status.ok() && a.status.ok()) << a.status.error_message();
  // 4 samples of 250 frames: 31, 93, 156, 218 exactly; 62 frames apart, so
  // each share holds a keyframe (every 25th frame) and takes the nearest.
  ASSERT_EQ(e.response.video().frame_indices_size(), kT);
  EXPECT_EQ(e.response.video().frame_indices(0), 31);
  std::vector<int64_t> got(a.response.video().frame_indices().begin(),
                           a.response.video().frame_indices().end());
  EXPECT_EQ(got, (std::vector<int64_t>{25, 100, 150, 225}));
}

TEST_F(VideoTest, WithoutAPrefixNoUriIsRead) {
  const std::string path = absl::StrCat(dir_->path(), "/a.mp4");
  ExpectError(ClassifyUri(*server_, absl::StrCat("file://", path)),
              grpc::StatusCode::PERMISSION_DENIED, "this server reads videos from no URI");
  ExpectStillServing();
}

TEST(VideoUriTest, APrefixThatCouldMatchTooMuchStopsTheServerAtStart) {
  for (const char* prefix : {"https://a.example", "ftp://a.example/", "file://relative/",
                             "file:///srv/../etc/", "http://user@a.example/"}) {
    ServerProcess::Output out = ServerProcess::RunCommand(absl::StrCat(
        CLIPSERVE_BINARY, " --video-uri-prefix '", prefix, "' 2>&1"));
    EXPECT_EQ(out.exit_code, 64) << prefix << ": " << out.text;
    EXPECT_NE(out.text.find(absl::StrCat("video URI prefix \"", prefix, "\"")),
              std::string::npos)
        << out.text;
  }
}

}  // namespace
}  // namespace clipserve::testing
