// What `clipserve-client stream SOURCE` does with SOURCE, and the chunks it
// pushes from a local file.
//
// SOURCE with a scheme the server can pull (rtsp, rtsps, http, https, udp,
// file; case-insensitive) goes to the server as StreamOpen.source_url. Any
// other "scheme://..." is INVALID_ARGUMENT. Anything else is a local file,
// pushed by its extension (case-insensitive):
//   .ts .m2ts            MPEGTS, the file's bytes
//   .h264 .264           H264 (Annex B), the file's bytes
//   .hevc .h265 .265     HEVC (Annex B), the file's bytes
//   anything else        MPEGTS, remuxed here from the file's first video
//                        stream (stream copy; H.264 or HEVC only)
//
// Chunks: untimed, a raw file goes in fixed-size reads; timed (for
// --realtime) every chunk is one demuxed packet with its decode time (a .ts
// is then remuxed too, its video stream only). A remuxed file is always one
// packet per chunk, timed.
#ifndef CLIPSERVE_CLIENT_STREAM_INPUT_H_
#define CLIPSERVE_CLIENT_STREAM_INPUT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "clipserve/v1/video_classifier.pb.h"

namespace clipserve::client {

struct StreamSource {
  std::string url;   // set: the server pulls it
  std::string path;  // set: a local file, pushed
  v1::StreamOpen::Input input = v1::StreamOpen::INPUT_UNSPECIFIED;  // path only
  bool remux = false;  // path: remuxed to MPEG-TS here
};

absl::StatusOr<StreamSource> ClassifySource(const std::string& source);

// A local file's bytes in chunks, in order.
class ChunkReader {
 public:
  virtual ~ChunkReader() = default;
  // Replaces *bytes (its capacity reused) with the next chunk and sets
  // *time_us to its stream time in microseconds from the first chunk's, or
  // -1 when untimed. false at the end; INVALID_ARGUMENT on a read error.
  virtual absl::StatusOr<bool> Next(std::string* bytes, int64_t* time_us) = 0;
};

struct ChunkOptions {
  bool timed = false;                // one packet per chunk, with its time
  size_t raw_chunk_bytes = 64 << 10; // untimed raw reads
};

// INVALID_ARGUMENT when the file cannot be read, or (timed or remuxed) is
// not H.264/HEVC video libavformat can demux.
absl::StatusOr<std::unique_ptr<ChunkReader>> OpenChunks(const StreamSource& source,
                                                        const ChunkOptions& options);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_STREAM_INPUT_H_
