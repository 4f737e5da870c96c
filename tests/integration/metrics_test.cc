// The metrics flags on the real binary: --latency-buckets sets the bounds of
// every duration histogram, and --allow-metrics false serves no endpoint at
// all (the port given stays closed) while requests are served as before.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 5;

// A loopback port nothing listens on (bound, then closed).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

bool Connects(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// Each duration histogram (request, queue, compute) has exactly the bounds
// given, plus +Inf, and the one request lands in them; the default bounds
// are gone.
TEST(MetricsFlagsTest, LatencyBucketsAreTheBoundsOfEveryDurationHistogram) {
  TempDir repo;
  WriteTinyModel(repo.path(), "tiny", ModelConfigText("tiny", 4, kT, kH, kW, kClasses, ""), 3);
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      {"--model-repository", repo.path(), "--latency-buckets", "0.25,2.5,600"});
  ASSERT_NE(server, nullptr);
  CallResult r = Call(server->Channel(), ClipRequest("tiny", kT, kH, kW, 1));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::string scrape = server->ScrapeMetrics();
  for (const char* family : {"clipserve_request_duration_seconds",
                             "clipserve_queue_duration_seconds",
                             "clipserve_compute_duration_seconds"}) {
    SCOPED_TRACE(family);
    const std::string bucket =
        absl::StrCat(family, "_bucket{model=\"tiny\",version=\"1\",le=");
    for (const char* le : {"\"0.25\"}", "\"2.5\"}", "\"600\"}", "\"+Inf\"}"}) {
      EXPECT_GE(MetricValue(scrape, bucket + le), 0) << le << " missing";
    }
    EXPECT_EQ(MetricValue(scrape, bucket + "\"600\"}"), 1);
    EXPECT_EQ(MetricValue(scrape, bucket + "\"+Inf\"}"), 1);
    EXPECT_EQ(MetricValue(scrape, bucket + "\"0.0005\"}"), -1) << "a default bound is left";
    EXPECT_EQ(MetricValue(scrape, absl::StrCat(family, "_count{model=\"tiny\",version=\"1\"}")),
              1);
  }
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

// --allow-metrics false: nothing listens on --metrics-port, the log says
// metrics are off, and requests are served.
TEST(MetricsFlagsTest, AllowMetricsFalseServesNoEndpoint) {
  TempDir repo;
  WriteTinyModel(repo.path(), "tiny", ModelConfigText("tiny", 4, kT, kH, kW, kClasses, ""), 3);
  const int port = FreePort();
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start({"--model-repository", repo.path(), "--metrics-port",
                            std::to_string(port), "--allow-metrics", "false"});
  ASSERT_NE(server, nullptr);
  CallResult r = Call(server->Channel(), ClipRequest("tiny", kT, kH, kW, 1));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_FALSE(Connects(port)) << "something listens on --metrics-port " << port;
  EXPECT_EQ(server->metrics_port(), 0);
  EXPECT_NE(server->Log().find("metrics off (--allow-metrics false)"), std::string::npos)
      << server->Log();
  EXPECT_EQ(server->Log().find("serving metrics on port"), std::string::npos);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing
