// --grpc-max-concurrent-streams on the real binary: a connection's calls
// beyond the limit wait on the client's side (HTTP/2), never reaching the
// server, while other connections' calls go through.
#include <signal.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 5;

// "four" forms a batch only from four waiting requests (max_batch_size 4,
// a one-hour delay). With a limit of 2 calls a connection: connection A
// opens three calls, the third held by HTTP/2 on the client; connection B
// opens two. The first batch is therefore A's first two and B's two, never
// A's third, which reaches the server only once a call of A has ended, and
// then waits alone.
TEST(ConnectionLimitsTest, CallsBeyondTheStreamLimitWaitOnTheClientNotTheServer) {
  TempDir repo;
  WriteTinyModel(repo.path(), "four",
                 ModelConfigText("four", 4, kT, kH, kW, kClasses,
                                 "dynamic_batching { max_queue_delay_microseconds: 3600000000 }"),
                 3);
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      {"--model-repository", repo.path(), "--grpc-max-concurrent-streams", "2"});
  ASSERT_NE(server, nullptr);
  const std::string depth = Series("clipserve_queue_depth", "four");
  const auto a = server->Channel();  // one connection each
  const auto b = server->Channel();

  std::future<CallResult> a1 = CallAsync(a, ClipRequest("four", kT, kH, kW, 1));
  std::future<CallResult> a2 = CallAsync(a, ClipRequest("four", kT, kH, kW, 2));
  ASSERT_EQ(server->WaitForMetric(depth, 2), 2);
  // Held by the client: A has two calls open.
  std::future<CallResult> a3 =
      CallAsync(a, ClipRequest("four", kT, kH, kW, 3), std::chrono::seconds(600));
  std::future<CallResult> b1 = CallAsync(b, ClipRequest("four", kT, kH, kW, 4));
  ASSERT_EQ(server->WaitForMetric(depth, 3), 3);
  std::future<CallResult> b2 = CallAsync(b, ClipRequest("four", kT, kH, kW, 5));
  for (std::future<CallResult>* f : {&a1, &a2, &b1, &b2}) {
    const CallResult r = f->get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.timings().batch_size(), 4);
  }
  // A's third call now reaches the server, and waits for a batch alone.
  EXPECT_EQ(server->WaitForMetric(depth, 1), 1);
  EXPECT_EQ(a3.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  std::string scrape = server->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_batch_executions_total", "four")), 1);
  EXPECT_EQ(MetricValue(scrape, Series("clipserve_inflight_requests", "four")), 1);
  // Three more from B complete its batch.
  std::vector<std::future<CallResult>> more;
  for (int i = 0; i < 3; ++i) {
    more.push_back(CallAsync(server->Channel(), ClipRequest("four", kT, kH, kW, 10 + i)));
  }
  const CallResult r3 = a3.get();
  ASSERT_TRUE(r3.status.ok()) << r3.status.error_message();
  EXPECT_EQ(r3.response.timings().batch_size(), 4);
  for (auto& f : more) EXPECT_TRUE(f.get().status.ok());
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// The binary's connection settings, as its startup log states them: the
// documented defaults (architecture.md, "Connections"), and each flag
// turning its setting off or changing it.
TEST(ConnectionLimitsTest, StartupLogStatesTheConnectionSettingsAndTheirDefaults) {
  TempDir repo;
  WriteTinyModel(repo.path(), "m", ModelConfigText("m", 4, kT, kH, kW, kClasses, ""), 3);
  struct Case {
    std::vector<std::string> flags;
    std::string line;  // in the log
  };
  const std::vector<Case> cases = {
      {{},
       "connections: max age 120 s (grace none), keepalive ping after 60 s quiet, timeout "
       "20 s, client pings at least 10 s apart (also without calls), calls per connection "
       "1000\n"},
      {{"--grpc-max-connection-age", "0", "--grpc-max-connection-age-grace", "5",
        "--grpc-keepalive-time", "0", "--grpc-keepalive-min-ping-interval", "2",
        "--grpc-keepalive-permit-without-calls", "false", "--grpc-max-concurrent-streams", "0"},
       "connections: max age never (grace 5 s), keepalive off, client pings at least 2 s "
       "apart (only during calls), calls per connection unlimited\n"},
      {{"--grpc-max-connection-age", "30", "--grpc-keepalive-time", "15",
        "--grpc-keepalive-timeout", "3"},
       "connections: max age 30 s (grace none), keepalive ping after 15 s quiet, timeout 3 s, "},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--model-repository", repo.path()};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    std::unique_ptr<ServerProcess> server = ServerProcess::Start(args);
    ASSERT_NE(server, nullptr);
    EXPECT_NE(server->Log().find(c.line), std::string::npos) << server->Log();
    server->Signal(SIGTERM);
    EXPECT_EQ(server->Wait(), 0);
  }
}

}  // namespace
}  // namespace clipserve::testing
