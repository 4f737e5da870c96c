// Draining on SIGTERM, against the real binary, made deterministic with a
// video source that never answers: while a decoder reads from it, the drain
// cannot finish, so a test can look at the server mid-drain for as long as
// it needs, then release it. (ShutdownTest.SigtermAnswersEveryRequestInFlight
// in classify_test.cc covers requests queued for a model.)
#include <signal.h>

#include <chrono>
#include <future>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"
#include "tests/integration/video_sources.h"

namespace clipserve::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The clip size of StartTinyVideoServer's "tiny".
constexpr int kT = 4, kSide = 32;

// A server for "tiny" whose one decoder reads videos by URI from `source`.
std::unique_ptr<ServerProcess> StartWithSource(const TempDir& dir, const SilentSource& source,
                                               const std::string& drain_seconds) {
  return StartTinyVideoServer(dir, {"--video-uri-prefix", source.prefix(),
                                    "--video-uri-timeout-seconds", "600", "--decode-threads",
                                    "1", "--drain-timeout-seconds", drain_seconds});
}

// Health of `service` once it is NOT_SERVING (polled for up to 30 s): the
// health service turns just after the drain is logged.
HealthCheckResponse::ServingStatus HealthOnceDraining(const ServerProcess& server,
                                                      const std::string& service) {
  const auto until = std::chrono::steady_clock::now() + seconds(30);
  HealthCheckResponse::ServingStatus s = Health(server.Channel(), service);
  while (s != HealthCheckResponse::NOT_SERVING && std::chrono::steady_clock::now() < until) {
    s = Health(server.Channel(), service);
  }
  return s;
}

// On SIGTERM: health turns NOT_SERVING for the server and for the model's
// own service name, new requests get UNAVAILABLE, a video that was waiting
// for the (held) decoder is still decoded and answered once the decoder is
// free, and a call still open after every queued request is answered (a
// KServe stream whose client never closes it) is given
// --drain-timeout-seconds, then cut off; the process exits 0.
TEST(ShutdownTest, DrainFinishesWaitingVideosAndCutsOffOpenCallsAtTheDrainTimeout) {
  TempDir dir;
  SilentSource source;
  std::unique_ptr<ServerProcess> server = StartWithSource(dir, source, "2");
  ASSERT_NE(server, nullptr);
  const v1::ClassifyRequest upload =
      UploadRequest("tiny", MakeVideo(dir.path(), "a.mp4", "160x120", 1, 25, kX264Args));

  std::future<CallResult> held = CallAsync(server->Channel(), UriRequest("tiny", source.prefix() + "a.mp4"));
  ASSERT_TRUE(source.Accept(seconds(60))) << "the decoder never read the source";
  std::future<CallResult> waiting = CallAsync(server->Channel(), upload);
  ASSERT_EQ(server->WaitForMetric("clipserve_decode_queue_depth", 1), 1);
  // A KServe stream, answered once and left open by its client.
  auto stub = inference::GRPCInferenceService::NewStub(server->Channel());
  grpc::ClientContext stream_context;
  auto stream = stub->ModelStreamInfer(&stream_context);
  ASSERT_TRUE(stream->Write(InferRequest("tiny", 1, kT, kSide, kSide, 1)));
  inference::ModelStreamInferResponse first;
  ASSERT_TRUE(stream->Read(&first));
  EXPECT_EQ(first.error_message(), "");

  const auto signalled = std::chrono::steady_clock::now();
  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForLog("draining", milliseconds(30000)));
  EXPECT_EQ(HealthOnceDraining(*server, ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(HealthOnceDraining(*server, "tiny"), HealthCheckResponse::NOT_SERVING);
  ExpectError(Call(server->Channel(), ClipRequest("tiny", kT, kSide, kSide, 2)),
              grpc::StatusCode::UNAVAILABLE, "server is shutting down");
  EXPECT_EQ(waiting.wait_for(milliseconds(0)), std::future_status::timeout)
      << "the waiting video was answered while the decoder was still held";

  source.Release();
  ExpectError(held.get(), grpc::StatusCode::INVALID_ARGUMENT, "could not read video");
  CallResult decoded = waiting.get();
  EXPECT_TRUE(decoded.status.ok()) << decoded.status.error_message();
  EXPECT_GT(decoded.response.classes_size(), 0);

  inference::ModelStreamInferResponse more;
  EXPECT_FALSE(stream->Read(&more)) << "the server sent more on a stream with no request";
  const auto cut_off = std::chrono::steady_clock::now();
  const grpc::Status ended = stream->Finish();
  EXPECT_FALSE(ended.ok()) << "the stream was cut off, not finished";
  EXPECT_GE(cut_off - signalled, seconds(2)) << "cut off before --drain-timeout-seconds";
  EXPECT_EQ(server->Wait(), 0);
  EXPECT_NE(server->Log().find("all queued requests answered"), std::string::npos);
}

// A second signal while draining exits at once with status 1, without
// waiting for the decoder (held here for as long as the test runs).
TEST(ShutdownTest, ASecondSignalExitsAtOnceWithStatus1) {
  TempDir dir;
  SilentSource source;
  std::unique_ptr<ServerProcess> server = StartWithSource(dir, source, "30");
  ASSERT_NE(server, nullptr);
  std::future<CallResult> held = CallAsync(server->Channel(), UriRequest("tiny", source.prefix() + "a.mp4"));
  ASSERT_TRUE(source.Accept(seconds(60))) << "the decoder never read the source";
  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForLog("draining", milliseconds(30000)));
  server->Signal(SIGINT);
  EXPECT_EQ(server->Wait(), 1);
  EXPECT_NE(server->Log().find("received Interrupt again: exiting without draining"),
            std::string::npos)
      << server->Log();
  EXPECT_FALSE(held.get().status.ok());
}

}  // namespace
}  // namespace clipserve::testing
