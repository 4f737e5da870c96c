// StreamDecoder on FFmpeg's libraries.
//  - Annex B: libavcodec's parser splits the byte stream into packets
//    (wherever the caller's pieces end) on the caller's thread.
//  - Containers (MPEG-TS, fragmented MP4): libavformat demuxes on a thread of
//    the decoder's own, whose read callback hands it the pushed bytes and
//    blocks when they are used up; Push() returns when it blocks (or ends).
// Both feed packets to FrameOutput: the decoder, the keyframe wait after
// damage, and FrameConverter into RGB.
#include "video/stream_decoder.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libavutil/version.h>
}

#include "absl/strings/str_cat.h"
#include "video/av_convert.h"
#include "video/av_ptr.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

using internal::FrameConverter;
using internal::kPrefix;

using internal::AvErrorText;
using internal::AvPtr;

absl::Status PushAfterFinish() {
  return absl::FailedPreconditionError(
      absl::StrCat(kPrefix, "Push() after Finish()"));
}

absl::Status OutOfMemory() {
  return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
}


// Packets in, RGB frames out, with the keyframe wait after damage.
class FrameOutput {
 public:
  FrameOutput(const StreamDecoder::Options& options)
      : options_(options), converter_(options.geometry, options.limits) {}

  // `time_base`: the packets' timestamps' unit ({0, 1}: none).
  absl::Status Open(const AVCodec* codec, const AVCodecParameters* par,
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
      const std::string why = absl::StrCat(kPrefix, "cannot open the ",
                                           codec->name, " decoder (",
                                           AvErrorText(r), ")");
      return par != nullptr ? absl::InvalidArgumentError(why)
                            : absl::InternalError(why);
    }
    return absl::OkStatus();
  }
  AVCodecContext* decoder() { return decoder_.get(); }

  // Decodes `packet` (nullptr: the end); what comes out goes to `sink`.
  absl::Status Decode(const AVPacket* packet, StreamDecoder::Sink* sink) {
    int r = avcodec_send_packet(decoder_.get(), packet);
    if (r == AVERROR(EAGAIN)) {
      if (absl::Status s = Receive(sink); !s.ok()) return s;
      r = avcodec_send_packet(decoder_.get(), packet);
    }
    if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_EOF) Damaged();
    return Receive(sink);
  }

  // A packet or stretch of bytes that was lost: wait for a keyframe.
  void Damaged() {
    ++corrupt_;
    waiting_for_key_ = true;
  }

  int64_t corrupt() const { return corrupt_; }
  int64_t dropped() const { return dropped_; }

 private:
  absl::Status Receive(StreamDecoder::Sink* sink) {
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
      }
      info.keyframe = key;
      uint8_t* out = sink != nullptr ? sink->Place(info) : nullptr;
      absl::Status s = out != nullptr ? converter_.Write(*frame_, index, out)
                                      : absl::OkStatus();
      av_frame_unref(frame_.get());
      if (!s.ok()) return s;
      if (out != nullptr) sink->Written(info);
    }
  }

  const StreamDecoder::Options& options_;
  FrameConverter converter_;
  AvPtr<AVCodecContext> decoder_;
  AvPtr<AVFrame> frame_;
  AVRational time_base_{0, 1};
  int64_t produced_ = 0;
  int64_t corrupt_ = 0;
  int64_t dropped_ = 0;
  bool waiting_for_key_ = false;
};

// Bytes of a pushed piece the Annex B parser is given at a time.
constexpr size_t kParseWindow = 64 << 10;

class AnnexBDecoder final : public StreamDecoder {
 public:
  AnnexBDecoder(const Options& options, const AVCodec* codec)
      : options_(options), codec_(codec), output_(options_) {}

  absl::Status Open() {
    parser_.reset(av_parser_init(codec_->id));
    packet_.reset(av_packet_alloc());
    if (!parser_ || !packet_) return OutOfMemory();
    return output_.Open(codec_, nullptr, AVRational{0, 1});
  }

