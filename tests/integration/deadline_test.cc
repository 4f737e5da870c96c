// Deadlines reach the batcher, against the real binary. The model "pair"
// forms a batch only when two requests wait (max_batch_size 2 and a
// one-hour max_queue_delay), so nothing but the server's own deadline check
// can take a lone request out of its queue: no timing of the model, no
// sleeps.
#include <signal.h>

#include <chrono>
#include <future>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

using std::chrono::milliseconds;

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 5;

// A request that expires while it waits for its batch is answered
// DEADLINE_EXCEEDED by the server at its deadline, counted, and never enters
// a batch: with the client's gRPC deadline on our API, and with KServe's
// `timeout` parameter (the client's own deadline there is a minute away,
// so the answer, and its message, are the server's). Then two requests fill
// a batch of exactly those two: the metrics count one batch of 2 and the
// two expired requests, nothing else.
TEST(DeadlineTest, AnExpiredRequestIsDroppedBeforeComputeAndCounted) {
  TempDir repo;
  WriteTinyModel(repo.path(), "pair",
                 ModelConfigText("pair", 2, kT, kH, kW, kClasses,
                                 "dynamic_batching { max_queue_delay_microseconds: 3600000000 }"),
                 5);
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start({"--model-repository", repo.path()});
  ASSERT_NE(server, nullptr);
  const std::string requests = "clipserve_requests_total";
  const std::string expired = Series(requests, "pair", "DEADLINE_EXCEEDED");

  // Our API: the client's deadline, sent with the call, is the server's.
  CallResult late = Call(server->Channel(), ClipRequest("pair", kT, kH, kW, 1), milliseconds(300));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << late.status.error_message();
  // The server took it out of the queue itself (a batch never formed).
  EXPECT_EQ(server->WaitForMetric(expired, 1), 1);

  // KServe: the request's timeout parameter, in microseconds.
  inference::ModelInferRequest hurried = InferRequest("pair", 1, kT, kH, kW, 2);
  (*hurried.mutable_parameters())["timeout"].set_int64_param(300000);
  InferResult timed_out = Infer(server->Channel(), hurried);
  EXPECT_EQ(timed_out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << timed_out.status.error_message();
  EXPECT_NE(timed_out.status.error_message().find("deadline exceeded after waiting"),
            std::string::npos)
      << timed_out.status.error_message();
  EXPECT_NE(timed_out.status.error_message().find("ms in the queue"), std::string::npos)
      << timed_out.status.error_message();
  EXPECT_EQ(server->WaitForMetric(expired, 2), 2);

  std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_queue_depth", "pair")), 0);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_inflight_requests", "pair")), 0);
  EXPECT_LE(MetricValue(scrape, Series("clipserve_batch_executions_total", "pair")), 0);

  // A full batch: these two, and nothing left over from the expired ones.
  std::future<CallResult> a = CallAsync(server->Channel(), ClipRequest("pair", kT, kH, kW, 3));
  std::future<CallResult> b = CallAsync(server->Channel(), ClipRequest("pair", kT, kH, kW, 4));
  for (std::future<CallResult>* f : {&a, &b}) {
    CallResult r = f->get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.timings().batch_size(), 2);
  }
  scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_executions_total", "pair")), 1);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_size_count", "pair")), 1);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_size_sum", "pair")), 2);
  EXPECT_EQ(MetricValue(scrape, Series(requests, "pair", "OK")), 2);
  EXPECT_EQ(MetricValue(scrape, expired), 2);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing
