// ReadVideoUri and its policy: nothing outside the allowed prefixes is read,
// files and http are read whole within the byte limit, redirects and
// deadlines end the read.
#include "video/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/video/test_videos.h"

namespace clipserve::video {
namespace {

using ::clipserve::video::testing::TempPath;
using ::testing::HasSubstr;

std::chrono::steady_clock::time_point In(int seconds) {
  return std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
}

TEST(UriPolicyTest, PrefixesMustNameADirectoryOrAHost) {
  for (const char* ok : {"file:///srv/videos/", "http://a.example/", "https://a.example:8443/v/"}) {
    EXPECT_TRUE(ValidateUriPrefix(ok).ok()) << ok;
  }
  for (const char* bad : {"https://a.example", "ftp://a.example/", "file://srv/",
                          "file:///srv/../etc/", "http:///", "http://u@a.example/",
                          "/srv/videos/", ""}) {
    absl::Status s = ValidateUriPrefix(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("video URI prefix \"", bad, "\"")));
  }
}

TEST(UriPolicyTest, OnlyUrisUnderAPrefixWithoutDotSegmentsPass) {
  UriPolicy none;
  EXPECT_EQ(CheckUri("file:///srv/videos/a.mp4", none).code(),
            absl::StatusCode::kPermissionDenied);
  UriPolicy policy;
  policy.allowed_prefixes = {"file:///srv/videos/", "https://a.example/"};
  EXPECT_TRUE(CheckUri("file:///srv/videos/a.mp4", policy).ok());
  EXPECT_TRUE(CheckUri("https://a.example/x/b.mp4?sig=1", policy).ok());
  for (const char* refused :
       {"file:///srv/videos/../secret.mp4", "file:///srv/videos/./a.mp4",
        "file:///srv/videosX/a.mp4", "file:///srv/other.mp4",
        "https://a.example.evil/a.mp4", "http://a.example/a.mp4",
        "file:///srv/videos/a\\..\\b.mp4", "file:///srv/videos/a\n.mp4",
        "/srv/videos/a.mp4"}) {
    absl::Status s = CheckUri(refused, policy);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << refused;
  }
}

std::string WriteFile(const std::string& bytes) {
  const std::string path = TempPath("bin");
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

UriPolicy Everything(const std::string& path) {
  UriPolicy p;
  p.allowed_prefixes = {path.substr(0, path.rfind('/') + 1).insert(0, "file://")};
  return p;
}

TEST(ReadVideoUriTest, AFileIsReadWholeWithinTheLimit) {
  std::string bytes(700000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  const std::string path = WriteFile(bytes);
  Limits limits;
  absl::StatusOr<std::string> read =
      ReadVideoUri("file://" + path, Everything(path), limits, In(10));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);

  limits.max_bytes = 699999;
  read = ReadVideoUri("file://" + path, Everything(path), limits, In(10));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr("it has 700000 bytes, over the limit of 699999"));

  read = ReadVideoUri("file://" + path + ".none", Everything(path), Limits(), In(10));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr("could not read video file://"));
  EXPECT_THAT(std::string(read.status().message()), HasSubstr("No such file or directory"));
}

// A one-connection HTTP server on loopback that answers `response`.
class OneShotHttp {
 public:
  explicit OneShotHttp(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 1);
    thread_ = std::thread([this] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      if (!silent_) {
        for (size_t at = 0; at < response_.size();) {
          const ssize_t n = write(c, response_.data() + at, response_.size() - at);
          if (n <= 0) break;
          at += static_cast<size_t>(n);
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2000));
      }
      close(c);
    });
  }
  ~OneShotHttp() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  UriPolicy Policy() const {
    UriPolicy p;
    p.allowed_prefixes = {absl::StrCat("http://127.0.0.1:", port_, "/")};
    return p;
  }
  bool silent_ = false;

 private:
  std::string response_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(ReadVideoUriTest, HttpIsReadAndARedirectIsNotFollowed) {
  const std::string body(100000, 'v');
  {
    OneShotHttp http(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(),
                                  "\r\nConnection: close\r\n\r\n", body));
    absl::StatusOr<std::string> read =
        ReadVideoUri(http.Url("/a.mp4"), http.Policy(), Limits(), In(10));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, body);
  }
  {
    OneShotHttp http(
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n");
    absl::StatusOr<std::string> read =
        ReadVideoUri(http.Url("/a.mp4"), http.Policy(), Limits(), In(10));
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << read.status();
    EXPECT_THAT(std::string(read.status().message()), HasSubstr("could not read video http://"));
  }
  {
    Limits limits;
    limits.max_bytes = 50000;
    OneShotHttp http(absl::StrCat("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", body));
    absl::StatusOr<std::string> read =
        ReadVideoUri(http.Url("/a.mp4"), http.Policy(), limits, In(10));
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(read.status().message()),
                HasSubstr("more than 50000 bytes, the limit"));
  }
}

TEST(ReadVideoUriTest, ASilentServerEndsAtTheDeadline) {
  OneShotHttp http("");
  http.silent_ = true;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> read = ReadVideoUri(
      http.Url("/a.mp4"), http.Policy(), Limits(),
      std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDeadlineExceeded) << read.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
}

}  // namespace
}  // namespace clipserve::video