  absl::Status Push(absl::string_view bytes, Sink* frames) override {
    if (finished_) return PushAfterFinish();
    // The parser reads up to AV_INPUT_BUFFER_PADDING_SIZE bytes past the
    // end of what it is given, so it parses a padded copy, a window at a
    // time (the buffer is allocated once).
    while (!bytes.empty()) {
      const size_t n = std::min(bytes.size(), kParseWindow);
      std::memcpy(window_.data(), bytes.data(), n);
      std::memset(window_.data() + n, 0, AV_INPUT_BUFFER_PADDING_SIZE);
      bytes.remove_prefix(n);
      const uint8_t* data = window_.data();
      size_t left = n;
      while (left > 0) {
        uint8_t* out = nullptr;
        int out_size = 0;
        const int used = av_parser_parse2(
            parser_.get(), output_.decoder(), &out, &out_size, data,
            static_cast<int>(left), AV_NOPTS_VALUE, AV_NOPTS_VALUE, 0);
        if (used < 0) {
          output_.Damaged();  // the parser lost the stream: drop the window
          break;
        }
        data += used;
        left -= static_cast<size_t>(used);
        if (out_size > 0) {
          if (absl::Status s = Decode(out, out_size, frames); !s.ok()) return s;
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish(Sink* frames) override {
    if (finished_) return absl::OkStatus();
    finished_ = true;
    uint8_t* out = nullptr;
    int out_size = 0;
    av_parser_parse2(parser_.get(), output_.decoder(), &out, &out_size,
                     nullptr, 0, AV_NOPTS_VALUE, AV_NOPTS_VALUE, 0);
    if (out_size > 0) {
      if (absl::Status s = Decode(out, out_size, frames); !s.ok()) return s;
    }
    return output_.Decode(nullptr, frames);
  }

  int64_t corrupt_packets() const override { return output_.corrupt(); }
  int64_t dropped_frames() const override { return output_.dropped(); }

 private:
  absl::Status Decode(uint8_t* data, int size, Sink* frames) {
    packet_->data = data;
    packet_->size = size;
    packet_->pts = next_pts_++;
    packet_->flags = parser_->key_frame == 1 ? AV_PKT_FLAG_KEY : 0;
    return output_.Decode(packet_.get(), frames);
  }

  const Options options_;
  const AVCodec* const codec_;
  FrameOutput output_;
  AvPtr<AVCodecParserContext> parser_;
  AvPtr<AVPacket> packet_;
  std::vector<uint8_t> window_ =
      std::vector<uint8_t>(kParseWindow + AV_INPUT_BUFFER_PADDING_SIZE);
  int64_t next_pts_ = 0;
  bool finished_ = false;
};

// libavformat's read buffer. Demuxers step back a few bytes now and then
// (the MP4 one while reading codec headers), which a stream that cannot
// seek allows only within this buffer; libavio keeps appending the caller's
// pieces, however small, until less than 32 KiB of it is left, so a buffer
// well above that keeps the bytes just read.
constexpr int kContainerIoBytes = 256 << 10;
// Failed reads at one position before the stream is given up.
constexpr int kMaxStuckReads = 64;
// A jump in decode timestamps of more than this many frame steps means
// packets were lost.
constexpr int64_t kLostSteps = 3;


class ContainerDecoder final : public StreamDecoder {
 public:
  ContainerDecoder(const Options& options, const char* demuxers,
                   const char* name)
      : options_(options), demuxers_(demuxers), name_(name),
        output_(options_) {}

  ~ContainerDecoder() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      abort_ = true;
      end_ = true;
    }
    wake_demuxer_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Push(absl::string_view bytes, Sink* sink) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (end_) return PushAfterFinish();
    if (!thread_.joinable()) thread_ = std::thread([this] { Demux(); });
    input_ = bytes;
    sink_ = sink;
    waiting_ = false;
    wake_demuxer_.notify_all();
    // Until the demuxer has taken every byte and waits for more (or is
    // done): every frame those bytes complete has gone to `sink` by then.
    wake_caller_.wait(lock, [this] { return (waiting_ && input_.empty()) || done_; });
    input_ = absl::string_view();
    sink_ = nullptr;
    return status_;
  }

  absl::Status Finish(Sink* sink) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      end_ = true;
      sink_ = sink;
    }
    wake_demuxer_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    sink_ = nullptr;
    return status_;
  }

  int64_t corrupt_packets() const override {
    return corrupt_.load(std::memory_order_relaxed);
  }
  int64_t dropped_frames() const override {
    return dropped_.load(std::memory_order_relaxed);
  }

