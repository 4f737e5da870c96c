// DecodeClip in a build without video decoding (-DCLIPSERVE_VIDEO=OFF, e.g.
// the GPU check on a host that has no OpenCV/FFmpeg): encoded videos are
// refused; clients send decoded frames instead.
#include "absl/status/status.h"
#include "video/decode.h"

namespace clipserve::video {

absl::StatusOr<Clip> DecodeClip(absl::string_view /*bytes*/,
                                const Sampling& /*sampling*/,
                                const Geometry& /*geometry*/,
                                const Limits& /*limits*/) {
  return absl::UnimplementedError(
      "could not decode video: this clipserve was built without video "
      "decoding (CLIPSERVE_VIDEO=OFF); send decoded frames (clip) instead");
}

}  // namespace clipserve::video
