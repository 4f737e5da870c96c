// LiveSource on libavformat: the URL opened with only its scheme's
// protocols, every nested open checked against the policy, reads bounded by
// an interrupt callback (stop flag or no data for io_timeout), packets
// decoded by FrameOutput.
#include "video/live_source.h"

#include <algorithm>
#include <thread>
#include <utility>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
}

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "video/av_convert.h"
#include "video/av_ptr.h"
#include "video/frame_output.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

using internal::AvErrorText;
using internal::AvPtr;
using internal::FrameOutput;
using internal::kPrefix;

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The protocols a URL's scheme needs, and nothing else.
const char* Protocols(absl::string_view url) {
  if (absl::StartsWith(url, "file://")) return "file";
  if (absl::StartsWith(url, "udp://")) return "udp,rtp";
  if (absl::StartsWith(url, "rtsps://")) return "rtsps,rtsp,rtp,srtp,udp,tcp,tls";
  if (absl::StartsWith(url, "rtsp://")) return "rtsp,rtp,udp,tcp";
  return "http,https,tcp,tls,crypto";  // http(s), HLS included
}

// Demuxers a live source may be: transport streams, HLS, RTSP's, the MP4
// and Matroska families (files replayed), raw H.264/H.265, FLV.
constexpr char kDemuxers[] =
    "mpegts,hls,rtsp,rtp,sdp,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,h264,hevc,"
    "flv,avi";

// Adds frame indices' offset on the way to the caller's sink.
class OffsetSink final : public StreamDecoder::Sink {
 public:
  OffsetSink(StreamDecoder::Sink* sink, int64_t offset) : sink_(sink), offset_(offset) {}
  uint8_t* Place(const StreamDecoder::FrameInfo& info) override {
    StreamDecoder::FrameInfo shifted = info;
    shifted.index += offset_;
    return sink_->Place(shifted);
  }
  void Written(const StreamDecoder::FrameInfo& info) override {
    StreamDecoder::FrameInfo shifted = info;
    shifted.index += offset_;
    sink_->Written(shifted);
  }

 private:
  StreamDecoder::Sink* const sink_;
  const int64_t offset_;
};

StreamDecoder::Options DecoderOptions(const LiveSource::Options& options) {
  StreamDecoder::Options o;
  o.geometry = options.geometry;
  o.limits = options.limits;
  o.threads = options.threads;
  return o;
}

class FfmpegLiveSource final : public LiveSource {
 public:
  FfmpegLiveSource(const Options& options, const SourcePolicy& policy,
                   const std::atomic<bool>* stop)
      : options_(options),
        policy_(policy),
        stop_(stop),
        decoder_options_(DecoderOptions(options)) {}

  absl::Status Open() { return Refused(OpenSource()); }

  absl::Status Run(StreamDecoder::Sink* sink, int64_t first_index) override {
    return Refused(RunSource(sink, first_index));
  }

