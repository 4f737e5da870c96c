// ReadVideoUri on libavformat's I/O (its file, http and https protocols).
#include <chrono>
#include <memory>
#include <string>

extern "C" {
#include <libavformat/avio.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
}

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "video/av_ptr.h"
#include "video/fetch.h"

namespace clipserve::video {
namespace {

constexpr int kChunkBytes = 256 << 10;

struct Deadline {
  std::chrono::steady_clock::time_point at;
  static int Passed(void* opaque) {
    return std::chrono::steady_clock::now() >= static_cast<Deadline*>(opaque)->at;
  }
};

}  // namespace

absl::StatusOr<std::string> ReadVideoUri(
    absl::string_view uri, const UriPolicy& policy, const Limits& limits,
    std::chrono::steady_clock::time_point deadline) {
  if (absl::Status s = CheckUri(uri, policy); !s.ok()) return s;
  internal::QuietFfmpegOnce();
  const std::string name(uri);
  const auto failed = [&name](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not read video ", name.substr(0, 200), ": ", why));
  };
  const auto limit = std::chrono::steady_clock::now() + policy.read_timeout;
  const bool by_limit = limit < deadline;
  Deadline until{by_limit ? limit : deadline};
  // Past `until`: the request's deadline, or the policy's read timeout.
  const auto too_late = [&](absl::string_view doing) -> absl::Status {
    if (by_limit) {
      return failed(absl::StrCat("no video within ", policy.read_timeout.count(),
                                 " ms (--video-uri-timeout-seconds) ", doing));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded ", doing, " video ", name.substr(0, 200)));
  };
  const AVIOInterruptCB interrupt{&Deadline::Passed, &until};
  AVDictionary* raw_options = nullptr;
  // The protocols a URI of its scheme needs, and nothing else.
  av_dict_set(&raw_options, "protocol_whitelist",
              absl::StartsWith(uri, "file:") ? "file"
              : absl::StartsWith(uri, "https:") ? "https,tls,tcp"
                                                : "http,tcp",
              0);
  av_dict_set(&raw_options, "max_redirects", "0", 0);
  internal::AvPtr<AVDictionary> options(raw_options);
  AVIOContext* raw = nullptr;
  AVDictionary* used = options.release();
  const int opened = avio_open2(&raw, name.c_str(), AVIO_FLAG_READ, &interrupt, &used);
  options.reset(used);
  if (opened < 0) {
    if (Deadline::Passed(&until)) return too_late("opening");
    return failed(internal::AvErrorText(opened));
  }
  std::unique_ptr<AVIOContext, int (*)(AVIOContext*)> io(raw, [](AVIOContext* c) {
    return avio_close(c);
  });
  const int64_t size = avio_size(io.get());
  if (size > 0 && static_cast<uint64_t>(size) > limits.max_bytes) {
    return failed(absl::StrCat("it has ", size, " bytes, over the limit of ",
                               limits.max_bytes));
  }
  std::string bytes;
  if (size > 0) bytes.reserve(static_cast<size_t>(size));
  for (;;) {
    const size_t at = bytes.size();
    if (at > limits.max_bytes) {
      return failed(absl::StrCat("it has more than ", limits.max_bytes,
                                 " bytes, the limit"));
    }
    bytes.resize(at + kChunkBytes);
    const int n = avio_read(io.get(), reinterpret_cast<unsigned char*>(&bytes[at]),
                            kChunkBytes);
    if (n == AVERROR_EOF || n == 0) {
      bytes.resize(at);
      break;
    }
    if (n < 0) {
      if (Deadline::Passed(&until)) return too_late("reading");
      return failed(internal::AvErrorText(n));
    }
    bytes.resize(at + static_cast<size_t>(n));
  }
  if (bytes.empty()) return failed("it is empty");
  return bytes;
}

}  // namespace clipserve::video