 private:
  // libavformat's read callback, on the demuxer's thread.
  static int Read(void* opaque, uint8_t* buf, int n) {
    auto* self = static_cast<ContainerDecoder*>(opaque);
    std::unique_lock<std::mutex> lock(self->mu_);
    while (self->input_.empty() && !self->end_) {
      self->waiting_ = true;
      self->wake_caller_.notify_all();
      self->wake_demuxer_.wait(lock);
    }
    // The frames these bytes complete go to this call's sink (frames of
    // earlier bytes all went out before the earlier Push() returned).
    self->current_sink_ = self->sink_;
    if (self->abort_ || self->input_.empty()) return AVERROR_EOF;
    const size_t take = std::min(self->input_.size(), static_cast<size_t>(n));
    std::memcpy(buf, self->input_.data(), take);
    self->input_.remove_prefix(take);
    return static_cast<int>(take);
  }

  // The demuxer's thread: open, then packets to frames until the end.
  void Demux() {
    absl::Status status = DemuxAll();
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.ok()) status_ = status;
    done_ = true;
    wake_caller_.notify_all();
  }

  // The counts, for the caller's side.
  void PublishCounts() {
    corrupt_.store(output_.corrupt(), std::memory_order_relaxed);
    dropped_.store(output_.dropped(), std::memory_order_relaxed);
  }

  absl::Status DemuxAll() {
    auto* buffer = static_cast<uint8_t*>(av_malloc(kContainerIoBytes));
    if (buffer == nullptr) return OutOfMemory();
    AvPtr<AVIOContext> io(avio_alloc_context(
        buffer, kContainerIoBytes, 0, this, &ContainerDecoder::Read, nullptr,
        nullptr));
    if (io == nullptr) {
      av_free(buffer);
      return OutOfMemory();
    }
    io->seekable = 0;
    AVFormatContext* raw = avformat_alloc_context();
    if (raw == nullptr) return OutOfMemory();
    raw->pb = io.get();
    raw->flags |= AVFMT_FLAG_CUSTOM_IO;
    raw->format_whitelist = av_strdup(demuxers_);
    raw->protocol_whitelist = av_strdup("none");
    const AVInputFormat* format = av_find_input_format(
        options_.format == "mpegts" ? "mpegts" : "mp4");
    if (avformat_open_input(&raw, nullptr, format, nullptr) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          kPrefix, "the stream is not ", name_, " (or its start is corrupt)"));
    }
    AvPtr<AVFormatContext> demuxer(raw);
    AvPtr<AVPacket> packet(av_packet_alloc());
    if (packet == nullptr) return OutOfMemory();
    int stream = -1;  // the video stream decoded, once one is seen
    // Read errors in a row with no byte consumed: the demuxer is stuck.
    int stuck = 0;
    int64_t stuck_at = -1;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (abort_) return absl::OkStatus();
      }
      const int r = av_read_frame(demuxer.get(), packet.get());
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (abort_) {  // what was read ends where the bytes were cut off
          av_packet_unref(packet.get());
          return absl::OkStatus();
        }
      }
      if (r == AVERROR_EOF) break;
      if (r < 0) {
        // Not the end of the bytes: a packet that could not be read.
        output_.Damaged();
        const int64_t at = avio_tell(io.get());
        stuck = at == stuck_at ? stuck + 1 : 0;
        stuck_at = at;
        if (stuck > kMaxStuckReads) {
          return absl::InvalidArgumentError(absl::StrCat(
              kPrefix, "the ", name_, " stream cannot be demuxed (",
              AvErrorText(r), ")"));
        }
        bool ended;
        {
          std::lock_guard<std::mutex> lock(mu_);
          ended = end_ && input_.empty();
        }
        // (avio_feof may call Read(), which takes mu_.)
        if (ended && avio_feof(io.get())) break;
        continue;
      }
      if (stream < 0 && packet->stream_index < static_cast<int>(demuxer->nb_streams)) {
        const AVStream* s = demuxer->streams[packet->stream_index];
        if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
          const AVCodec* codec = avcodec_find_decoder(s->codecpar->codec_id);
          if (codec == nullptr) {
            av_packet_unref(packet.get());
            return absl::InvalidArgumentError(absl::StrCat(
                kPrefix, "the ", name_, " stream's video codec cannot be decoded"));
          }
          if (absl::Status st = output_.Open(codec, s->codecpar, s->time_base);
              !st.ok()) {
            av_packet_unref(packet.get());
            return st;
          }
          stream = packet->stream_index;
        }
      }
      absl::Status decoded = absl::OkStatus();
      if (packet->stream_index == stream) {
        if ((packet->flags & AV_PKT_FLAG_CORRUPT) != 0 || Lost(*packet)) {
          output_.Damaged();
        }
        decoded = output_.Decode(packet.get(), current_sink_);
      }
      av_packet_unref(packet.get());
      PublishCounts();
      if (!decoded.ok()) return decoded;
    }
    if (stream < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(kPrefix, "the ", name_, " stream holds no video"));
    }
    absl::Status flushed = output_.Decode(nullptr, current_sink_);
    PublishCounts();
    return flushed;
  }

  // Whether packets were lost before `packet`: its decode timestamp jumps
  // more than kLostSteps of the shortest step between packets seen so far.
  // (A transport stream that loses whole packets carries no other sign of
  // it, and the H.264 decoder would conceal the gap into plausible frames.)
  bool Lost(const AVPacket& packet) {
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

  const Options options_;
  const char* const demuxers_;
  const char* const name_;
  FrameOutput output_;  // the demuxer's thread's only, as are:
  Sink* current_sink_ = nullptr;  // (set in Read(), under mu_)
  int64_t last_dts_ = AV_NOPTS_VALUE;
  int64_t min_step_ = 0;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable wake_demuxer_;  // input_ given, or end_
  std::condition_variable wake_caller_;   // waiting_ or done_
  absl::string_view input_;  // bytes of the current Push() not yet read
  bool waiting_ = false;     // the demuxer waits for bytes
  bool end_ = false;         // Finish() (or destruction): no more bytes
  bool abort_ = false;       // destruction: stop now
  bool done_ = false;        // the demuxer's thread has finished
  absl::Status status_;
  Sink* sink_ = nullptr;     // while Push() or Finish() waits
  std::atomic<int64_t> corrupt_{0};
  std::atomic<int64_t> dropped_{0};
};

}  // namespace

