// FFmpeg's side of the stream tools (clipserve-client stream, clipserve-perf
// --streams): a local video file read as packets with their times, remuxed
// to MPEG-TS by stream copy; an H.264 test stream encoded from a synthetic
// moving pattern; such a stream written to an MPEG-TS file.
//
// Only H.264 and HEVC video is streamed (what ClassifyStream's encoded
// inputs carry); nothing is re-encoded. Built on libavformat/libavcodec;
// with CLIPSERVE_VIDEO=OFF every function here is UNIMPLEMENTED.
#ifndef CLIPSERVE_CLIENT_AV_STREAM_H_
#define CLIPSERVE_CLIENT_AV_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipserve::client {

// A local file's first video stream, packet by packet, each with its decode
// time (microseconds from the first packet's; the demuxer's timestamps, or
// the frame rate where a raw stream has none).
class PacketReader {
 public:
  enum class Output {
    kAsIs,    // the packets' own bytes (an Annex B file: access units)
    kMpegTs,  // MPEG-TS, the header bytes before the first packet's
  };
  // INVALID_ARGUMENT when the file cannot be opened or demuxed, has no video
  // stream, or its video is not H.264 or HEVC ("PATH: video is vp9; only
  // H.264 and HEVC ...").
  static absl::StatusOr<std::unique_ptr<PacketReader>> Open(
      const std::string& path, Output output);
  virtual ~PacketReader() = default;

  // "h264" or "hevc".
  virtual const std::string& codec() const = 0;
  // Replaces *bytes (its capacity is reused) with the next packet's bytes
  // (for kMpegTs: what the muxer wrote for it; at the end, the trailer) and
  // sets *time_us. false at the end; INVALID_ARGUMENT on a read error.
  virtual absl::StatusOr<bool> Next(std::string* bytes, int64_t* time_us) = 0;
};

struct TestStreamOptions {
  int width = 1920;
  int height = 1080;
  double fps = 25;
  int frames = 50;  // access units encoded
  int gop = 25;     // a keyframe (IDR, SPS and PPS in band) every gop frames
};

// An H.264 Annex B stream of a synthetic moving pattern, one access unit per
// frame, no B-frames, frame 0 a keyframe. libx264 (preset ultrafast, tune
// zerolatency) where libavcodec has it, else any H.264 encoder it has;
// FAILED_PRECONDITION when none opens. Looping it from frame 0 is a valid
// stream when frames is a multiple of gop.
absl::StatusOr<std::vector<std::string>> EncodeTestStream(
    const TestStreamOptions& options);

// Writes `total_frames` frames to `path` as MPEG-TS at `fps`, cycling
// through `units` (an H.264 Annex B access unit each, as EncodeTestStream
// makes them). INVALID_ARGUMENT when it cannot be written.
absl::Status WriteMpegTsFile(const std::vector<std::string>& units, int width,
                             int height, double fps, int64_t total_frames,
                             const std::string& path);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_AV_STREAM_H_
