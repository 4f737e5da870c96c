// Faults inside the server, against the real binary: a model that raises on
// one request of a shared batch, and a model whose batch hangs past the
// watchdog (--model-hang-seconds). In both, the server keeps serving
// well-formed requests and answers every accepted request exactly once,
// which the metrics (requests by code, batch executions, hangs) witness.
// Faults from clients (disconnects, readers that never read, idle
// connections, floods) are in tests/python/fault_test.py.
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 6;

// A random clip with pixels below 200, or one with every pixel 255 (the
// models below raise or hang on a 255).
v1::ClassifyRequest Request(const std::string& model, uint64_t seed,
                            bool saturated = false) {
  v1::ClassifyRequest r;
  r.set_model_name(model);
  r.set_return_logits(true);
  *r.mutable_clip() = client::RandomClip(v1::UINT8, kT, kH, kW, seed);
  std::string* data = r.mutable_clip()->mutable_data();
  for (char& c : *data) {
    c = saturated ? static_cast<char>(255)
                  : static_cast<char>(static_cast<unsigned char>(c) % 200);
  }
  return r;
}

// The batch of eight forms at once (max_batch_size 8, a 10 s delay it never
// reaches), from both protocols: the even requests are KServe ModelInfer
// calls, the odd ones Classify calls. Two of them (one of each protocol)
// make the model raise: only those two get INTERNAL with the model's
// message; the six others, which shared their batch, are answered as if
// alone, with the logits the model gives them run directly. The metrics
// count one batch of 8 and eight single runs, 6 OK and 2 INTERNAL, nothing
// else, and nothing is left in flight.
TEST(FaultTest, ModelRaisingOnOneRequestFailsOnlyThatRequestOfTheBatchOnBothProtocols) {
  TempDir repo;
  WriteScriptModel(repo.path(), "failing",
                   ModelConfigText("failing", 8, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 10000000 }"),
                   FailingForward(), kClasses);
  auto server = ServerProcess::Start({"--model-repository", repo.path()});
  ASSERT_NE(server, nullptr);
  const auto raises = [](int i) { return i == 2 || i == 5; };
  std::vector<std::future<CallResult>> classify(8);
  std::vector<std::future<InferResult>> infer(8);
  for (int i = 0; i < 8; ++i) {
    const v1::ClassifyRequest r = Request("failing", i, raises(i));
    if (i % 2 == 1) {
      classify[i] = CallAsync(server->Channel(), r);
      continue;
    }
    inference::ModelInferRequest k = InferRequest("failing", 1, kT, kH, kW, 0);
    *k.mutable_raw_input_contents(0) = r.clip().data();
    infer[i] = InferAsync(server->Channel(), k);
  }
  const std::string direct_path = repo.path() + "/failing/1/model.pt";
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i, i % 2 == 1 ? " (Classify)" : " (KServe)"));
    grpc::Status status;
    std::vector<float> logits;
    int64_t batch_size = 0;
    if (i % 2 == 1) {
      const CallResult r = classify[i].get();
      status = r.status;
      logits.assign(r.response.logits().begin(), r.response.logits().end());
      batch_size = r.response.timings().batch_size();
    } else {
      const InferResult r = infer[i].get();
      status = r.status;
      if (status.ok()) {
        const std::string& raw = r.response.raw_output_contents(0);
        logits.resize(raw.size() / sizeof(float));
        std::memcpy(logits.data(), raw.data(), logits.size() * sizeof(float));
        batch_size = r.response.parameters().at("batch_size").int64_param();
      }
    }
    if (raises(i)) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
      EXPECT_NE(status.error_message().find("boom: saturated pixels"), std::string::npos)
          << status.error_message();
      continue;
    }
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::vector<float> want = DirectModelLogits(
        direct_path, Request("failing", i).clip().data(), kT, kH, kW);
    ASSERT_EQ(logits.size(), want.size());
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_NEAR(logits[k], want[k], 1e-4 * (1 + std::abs(want[k])));
    }
    EXPECT_EQ(batch_size, 1) << "answered by its run alone";
  }
  const std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "failing", "OK")), 6);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "failing", "INTERNAL")), 2);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_executions_total", "failing")), 9);
  // Eight runs of one clip (the retries), and one batch of eight.
  const std::string sizes = "clipserve_batch_size_bucket{model=\"failing\",version=\"1\",le=";
  EXPECT_EQ(MetricValue(scrape, sizes + "\"1\"}"), 8);
  EXPECT_EQ(MetricValue(scrape, sizes + "\"7\"}"), 8);
  EXPECT_EQ(MetricValue(scrape, sizes + "\"8\"}"), 9);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_inflight_requests", "failing")), 0);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_model_ready", "failing")), 1);
  EXPECT_EQ(Health(server->Channel(), ""), HealthCheckResponse::SERVING);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// A batch that runs past --model-hang-seconds: the model turns unready,
// its health and the server's NOT_SERVING, the hang is counted and logged
// once; meanwhile the model's other instance and the other model keep
// answering, and the stuck request is answered (once) when its batch ends.
TEST(FaultTest, HungBatchTurnsServerNotServingWhileOtherInstancesServe) {
  TempDir repo;
  WriteScriptModel(repo.path(), "hang",
                   ModelConfigText("hang", 1, kT, kH, kW, kClasses,
                                   "instance_group [ { kind: KIND_CPU count: 2 } ]"),
                   HangingForward(6000), kClasses);
  WriteTinyModel(repo.path(), "tiny",
                 ModelConfigText("tiny", 4, kT, kH, kW, kClasses, ""), 7);
  auto server = ServerProcess::Start(
      {"--model-repository", repo.path(), "--model-hang-seconds", "0.5"});
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Health(server->Channel(), ""), HealthCheckResponse::SERVING);

  std::future<CallResult> stuck = CallAsync(server->Channel(), Request("hang", 1, true));
  EXPECT_EQ(server->WaitForMetric(Series("clipserve_model_hangs_total", "hang"), 1,
                                  milliseconds(60000)),
            1);
  ASSERT_EQ(stuck.wait_for(seconds(0)), std::future_status::timeout)
      << "the batch ended before the watchdog saw it: make HangingForward longer";
  EXPECT_TRUE(server->WaitForLog("hung: a batch has run for", seconds(10)));
  EXPECT_EQ(Health(server->Channel(), ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(server->Channel(), "hang"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(server->Channel(), "tiny"), HealthCheckResponse::SERVING);
  std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_model_ready", "hang")), 0);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_model_ready", "tiny")), 1);

  // Still serving: the hung model's other instance, and the other model.
  for (const char* model : {"hang", "tiny"}) {
    const CallResult r = CallAsync(server->Channel(), Request(model, 2)).get();
    EXPECT_TRUE(r.status.ok()) << model << ": " << r.status.error_message();
    EXPECT_EQ(r.response.logits_size(), kClasses);
  }
  const CallResult late = stuck.get();
  EXPECT_TRUE(late.status.ok()) << late.status.error_message();

  scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_model_hangs_total", "hang")), 1)
      << "counted once";
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "hang", "OK")), 2);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_inflight_requests", "hang")), 0);
  EXPECT_EQ(Health(server->Channel(), ""), HealthCheckResponse::NOT_SERVING)
      << "stays out of service until restarted";
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing
