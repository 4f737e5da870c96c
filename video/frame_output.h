// Internal to video/: the packets-to-frames half that every live decoder
// shares (StreamDecoder's formats and LiveSource's pulled sources): the
// codec, the wait for a keyframe after damage, the conversion to RGB into
// the caller's Sink, and how lost transport packets are noticed.
#ifndef CLIPSERVE_VIDEO_FRAME_OUTPUT_H_
#define CLIPSERVE_VIDEO_FRAME_OUTPUT_H_

#include <cstdint>

extern "C" {
#include <libavcodec/avcodec.h>
}

#include "absl/status/status.h"
#include "video/av_convert.h"
#include "video/av_ptr.h"
#include "video/stream_decoder.h"

namespace clipserve::video::internal {

absl::Status OutOfMemory();

// Packets in, RGB frames out. A packet that fails to decode, a frame
// flagged damaged, or Damaged() from the caller drops every frame up to the
// next clean keyframe; each such frame is counted in dropped(), each damage
// in corrupt(). One thread at a time.
class FrameOutput {
 public:
  explicit FrameOutput(const StreamDecoder::Options& options)
      : options_(options), converter_(options.geometry, options.limits) {}

  // `par`: the container's codec parameters (nullptr for Annex B);
  // `time_base`: the packets' timestamps' unit ({0, 1}: none). Once.
  absl::Status Open(const AVCodec* codec, const AVCodecParameters* par,
                    AVRational time_base);
  AVCodecContext* decoder() { return decoder_.get(); }

  // Frames that come out of the next Decode() calls arrived at this
  // steady-clock time (FrameInfo::arrival_ns).
  void set_arrival_ns(int64_t ns) { arrival_ns_ = ns; }

  // Decodes `packet` (nullptr: the end); what comes out goes to `sink`
  // (nullptr: nowhere). INVALID_ARGUMENT for a frame outside the limits.
  absl::Status Decode(const AVPacket* packet, StreamDecoder::Sink* sink);

  // A packet or stretch of bytes was lost: wait for a keyframe.
  void Damaged() {
    ++corrupt_;
    waiting_for_key_ = true;
  }

  int64_t corrupt() const { return corrupt_; }
  int64_t dropped() const { return dropped_; }

 private:
  absl::Status Receive(StreamDecoder::Sink* sink);

  const StreamDecoder::Options& options_;
  FrameConverter converter_;
  AvPtr<AVCodecContext> decoder_;
  AvPtr<AVFrame> frame_;
  AVRational time_base_{0, 1};
  int64_t produced_ = 0;
  int64_t corrupt_ = 0;
  int64_t dropped_ = 0;
  int64_t arrival_ns_ = 0;
  bool waiting_for_key_ = false;
};

// Whether packets of a container stream were lost: a transport stream that
// loses whole packets carries no other sign of it, and the H.264 decoder
// would conceal the gap into plausible frames. A packet's decode timestamp
// that jumps more than kLostSteps of the shortest step seen so far (and is
// not a keyframe) means packets before it were lost.
class LossDetector {
 public:
  static constexpr int64_t kLostSteps = 3;
  bool Lost(const AVPacket& packet);
  // The stream starts over (a reconnect): timestamps may jump.
  void Reset() { last_dts_ = AV_NOPTS_VALUE; }

 private:
  int64_t last_dts_ = AV_NOPTS_VALUE;
  int64_t min_step_ = 0;
};

}  // namespace clipserve::video::internal

#endif  // CLIPSERVE_VIDEO_FRAME_OUTPUT_H_