 private:
  absl::Status OpenSource() {
    AVFormatContext* raw = avformat_alloc_context();
    if (raw == nullptr) return internal::OutOfMemory();
    raw->interrupt_callback.callback = &FfmpegLiveSource::Interrupt;
    raw->interrupt_callback.opaque = this;
    raw->opaque = this;
    default_io_open_ = raw->io_open;
    raw->io_open = &FfmpegLiveSource::IoOpen;
    raw->protocol_whitelist = av_strdup(Protocols(options_.url));
    raw->format_whitelist = av_strdup(kDemuxers);
    // Start quickly: a second of stream is enough to know its video.
    raw->probesize = 2 << 20;
    raw->max_analyze_duration = 1000000;
    AVDictionary* dict = nullptr;
    if (options_.rtsp_tcp) av_dict_set(&dict, "rtsp_transport", "tcp", 0);
    if (absl::StartsWith(options_.url, "udp://")) {
      av_dict_set(&dict, "overrun_nonfatal", "1", 0);
    }
    Arm();
    const int r = avformat_open_input(&raw, options_.url.c_str(), nullptr, &dict);
    av_dict_free(&dict);
    if (r < 0) return Failure("cannot open", r);  // (raw was freed)
    demuxer_.reset(raw);
    Arm();
    if (const int f = avformat_find_stream_info(demuxer_.get(), nullptr); f < 0) {
      return Failure("cannot read the stream's header from", f);
    }
    stream_ = av_find_best_stream(demuxer_.get(), AVMEDIA_TYPE_VIDEO, -1, -1,
                                  nullptr, 0);
    if (stream_ < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(kPrefix, "source ", options_.url, " holds no video"));
    }
    const AVStream* s = demuxer_->streams[stream_];
    const AVCodec* codec = avcodec_find_decoder(s->codecpar->codec_id);
    if (codec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          kPrefix, "source ", options_.url, ": its video codec cannot be decoded"));
    }
    if (s->codecpar->width > options_.limits.max_width ||
        s->codecpar->height > options_.limits.max_height) {
      return absl::InvalidArgumentError(absl::StrCat(
          kPrefix, "source ", options_.url, " is ", s->codecpar->width, "x",
          s->codecpar->height, ", larger than ", options_.limits.max_width, "x",
          options_.limits.max_height));
    }
    time_base_ = s->time_base;
    packet_.reset(av_packet_alloc());
    if (!packet_) return internal::OutOfMemory();
    return output_.Open(codec, s->codecpar, s->time_base);
  }

  absl::Status RunSource(StreamDecoder::Sink* sink, int64_t first_index) {
    OffsetSink offset(sink, first_index);
    const bool paced =
        absl::StartsWith(options_.url, "file://") && options_.replay_speed > 0;
    for (;;) {
      Arm();
      const int r = av_read_frame(demuxer_.get(), packet_.get());
      if (r == AVERROR_EOF) {
        output_.set_arrival_ns(SteadyNanos());
        absl::Status flushed = output_.Decode(nullptr, &offset);
        if (!flushed.ok() || absl::StartsWith(options_.url, "file://")) return flushed;
        // A network source that ends has dropped: a camera does not end.
        return absl::UnavailableError(
            absl::StrCat("stream source ", options_.url, " ended"));
      }
      if (r < 0) return Failure("lost", r);
      absl::Status decoded = absl::OkStatus();
      if (packet_->stream_index == stream_) {
        if (paced) Pace(*packet_);
        if (stopped()) {
          av_packet_unref(packet_.get());
          return absl::CancelledError("stream source stopped");
        }
        if ((packet_->flags & AV_PKT_FLAG_CORRUPT) != 0 || loss_.Lost(*packet_)) {
          output_.Damaged();
        }
        output_.set_arrival_ns(SteadyNanos());
        decoded = output_.Decode(packet_.get(), &offset);
      }
      av_packet_unref(packet_.get());
      if (!decoded.ok()) return decoded;
    }
  }

  // A URL outside the policy that the source led to ends it, whatever the
  // demuxer made of the refusal (HLS skips a segment it cannot open).
  absl::Status Refused(absl::Status status) const {
    if (refused_url_.empty()) return status;
    return absl::PermissionDeniedError(absl::StrCat(
        "stream source ", options_.url, " led to ", refused_url_.substr(0, 200),
        ", which is not under a prefix this server pulls from"));
  }

 public:
  int64_t dropped_frames() const override { return output_.dropped(); }

 private:
  bool stopped() const { return stop_->load(std::memory_order_relaxed); }

  // The next blocking step may take io_timeout from now.
  void Arm() { io_deadline_ns_ = SteadyNanos() + options_.io_timeout.count() * 1000000; }

  static int Interrupt(void* opaque) {
    auto* self = static_cast<FfmpegLiveSource*>(opaque);
    if (self->stopped()) return 1;
    if (SteadyNanos() > self->io_deadline_ns_) {
      self->timed_out_ = true;
      return 1;
    }
    return 0;
  }

  // Every URL the demuxer opens (the source's own, an HLS playlist's
  // segments) must be under the policy too.
  static int IoOpen(AVFormatContext* s, AVIOContext** pb, const char* url,
                    int flags, AVDictionary** options) {
    auto* self = static_cast<FfmpegLiveSource*>(s->opaque);
    if (!CheckSourceUrl(url, self->policy_).ok()) {
      self->refused_url_ = url;
      return AVERROR(EPERM);
    }
    return self->default_io_open_(s, pb, url, flags, options);
  }

  // Sleeps until `packet` is due at replay_speed times real time.
  void Pace(const AVPacket& packet) {
    const int64_t ts = packet.pts != AV_NOPTS_VALUE ? packet.pts : packet.dts;
    if (ts == AV_NOPTS_VALUE) return;
    const int64_t us = av_rescale_q(ts, time_base_, AVRational{1, 1000000});
    const int64_t now = SteadyNanos();
    if (pace_origin_ns_ == 0) {
      pace_origin_ns_ = now;
      pace_origin_us_ = us;
      return;
    }
    const int64_t due =
        pace_origin_ns_ +
        static_cast<int64_t>(static_cast<double>(us - pace_origin_us_) * 1000.0 /
                             options_.replay_speed);
    // In slices, so that a stop is seen within 20 ms.
    for (int64_t left = due - SteadyNanos(); left > 0 && !stopped();
         left = due - SteadyNanos()) {
      std::this_thread::sleep_for(
          std::chrono::nanoseconds(std::min<int64_t>(left, 20000000)));
    }
  }

  // UNAVAILABLE (or CANCELLED, PERMISSION_DENIED) for a failed step.
  absl::Status Failure(absl::string_view what, int r) {
    if (stopped()) return absl::CancelledError("stream source stopped");
    if (timed_out_) {
      return absl::UnavailableError(absl::StrCat(
          "stream source ", options_.url, ": no data for ",
          options_.io_timeout.count(), " ms"));
    }
    return absl::UnavailableError(
        absl::StrCat("stream source ", what, " ", options_.url, ": ", AvErrorText(r)));
  }

  const Options options_;
  const SourcePolicy policy_;
  const std::atomic<bool>* const stop_;
  const StreamDecoder::Options decoder_options_;
  FrameOutput output_{decoder_options_};
  internal::LossDetector loss_;
  AvPtr<AVFormatContext> demuxer_;
  AvPtr<AVPacket> packet_;
  decltype(AVFormatContext::io_open) default_io_open_ = nullptr;
  int stream_ = -1;
  AVRational time_base_{0, 1};
  int64_t io_deadline_ns_ = 0;
  bool timed_out_ = false;
  std::string refused_url_;
  int64_t pace_origin_ns_ = 0;
  int64_t pace_origin_us_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LiveSource>> LiveSource::Open(
    const Options& options, const SourcePolicy& policy,
    const std::atomic<bool>* stop) {
  if (absl::Status s = CheckSourceUrl(options.url, policy); !s.ok()) return s;
  if (absl::Status s = internal::ValidateGeometry(options.geometry); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(kPrefix, s.message()));
  }
  internal::QuietFfmpegOnce();
  avformat_network_init();
  auto source = std::make_unique<FfmpegLiveSource>(options, policy, stop);
  if (absl::Status s = source->Open(); !s.ok()) return s;
  return std::unique_ptr<LiveSource>(std::move(source));
}

}  // namespace clipserve::video
