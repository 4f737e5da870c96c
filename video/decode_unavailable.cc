// DecodeClip and ReadVideoUri in a build without video decoding
// (-DCLIPSERVE_VIDEO=OFF, e.g. the GPU check on a host that has no FFmpeg):
// encoded videos and live streams are refused; clients send decoded clips
// instead.
#include "absl/status/status.h"
#include "video/decode.h"
#include "video/fetch.h"
#include "video/live_source.h"
#include "video/rgb_resizer.h"
#include "video/stream_decoder.h"

namespace clipserve::video {
namespace {

absl::Status Unavailable() {
  return absl::UnimplementedError(
      "could not decode video: this clipserve was built without video "
      "decoding (CLIPSERVE_VIDEO=OFF); send decoded frames (clip) instead");
}

}  // namespace

absl::StatusOr<Clip> DecodeClip(absl::string_view /*bytes*/,
                                const Sampling& /*sampling*/,
                                const Geometry& /*geometry*/,
                                const Limits& /*limits*/,
                                const DecodeOptions& /*options*/) {
  return Unavailable();
}

absl::StatusOr<std::string> ReadVideoUri(
    absl::string_view uri, const UriPolicy& policy, const Limits& /*limits*/,
    std::chrono::steady_clock::time_point /*deadline*/) {
  if (absl::Status s = CheckUri(uri, policy); !s.ok()) return s;
  return Unavailable();
}

absl::StatusOr<std::unique_ptr<StreamDecoder>> StreamDecoder::Create(
    const Options& /*options*/) {
  return Unavailable();
}

absl::StatusOr<std::unique_ptr<LiveSource>> LiveSource::Open(
    const Options& options, const SourcePolicy& policy,
    const std::atomic<bool>* /*stop*/) {
  if (absl::Status s = CheckSourceUrl(options.url, policy); !s.ok()) return s;
  return Unavailable();
}

absl::StatusOr<std::unique_ptr<RgbResizer>> RgbResizer::Create(
    const Geometry& /*geometry*/, const Limits& /*limits*/) {
  return Unavailable();
}

}  // namespace clipserve::video
