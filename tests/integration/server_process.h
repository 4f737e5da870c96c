// Starts the real clipserve binary on a free loopback port for a test, and
// stops it. Its stderr is collected so a test can wait for a log line.
#ifndef CLIPSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define CLIPSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>

namespace clipserve::testing {

class ServerProcess {
 public:
  // Runs `clipserve --grpc-address 127.0.0.1 --grpc-port 0 <args>` and waits
  // until it logs the port it serves on. Returns null (and says why on
  // stderr) if it exits or takes longer than `timeout`.
  static std::unique_ptr<ServerProcess> Start(
      const std::vector<std::string>& args,
      std::chrono::seconds timeout = std::chrono::seconds(120));

  // Runs `command` (a shell command line) to completion; its exit code and
  // its stdout and stderr together.
  struct Output {
    int exit_code;
    std::string text;
  };
  static Output RunCommand(const std::string& command);

  // SIGKILLs the process if it still runs.
  ~ServerProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // The Prometheus endpoint's port (started with --metrics-port 0).
  int metrics_port() const { return metrics_port_; }
  // GET http://127.0.0.1:<metrics_port>/metrics: the body, or "" on failure.
  std::string ScrapeMetrics() const;
  // Scrapes until the series `series` reaches at least `value` or `timeout`
  // passes; the last value seen (-1: absent).
  double WaitForMetric(const std::string& series, double value,
                       std::chrono::milliseconds timeout =
                           std::chrono::milliseconds(30000)) const;
  // The same, until the value is at most `value` (a gauge going down).
  double WaitForMetricAtMost(const std::string& series, double value,
                             std::chrono::milliseconds timeout =
                                 std::chrono::milliseconds(30000)) const;
  std::string address() const;
  std::shared_ptr<grpc::Channel> Channel() const;

  void Signal(int signal) const;
  // Waits for the process to exit; its exit code, or 128 + signal.
  int Wait();
  // Whether a line containing `text` appeared in its log within `timeout`.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds timeout);
  std::string Log() const;

 private:
  ServerProcess() = default;
  void ReadLog(int fd);
  double PollMetric(const std::string& series, const std::function<bool(double)>& done,
                    std::chrono::milliseconds timeout) const;

  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  bool exited_ = false;
  int exit_code_ = 0;
  mutable std::mutex mu_;
  std::condition_variable log_grew_;
  std::string log_;
  bool log_closed_ = false;
  std::thread reader_;
};

// The value of the series `series` (name and labels, exactly as exposed) in
// a scrape, or -1 when absent.
double MetricValue(const std::string& scrape, const std::string& series);

}  // namespace clipserve::testing

#endif  // CLIPSERVE_TESTS_INTEGRATION_SERVER_PROCESS_H_
