// StreamDecoder: decodes a live video stream fed in pieces, for camera
// streams (the streams API builds on it).
//
//   StreamDecoder::Options o;
//   o.codec = "h264";                     // H.264 or H.265 Annex B bytes
//   auto d = StreamDecoder::Create(o);
//   std::vector<StreamDecoder::Frame> frames;
//   (*d)->Push(bytes_from_the_camera, &frames);   // any split, any size
//   ...
//   (*d)->Finish(&frames);                        // what is still buffered
//
// Each decoded frame comes out resized and centre-cropped to RGB as
// DecodeClip's frames are (Geometry), with its presentation timestamp and
// its position in the stream. A corrupt packet does not stop the stream:
// the decoder drops what it cannot decode, waits for the next keyframe
// (frames that would reference the damage are not returned), and counts it
// in corrupt_packets(). Not thread-safe: one stream, one caller at a time.
#ifndef CLIPSERVE_VIDEO_STREAM_DECODER_H_
#define CLIPSERVE_VIDEO_STREAM_DECODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

namespace clipserve::video {

class StreamDecoder {
 public:
  struct Options {
    // "h264" or "hevc": Annex B elementary stream (start codes).
    std::string codec = "h264";
    Geometry geometry;
    // max_width/max_height bound every frame; max_bytes bounds the bytes
    // buffered before a packet completes.
    Limits limits;
    int threads = 1;
  };

  struct Frame {
    // crop_height x crop_width x 3 bytes, RGB.
    std::string rgb;
    // Position among the frames the stream has produced so far (corrupt and
    // dropped frames count too, so gaps show), and the codec's timestamp
    // (in 1/90000 s when the stream carries none: its arrival order).
    int64_t index = 0;
    int64_t pts = 0;
    bool keyframe = false;
  };

  // INVALID_ARGUMENT for an unknown codec or bad geometry.
  static absl::StatusOr<std::unique_ptr<StreamDecoder>> Create(
      const Options& options);
  virtual ~StreamDecoder() = default;

  // Feeds `bytes`; appends the frames that are complete to *frames.
  // INVALID_ARGUMENT only when a frame is outside Limits (the stream cannot
  // go on); corrupt data is skipped and counted.
  virtual absl::Status Push(absl::string_view bytes,
                            std::vector<Frame>* frames) = 0;
  // The end of the stream: appends the frames still buffered.
  virtual absl::Status Finish(std::vector<Frame>* frames) = 0;

  // Packets (or frames) that failed to decode, and frames dropped while
  // waiting for a keyframe after one.
  virtual int64_t corrupt_packets() const = 0;
  virtual int64_t dropped_frames() const = 0;
};

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_STREAM_DECODER_H_