uint8_t* FrameCollector::Place(const StreamDecoder::FrameInfo& info) {
  // A frame placed but never written (its conversion failed) is replaced.
  if (!placed_) frames.emplace_back();
  StreamDecoder::Frame& frame = frames.back();
  static_cast<StreamDecoder::FrameInfo&>(frame) = info;
  frame.rgb.resize(frame_bytes_);
  placed_ = true;
  return reinterpret_cast<uint8_t*>(frame.rgb.data());
}

void FrameCollector::Written(const StreamDecoder::FrameInfo& /*info*/) {
  placed_ = false;
}

absl::StatusOr<std::unique_ptr<StreamDecoder>> StreamDecoder::Create(
    const Options& options) {
  if (absl::Status s = internal::ValidateGeometry(options.geometry); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(kPrefix, s.message()));
  }
  if (options.threads < 0 || options.threads > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        kPrefix, "invalid decode threads ", options.threads,
        "; must be in [0, 64]"));
  }
  internal::QuietFfmpegOnce();
  if (options.format == "mpegts") {
    return std::unique_ptr<StreamDecoder>(
        std::make_unique<ContainerDecoder>(options, "mpegts", "MPEG-TS"));
  }
  if (options.format == "fmp4") {
    return std::unique_ptr<StreamDecoder>(std::make_unique<ContainerDecoder>(
        options, "mov,mp4,m4a,3gp,3g2,mj2", "fragmented MP4"));
  }
  AVCodecID id = AV_CODEC_ID_NONE;
  if (options.format == "h264") id = AV_CODEC_ID_H264;
  if (options.format == "hevc") id = AV_CODEC_ID_HEVC;
  const AVCodec* codec =
      id == AV_CODEC_ID_NONE ? nullptr : avcodec_find_decoder(id);
  if (codec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        kPrefix, "unsupported stream format \"", options.format,
        "\" (known: h264, hevc, mpegts, fmp4)"));
  }
  auto decoder = std::make_unique<AnnexBDecoder>(options, codec);
  if (absl::Status s = decoder->Open(); !s.ok()) return s;
  return std::unique_ptr<StreamDecoder>(std::move(decoder));
}

}  // namespace clipserve::video
