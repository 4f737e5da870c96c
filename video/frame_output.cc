#include "video/frame_output.h"

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/version.h>
}

#include <string>

#include "absl/strings/str_cat.h"

namespace clipserve::video::internal {

absl::Status OutOfMemory() {
  return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
}

absl::Status FrameOutput::Open(const AVCodec* codec, const AVCodecParameters* par,
                               AVRational time_base) {
  decoder_.reset(avcodec_alloc_context3(codec));
  frame_.reset(av_frame_alloc());
  if (!decoder_ || !frame_) return OutOfMemory();
  if (par != nullptr && avcodec_parameters_to_context(decoder_.get(), par) < 0) {
    return OutOfMemory();
  }
  time_base_ = time_base;
  decoder_->pkt_timebase = time_base;
  decoder_->thread_count = options_.threads;
  // Frames with decode errors are flagged, not hidden: they are counted
  // and dropped here.
  decoder_->flags2 |= AV_CODEC_FLAG2_SHOW_ALL;
  // A damaged packet is an error, not a frame concealed into looking fine.
  decoder_->err_recognition |= AV_EF_EXPLODE;
  if (const int r = avcodec_open2(decoder_.get(), codec, nullptr); r < 0) {
    // With a container's parameters, the stream is at fault.
    const std::string why = absl::StrCat(kPrefix, "cannot open the ", codec->name,
                                         " decoder (", AvErrorText(r), ")");
    return par != nullptr ? absl::InvalidArgumentError(why)
                          : absl::InternalError(why);
  }
  return absl::OkStatus();
}

absl::Status FrameOutput::Decode(const AVPacket* packet, StreamDecoder::Sink* sink) {
  int r = avcodec_send_packet(decoder_.get(), packet);
  if (r == AVERROR(EAGAIN)) {
    if (absl::Status s = Receive(sink); !s.ok()) return s;
    r = avcodec_send_packet(decoder_.get(), packet);
  }
  if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_EOF) Damaged();
  return Receive(sink);
}

absl::Status FrameOutput::Receive(StreamDecoder::Sink* sink) {
  for (;;) {
    const int r = avcodec_receive_frame(decoder_.get(), frame_.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return absl::OkStatus();
    if (r < 0) {
      Damaged();
      return absl::OkStatus();
    }
    const int64_t index = produced_++;
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(58, 29, 100)
    const bool key = (frame_->flags & AV_FRAME_FLAG_KEY) != 0;
#else  // FFmpeg 5.1 (Debian 12): AV_FRAME_FLAG_KEY came with 6.1
    const bool key = frame_->key_frame != 0;
#endif
    const bool bad = frame_->decode_error_flags != 0 ||
                     (frame_->flags & AV_FRAME_FLAG_CORRUPT) != 0;
    if (bad) Damaged();
    if (waiting_for_key_ && key && !bad) waiting_for_key_ = false;
    if (waiting_for_key_) {
      ++dropped_;
      av_frame_unref(frame_.get());
      continue;
    }
    StreamDecoder::FrameInfo info;
    info.index = index;
    const int64_t pts = frame_->best_effort_timestamp;
    if (time_base_.num > 0 && pts != AV_NOPTS_VALUE) {
      info.pts = pts;
      info.time_us = av_rescale_q(pts, time_base_, AVRational{1, 1000000});
    } else {
      info.pts = frame_->pts != AV_NOPTS_VALUE ? frame_->pts : index;
      // Annex B has no timestamps; a stream that declares its frame rate
      // (H.264/H.265 VUI timing) places its frames by it.
      const AVRational rate = decoder_->framerate;
      if (rate.num > 0 && rate.den > 0) {
        info.time_us = av_rescale_q(index, av_inv_q(rate), AVRational{1, 1000000});
      }
    }
    info.keyframe = key;
    info.arrival_ns = arrival_ns_;
    uint8_t* out = sink != nullptr ? sink->Place(info) : nullptr;
    absl::Status s = out != nullptr ? converter_.Write(*frame_, index, out)
                                    : absl::OkStatus();
    av_frame_unref(frame_.get());
    if (!s.ok()) return s;
    if (out != nullptr) sink->Written(info);
  }
}

bool LossDetector::Lost(const AVPacket& packet) {
  if (packet.dts == AV_NOPTS_VALUE) return false;
  bool lost = false;
  if (last_dts_ != AV_NOPTS_VALUE) {
    const int64_t step = packet.dts - last_dts_;
    if (step > 0 && min_step_ > 0 && step > kLostSteps * min_step_ &&
        (packet.flags & AV_PKT_FLAG_KEY) == 0) {
      lost = true;
    }
    if (step > 0 && (min_step_ == 0 || step < min_step_)) min_step_ = step;
  }
  last_dts_ = packet.dts;
  return lost;
}

}  // namespace clipserve::video::internal
