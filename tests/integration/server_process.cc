#include "tests/integration/server_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

namespace clipserve::testing {

std::unique_ptr<ServerProcess> ServerProcess::Start(
    const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::vector<std::string> argv_s = {CLIPSERVE_BINARY, "--grpc-address",
                                     "127.0.0.1", "--grpc-port", "0",
                                     "--metrics-port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return nullptr;
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->pid_ = fork();
  if (p->pid_ == 0) {
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    execv(argv[0], argv.data());
    std::perror("execv clipserve");
    _exit(127);
  }
  close(pipe_fds[1]);
  p->reader_ = std::thread([raw = p.get(), fd = pipe_fds[0]] { raw->ReadLog(fd); });

  std::unique_lock<std::mutex> lock(p->mu_);
  const std::regex port_line("serving gRPC on port ([0-9]+)");
  std::smatch m;
  const bool started = p->log_grew_.wait_for(lock, timeout, [&] {
    return std::regex_search(p->log_, m, port_line) || p->log_closed_;
  });
  if (!started || p->log_closed_) {
    std::fprintf(stderr, "clipserve did not start; its log:\n%s\n", p->log_.c_str());
    return nullptr;
  }
  p->port_ = std::stoi(m[1]);
  if (std::regex_search(p->log_, m, std::regex("serving metrics on port ([0-9]+)"))) {
    p->metrics_port_ = std::stoi(m[1]);
  }
  return p;
}

ServerProcess::Output ServerProcess::RunCommand(const std::string& command) {
  Output out{-1, ""};
  FILE* f = popen((command + " 2>&1").c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.text.append(buf, n);
  const int status = pclose(f);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    Wait();
  }
  if (reader_.joinable()) reader_.join();
}

void ServerProcess::ReadLog(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    // Echo, so a failing test shows the server's side too.
    fwrite(buf, 1, n, stderr);
    std::lock_guard<std::mutex> lock(mu_);
    log_.append(buf, n);
    log_grew_.notify_all();
  }
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  log_closed_ = true;
  log_grew_.notify_all();
}

std::string ServerProcess::ScrapeMetrics() const {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(metrics_port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) ==
        static_cast<ssize_t>(request.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

std::string ServerProcess::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  // A fresh channel per call site, not shared with other tests' channels.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(),
                                   args);
}

void ServerProcess::Signal(int signal) const {
  if (pid_ > 0 && !exited_) kill(pid_, signal);
}

int ServerProcess::Wait() {
  if (exited_) return exit_code_;
  int status = 0;
  waitpid(pid_, &status, 0);
  exited_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

bool ServerProcess::WaitForLog(const std::string& text,
                               std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return log_grew_.wait_for(lock, timeout, [&] {
    return log_.find(text) != std::string::npos || log_closed_;
  }) && log_.find(text) != std::string::npos;
}

std::string ServerProcess::Log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

double ServerProcess::PollMetric(const std::string& series,
                                 const std::function<bool(double)>& done,
                                 std::chrono::milliseconds timeout) const {
  const auto end = std::chrono::steady_clock::now() + timeout;
  double seen = MetricValue(ScrapeMetrics(), series);
  while (!done(seen) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    seen = MetricValue(ScrapeMetrics(), series);
  }
  return seen;
}

double ServerProcess::WaitForMetric(const std::string& series, double value,
                                    std::chrono::milliseconds timeout) const {
  return PollMetric(series, [value](double v) { return v >= value; }, timeout);
}

double ServerProcess::WaitForMetricAtMost(const std::string& series, double value,
                                          std::chrono::milliseconds timeout) const {
  // A missing series (-1) is not "at most": the server must show it.
  return PollMetric(series, [value](double v) { return v >= 0 && v <= value; }, timeout);
}

double MetricValue(const std::string& scrape, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = ("\n" + scrape).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(scrape.substr(at + key.size() - 1));
}

}  // namespace clipserve::testing
