// Models with free (-1) dimensions, against the real binary: clips of any
// T x H x W are served, each batched only with clips of its own shape, and
// answered with what the model gives that clip run alone.
#include <signal.h>

#include <chrono>
#include <cmath>
#include <future>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

constexpr int kClasses = 6;

struct Shape {
  int t, h, w;
};

// "anysize" (input dims [3, -1, -1, -1]) forms a batch only when two clips
// of one shape wait (max_batch_size 2, a one-hour max_queue_delay): so the
// batches below are exactly the pairs of equal shapes, whatever the order
// the four requests arrive in. Each answer equals the model run directly on
// its clip alone, each says it shared a batch of 2, and the metrics count
// two batches of two.
TEST(FreeDimensionsTest, ClipsOfAnySizeAreBatchedOnlyWithTheirOwnShape) {
  TempDir repo;
  std::string config = ModelConfigText("anysize", 2, 4, 16, 16, kClasses,
                                       "dynamic_batching { max_queue_delay_microseconds: 3600000000 }");
  const std::string fixed = "dims: [3, 4, 16, 16]";
  config.replace(config.find(fixed), fixed.size(), "dims: [3, -1, -1, -1]");
  WriteTinyModel(repo.path(), "anysize", config, 11);
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start({"--model-repository", repo.path()});
  ASSERT_NE(server, nullptr);

  const Shape shapes[] = {{4, 16, 16}, {6, 24, 20}, {4, 16, 16}, {6, 24, 20}};
  std::vector<v1::ClassifyRequest> requests;
  std::vector<std::future<CallResult>> calls;
  for (int i = 0; i < 4; ++i) {
    requests.push_back(ClipRequest("anysize", shapes[i].t, shapes[i].h, shapes[i].w, 20 + i));
    requests.back().set_return_logits(true);
    calls.push_back(CallAsync(server->Channel(), requests.back()));
  }
  const std::string model_path = repo.path() + "/anysize/1/model.pt";
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(absl::StrCat("clip ", i, ": ", shapes[i].t, "x", shapes[i].h, "x", shapes[i].w));
    const CallResult r = calls[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.timings().batch_size(), 2);
    const std::vector<float> want =
        DirectModelLogits(model_path, requests[i].clip().data(), shapes[i].t, shapes[i].h,
                          shapes[i].w);
    ASSERT_EQ(r.response.logits_size(), static_cast<int>(want.size()));
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_NEAR(r.response.logits(k), want[k], 1e-4 * (1 + std::abs(want[k])));
    }
  }
  const std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_executions_total", "anysize")), 2);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_size_sum", "anysize")), 4);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_requests_total", "anysize", "OK")), 4);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing
