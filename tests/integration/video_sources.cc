#include "tests/integration/video_sources.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/integration/server_process.h"

namespace clipserve::testing {

std::string MakeVideo(const std::string& dir, const std::string& name,
                      const std::string& size, double seconds, int fps,
                      const std::string& codec_args) {
  const std::string path = absl::StrCat(dir, "/", name);
  ServerProcess::Output out = ServerProcess::RunCommand(absl::StrCat(
      "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=", size,
      ":rate=", fps, " -t ", seconds, " ", codec_args, " ", path));
  EXPECT_EQ(out.exit_code, 0) << out.text;
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::unique_ptr<ServerProcess> StartTinyVideoServer(const TempDir& dir,
                                                    const std::vector<std::string>& args) {
  const std::string repo = absl::StrCat(dir.path(), "/models");
  WriteTinyModel(repo, "tiny", ModelConfigText("tiny", 4, 4, 32, 32, 10, ""), 3);
  std::vector<std::string> all = {"--model-repository", repo};
  all.insert(all.end(), args.begin(), args.end());
  return ServerProcess::Start(all);
}

v1::ClassifyRequest UploadRequest(const std::string& model, const std::string& bytes) {
  v1::ClassifyRequest r;
  r.set_model_name(model);
  r.mutable_video()->set_data(bytes);
  return r;
}

v1::ClassifyRequest UriRequest(const std::string& model, const std::string& uri) {
  v1::ClassifyRequest r;
  r.set_model_name(model);
  r.mutable_video()->set_uri(uri);
  return r;
}

SilentSource::SilentSource() {
  listener_ = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(listener_, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(listener_, 8), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  prefix_ = absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/");
}

SilentSource::~SilentSource() { Release(); }

bool SilentSource::Accept(std::chrono::milliseconds timeout) {
  pollfd p{listener_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  const int fd = accept(listener_, nullptr, nullptr);
  if (fd < 0) return false;
  accepted_.push_back(fd);
  return true;
}

void SilentSource::Release() {
  for (int fd : accepted_) close(fd);
  accepted_.clear();
  if (listener_ >= 0) close(listener_);
  listener_ = -1;
}

}  // namespace clipserve::testing
