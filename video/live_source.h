// LiveSource: a live stream the server pulls from a URL (a camera's RTSP,
// live MPEG-TS or HLS over HTTP, UDP MPEG-TS, or a file replayed as if
// live), decoded into the caller's StreamDecoder::Sink.
//
//   SourcePolicy policy{{"rtsp://cameras.lan/"}};       // --stream-source-prefix
//   LiveSource::Options o;
//   o.url = "rtsp://cameras.lan/door";
//   o.geometry = ...;
//   auto source = LiveSource::Open(o, policy, &stop);     // blocks to connect
//   absl::Status ended = (*source)->Run(&sink);           // until it ends
//
// The contract:
//  - Nothing is opened unless the URL is under one of the policy's prefixes
//    (CheckSourceUrl; PERMISSION_DENIED otherwise, and for every URL when
//    the policy has none: the default). Every further URL the source makes
//    FFmpeg open (an HLS playlist's segments, an RTSP session's streams) is
//    checked the same way, so a playlist cannot lead the server elsewhere.
//    Only the protocols of the URL's scheme are enabled.
//  - Open() and each read give up after `io_timeout` without data, and at
//    once when `*stop` turns true (from any thread): Open() returns
//    UNAVAILABLE or CANCELLED, Run() returns UNAVAILABLE ("source lost") or
//    CANCELLED. A source that cannot be opened or read is UNAVAILABLE: the
//    caller decides whether to reconnect (Open() again).
//  - Run() returns OK when a replayed file ends; a network source that ends
//    (its server closed the connection) has dropped: UNAVAILABLE.
//    INVALID_ARGUMENT when a frame breaks Limits or the source holds no
//    decodable video.
//  - Frames are converted as StreamDecoder's are (Geometry), with damage
//    skipped to the next keyframe and counted; FrameInfo::arrival_ns is when
//    the packet that completed the frame was read.
//  - A file:// source is paced by its timestamps at `replay_speed` times
//    real time (<= 0: as fast as it decodes), so it behaves like a camera.
// Not thread-safe apart from `*stop`.
#ifndef CLIPSERVE_VIDEO_LIVE_SOURCE_H_
#define CLIPSERVE_VIDEO_LIVE_SOURCE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"
#include "video/stream_decoder.h"

namespace clipserve::video {

struct SourcePolicy {
  // URL prefixes sources may be pulled from; empty (the default): none.
  std::vector<std::string> allowed_prefixes;
};

// OK if `prefix` may be in a SourcePolicy: a scheme of rtsp, rtsps, http,
// https, udp or file, then either a path ending in "/" (rtsp://HOST/,
// file:///DIR/) or exactly scheme://HOST:PORT (udp://127.0.0.1:5000), which
// matches that address with any options ("?..."). INVALID_ARGUMENT saying
// why otherwise.
absl::Status ValidateSourcePrefix(absl::string_view prefix);

// OK if `url` may be pulled under `policy`; PERMISSION_DENIED otherwise
// (also for "." or ".." segments, backslashes and control characters).
absl::Status CheckSourceUrl(absl::string_view url, const SourcePolicy& policy);

class LiveSource {
 public:
  struct Options {
    std::string url;
    // RTSP: interleaved over TCP instead of RTP over UDP.
    bool rtsp_tcp = false;
    // file:// only: multiple of real time; <= 0: unpaced.
    double replay_speed = 1;
    Geometry geometry;
    Limits limits;
    int threads = 1;
    // Longest wait for the source to connect or for its next data.
    std::chrono::milliseconds io_timeout{5000};
  };

  // Connects and reads the stream's header. `stop` must outlive the source.
  static absl::StatusOr<std::unique_ptr<LiveSource>> Open(
      const Options& options, const SourcePolicy& policy,
      const std::atomic<bool>* stop);
  virtual ~LiveSource() = default;

  // Reads and decodes until the source ends, fails or is stopped (see the
  // contract above). Frame indices count from `first_index`.
  virtual absl::Status Run(StreamDecoder::Sink* sink, int64_t first_index) = 0;

  // Frames dropped so far waiting for a keyframe after damage (see
  // StreamDecoder); read between Run() calls.
  virtual int64_t dropped_frames() const = 0;
};

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_LIVE_SOURCE_H_
