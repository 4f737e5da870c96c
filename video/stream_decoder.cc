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
#include "video/frame_output.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

using internal::FrameOutput;
using internal::kPrefix;
using internal::OutOfMemory;

using internal::AvErrorText;
using internal::AvPtr;

absl::Status PushAfterFinish() {
  return absl::FailedPreconditionError(
      absl::StrCat(kPrefix, "Push() after Finish()"));
}

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
    if (options_.whole_access_units) parser_->flags |= PARSER_FLAG_COMPLETE_FRAMES;
    return output_.Open(codec_, nullptr, AVRational{0, 1});
  }

  absl::Status Push(absl::string_view bytes, Sink* frames) override {
    if (finished_) return PushAfterFinish();
    // The parser reads up to AV_INPUT_BUFFER_PADDING_SIZE bytes past the
    // end of what it is given, so it parses a padded copy, a window at a
    // time (the buffer is allocated once).
    while (!bytes.empty()) {
      // An access unit is parsed whole (the buffer grows to the largest).
      const size_t n = options_.whole_access_units
                           ? bytes.size()
                           : std::min(bytes.size(), kParseWindow);
      if (window_.size() < n + AV_INPUT_BUFFER_PADDING_SIZE) {
        window_.resize(n + AV_INPUT_BUFFER_PADDING_SIZE);
      }
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
        if ((packet->flags & AV_PKT_FLAG_CORRUPT) != 0 || loss_.Lost(*packet)) {
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

  const Options options_;
  const char* const demuxers_;
  const char* const name_;
  FrameOutput output_;  // the demuxer's thread's only, as are:
  Sink* current_sink_ = nullptr;  // (set in Read(), under mu_)
  internal::LossDetector loss_;
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
