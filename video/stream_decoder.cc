// StreamDecoder on libavcodec: its parser splits the byte stream into
// packets (wherever the caller's pieces end), the decoder turns them into
// frames, FrameConverter into RGB.
#include "video/stream_decoder.h"

#include <memory>
#include <string>
#include <utility>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/version.h>
}

#include "absl/strings/str_cat.h"
#include "video/av_convert.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

using internal::FrameConverter;

struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct ParserDeleter {
  void operator()(AVCodecParserContext* p) const { av_parser_close(p); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};

class AnnexBDecoder final : public StreamDecoder {
 public:
  AnnexBDecoder(const Options& options, const AVCodec* codec)
      : options_(options), codec_(codec),
        converter_(options.geometry, options.limits) {}

  absl::Status Open() {
    parser_.reset(av_parser_init(codec_->id));
    decoder_.reset(avcodec_alloc_context3(codec_));
    packet_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!parser_ || !decoder_ || !packet_ || !frame_) {
      return absl::ResourceExhaustedError("could not decode video: out of memory");
    }
    decoder_->thread_count = options_.threads;
    // Frames with decode errors are flagged, not hidden: they are counted
    // and dropped here.
    decoder_->flags2 |= AV_CODEC_FLAG2_SHOW_ALL;
    if (avcodec_open2(decoder_.get(), codec_, nullptr) < 0) {
      return absl::InternalError(
          absl::StrCat("could not decode video: cannot open the ",
                       codec_->name, " decoder"));
    }
    return absl::OkStatus();
  }

  absl::Status Push(absl::string_view bytes,
                    std::vector<Frame>* frames) override {
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t left = bytes.size();
    while (left > 0) {
      uint8_t* out = nullptr;
      int out_size = 0;
      const int used = av_parser_parse2(
          parser_.get(), decoder_.get(), &out, &out_size, data,
          static_cast<int>(std::min<size_t>(left, 1 << 30)), AV_NOPTS_VALUE,
          AV_NOPTS_VALUE, 0);
      if (used < 0) {
        ++corrupt_;
        return absl::OkStatus();  // the parser lost the stream: drop the piece
      }
      data += used;
      left -= static_cast<size_t>(used);
      if (out_size > 0) {
        if (absl::Status s = Decode(out, out_size, frames); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish(std::vector<Frame>* frames) override {
    uint8_t* out = nullptr;
    int out_size = 0;
    av_parser_parse2(parser_.get(), decoder_.get(), &out, &out_size, nullptr,
                     0, AV_NOPTS_VALUE, AV_NOPTS_VALUE, 0);
    if (out_size > 0) {
      if (absl::Status s = Decode(out, out_size, frames); !s.ok()) return s;
    }
    avcodec_send_packet(decoder_.get(), nullptr);
    return Receive(frames);
  }

  int64_t corrupt_packets() const override { return corrupt_; }
  int64_t dropped_frames() const override { return dropped_; }

 private:
  absl::Status Decode(uint8_t* data, int size, std::vector<Frame>* frames) {
    packet_->data = data;
    packet_->size = size;
    packet_->pts = next_pts_++;
    packet_->flags = parser_->key_frame == 1 ? AV_PKT_FLAG_KEY : 0;
    int r = avcodec_send_packet(decoder_.get(), packet_.get());
    if (r == AVERROR(EAGAIN)) {
      if (absl::Status s = Receive(frames); !s.ok()) return s;
      r = avcodec_send_packet(decoder_.get(), packet_.get());
    }
    if (r < 0 && r != AVERROR(EAGAIN)) {
      ++corrupt_;
      waiting_for_key_ = true;
    }
    return Receive(frames);
  }

  absl::Status Receive(std::vector<Frame>* frames) {
    for (;;) {
      const int r = avcodec_receive_frame(decoder_.get(), frame_.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return absl::OkStatus();
      if (r < 0) {
        ++corrupt_;
        waiting_for_key_ = true;
        return absl::OkStatus();
      }
      const int64_t index = produced_++;
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(58, 29, 100)
      const bool key = (frame_->flags & AV_FRAME_FLAG_KEY) != 0;
#else  // FFmpeg 5.1 (Debian 12): AV_FRAME_FLAG_KEY came with 6.1
      const bool key = frame_->key_frame != 0;
#endif
      if (frame_->decode_error_flags != 0 ||
          (frame_->flags & AV_FRAME_FLAG_CORRUPT) != 0) {
        ++corrupt_;
        waiting_for_key_ = true;
      }
      if (waiting_for_key_ && key && frame_->decode_error_flags == 0 &&
          (frame_->flags & AV_FRAME_FLAG_CORRUPT) == 0) {
        waiting_for_key_ = false;
      }
      if (waiting_for_key_) {
        ++dropped_;
        av_frame_unref(frame_.get());
        continue;
      }
      Frame out;
      out.index = index;
      out.pts = frame_->pts != AV_NOPTS_VALUE ? frame_->pts : index;
      out.keyframe = key;
      out.rgb.resize(static_cast<size_t>(options_.geometry.crop_height *
                                         options_.geometry.crop_width * 3));
      absl::Status s = converter_.Write(
          *frame_, index, reinterpret_cast<uint8_t*>(out.rgb.data()));
      av_frame_unref(frame_.get());
      if (!s.ok()) return s;
      frames->push_back(std::move(out));
    }
  }

  const Options options_;
  const AVCodec* const codec_;
  FrameConverter converter_;
  std::unique_ptr<AVCodecParserContext, ParserDeleter> parser_;
  std::unique_ptr<AVCodecContext, CodecDeleter> decoder_;
  std::unique_ptr<AVPacket, PacketDeleter> packet_;
  std::unique_ptr<AVFrame, FrameDeleter> frame_;
  int64_t next_pts_ = 0;
  int64_t produced_ = 0;
  int64_t corrupt_ = 0;
  int64_t dropped_ = 0;
  bool waiting_for_key_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StreamDecoder>> StreamDecoder::Create(
    const Options& options) {
  if (absl::Status s = internal::ValidateGeometry(options.geometry); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(internal::kPrefix, s.message()));
  }
  AVCodecID id = AV_CODEC_ID_NONE;
  if (options.codec == "h264") id = AV_CODEC_ID_H264;
  if (options.codec == "hevc") id = AV_CODEC_ID_HEVC;
  const AVCodec* codec =
      id == AV_CODEC_ID_NONE ? nullptr : avcodec_find_decoder(id);
  if (codec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        internal::kPrefix, "unsupported stream codec \"", options.codec,
        "\" (known: h264, hevc)"));
  }
  auto decoder = std::make_unique<AnnexBDecoder>(options, codec);
  if (absl::Status s = decoder->Open(); !s.ok()) return s;
  return std::unique_ptr<StreamDecoder>(std::move(decoder));
}

}  // namespace clipserve::video
