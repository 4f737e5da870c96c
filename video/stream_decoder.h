// StreamDecoder: decodes a live video stream fed in pieces, for camera
// streams (the streams API builds on it).
//
//   StreamDecoder::Options o;
//   o.format = "h264";                    // or "hevc", "mpegts", "fmp4"
//   auto d = StreamDecoder::Create(o);
//   FrameCollector frames(o.geometry);       // or a Sink of your own
//   (*d)->Push(bytes_from_the_camera, &frames);   // any split, any size
//   ...
//   (*d)->Finish(&frames);                        // what is still buffered
//
// Formats:
//  - "h264", "hevc": an Annex B elementary stream (start codes), split into
//    packets by libavcodec's parser wherever the caller's pieces end;
//  - "mpegts": an MPEG transport stream, "fmp4": fragmented MP4 (an init
//    segment, then moof/mdat fragments), demuxed by libavformat as the bytes
//    come (on a thread of the decoder's own that waits for Push(); Push()
//    returns once every byte given is consumed). The first video stream is
//    decoded; other streams are ignored. The container's timestamps are kept.
//
// Each decoded frame comes out resized and centre-cropped to RGB as
// DecodeClip's frames are (Geometry), with its presentation timestamp and
// its position in the stream. A corrupt packet does not stop the stream:
// the decoder drops what it cannot decode, waits for the next keyframe
// (frames that would reference the damage are not returned), and counts it
// in corrupt_packets(). In a container, a packet flagged corrupt, or a jump
// of the decode timestamps by more than 3 of the shortest steps seen (lost
// transport packets carry no other sign), counts as damage the same way; a
// source that pauses mid-GOP for longer than that costs the frames up to its
// next keyframe. A container stream that cannot be opened (its first
// bytes are not that container) ends with INVALID_ARGUMENT from Push() or
// Finish(). Not thread-safe: one stream, one caller at a time.
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
    // "h264", "hevc" (Annex B), "mpegts" or "fmp4".
    std::string format = "h264";
    Geometry geometry;
    // max_width/max_height bound every frame; max_bytes bounds the bytes
    // buffered before a packet completes.
    Limits limits;
    int threads = 1;
    // "h264", "hevc": each Push() holds exactly one access unit, decoded at
    // once instead of when the next one begins.
    bool whole_access_units = false;
  };

  // A decoded frame's place in the stream: its position among the frames
  // the stream has produced so far (corrupt and dropped frames count too,
  // so gaps show), the codec's timestamp (Annex B, which carries none: the
  // frame's index), and that time in microseconds on the container's clock
  // (Annex B: index / the frame rate the stream declares in its VUI timing,
  // or -1 when it declares none).
  struct FrameInfo {
    int64_t index = 0;
    int64_t pts = 0;
    int64_t time_us = -1;
    bool keyframe = false;
    // When the packet that completed the frame arrived, in steady-clock
    // nanoseconds since its epoch (LiveSource, which reads the packets);
    // 0 from StreamDecoder, whose caller knows when its bytes came.
    int64_t arrival_ns = 0;
  };

  // Where decoded frames go. Called only while Push() or Finish() runs
  // (for container formats from the decoder's own thread, while the caller
  // waits in them), in frame order.
  class Sink {
   public:
    virtual ~Sink() = default;
    // Where frame `info` is to be written (crop_height x crop_width x 3
    // bytes, RGB), or nullptr if nothing wants it: it is then never
    // converted.
    virtual uint8_t* Place(const FrameInfo& info) = 0;
    // The frame Place() gave a place to has been written there.
    virtual void Written(const FrameInfo& info) = 0;
  };

  // A frame as FrameCollector keeps it.
  struct Frame : FrameInfo {
    std::string rgb;  // crop_height x crop_width x 3 bytes, RGB
  };

  // INVALID_ARGUMENT for an unknown format or bad geometry.
  static absl::StatusOr<std::unique_ptr<StreamDecoder>> Create(
      const Options& options);
  virtual ~StreamDecoder() = default;

  // Feeds `bytes`; the frames they complete go to `sink`. INVALID_ARGUMENT
  // only when a frame is outside Limits or the container cannot be opened
  // (the stream cannot go on; later calls repeat it); corrupt data is
  // skipped and counted.
  virtual absl::Status Push(absl::string_view bytes, Sink* sink) = 0;
  // The end of the stream: the frames still buffered go to `sink`. A Push()
  // after it is FAILED_PRECONDITION.
  virtual absl::Status Finish(Sink* sink) = 0;

  // Packets (or frames) that failed to decode, and frames dropped while
  // waiting for a keyframe after one.
  virtual int64_t corrupt_packets() const = 0;
  virtual int64_t dropped_frames() const = 0;
};

// A Sink that keeps every frame, a string each (tests and tools; a server
// writes frames where they are needed instead).
class FrameCollector final : public StreamDecoder::Sink {
 public:
  explicit FrameCollector(const Geometry& geometry)
      : frame_bytes_(static_cast<size_t>(geometry.crop_height * geometry.crop_width * 3)) {}
  uint8_t* Place(const StreamDecoder::FrameInfo& info) override;
  void Written(const StreamDecoder::FrameInfo& info) override;

  std::vector<StreamDecoder::Frame> frames;

 private:
  const size_t frame_bytes_;
  bool placed_ = false;  // frames.back() awaits Written()
};

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_STREAM_DECODER_H_
