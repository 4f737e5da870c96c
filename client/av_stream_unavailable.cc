// av_stream.h without FFmpeg (CLIPSERVE_VIDEO=OFF): everything UNIMPLEMENTED.
#include "absl/status/status.h"
#include "client/av_stream.h"

namespace clipserve::client {
namespace {
absl::Status Unavailable() {
  return absl::UnimplementedError("built without FFmpeg (CLIPSERVE_VIDEO=OFF)");
}
}  // namespace

absl::StatusOr<std::unique_ptr<PacketReader>> PacketReader::Open(const std::string&,
                                                                 Output) {
  return Unavailable();
}

absl::StatusOr<std::vector<std::string>> EncodeTestStream(const TestStreamOptions&) {
  return Unavailable();
}

absl::Status WriteMpegTsFile(const std::vector<std::string>&, int, int, double, int64_t,
                             const std::string&) {
  return Unavailable();
}

}  // namespace clipserve::client
