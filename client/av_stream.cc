#include "client/av_stream.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/mathematics.h>
#include <libavutil/opt.h>
}

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clipserve::client {
namespace {

struct AvFree {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
  void operator()(AVPacket* p) const { av_packet_free(&p); }
  void operator()(AVFrame* f) const { av_frame_free(&f); }
  void operator()(AVIOContext* io) const {
    if (io != nullptr) av_freep(&io->buffer);
    avio_context_free(&io);
  }
};
template <typename T>
using Av = std::unique_ptr<T, AvFree>;

struct InputFree {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct OutputFree {
  void operator()(AVFormatContext* f) const { avformat_free_context(f); }
};

std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, text, sizeof(text));
  return text;
}

void QuietOnce() {
  static const bool once = [] {
    av_log_set_level(AV_LOG_ERROR);
    return true;
  }();
  (void)once;
}

constexpr AVRational kMicros = {1, 1000000};

// An MPEG-TS muxer of one video stream that writes into a caller's string.
class TsMuxer {
 public:
  ~TsMuxer() {
    if (fmt_ != nullptr) fmt_->pb = nullptr;  // io_ frees itself
  }

  // Packets will come in `time_base`; `par` describes their stream.
  absl::Status Open(const AVCodecParameters* par, AVRational time_base) {
    in_time_base_ = time_base;
    AVFormatContext* fmt = nullptr;
    int rc = avformat_alloc_output_context2(&fmt, nullptr, "mpegts", nullptr);
    if (rc < 0) return absl::InternalError(absl::StrCat("mpegts muxer: ", AvError(rc)));
    fmt_.reset(fmt);
    AVStream* st = avformat_new_stream(fmt, nullptr);
    if (st == nullptr) return absl::InternalError("mpegts muxer: no stream");
    if ((rc = avcodec_parameters_copy(st->codecpar, par)) < 0) {
      return absl::InternalError(absl::StrCat("mpegts muxer: ", AvError(rc)));
    }
    st->codecpar->codec_tag = 0;
    st->time_base = time_base;
    constexpr int kBuffer = 64 << 10;
    auto* buffer = static_cast<unsigned char*>(av_malloc(kBuffer));
    if (buffer == nullptr) return absl::ResourceExhaustedError("out of memory");
    io_.reset(avio_alloc_context(buffer, kBuffer, 1, this, nullptr, &TsMuxer::Sink,
                                 nullptr));
    if (io_ == nullptr) {
      av_free(buffer);
      return absl::ResourceExhaustedError("out of memory");
    }
    fmt->pb = io_.get();
    sink_ = &pending_;
    if ((rc = avformat_write_header(fmt, nullptr)) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("mpegts muxer: ", AvError(rc)));
    }
    avio_flush(io_.get());
    return absl::OkStatus();
  }

  // Replaces *out with what the muxer writes for `pkt` (rescaled in place).
  absl::Status Write(AVPacket* pkt, std::string* out) {
    out->clear();
    out->swap(pending_);  // header bytes, before the first packet's
    sink_ = out;
    pkt->stream_index = 0;
    pkt->pos = -1;
    av_packet_rescale_ts(pkt, in_time_base_, fmt_->streams[0]->time_base);
    const int rc = av_write_frame(fmt_.get(), pkt);
    avio_flush(io_.get());
    sink_ = &pending_;
    if (rc < 0) return absl::InvalidArgumentError(absl::StrCat("mpegts muxer: ", AvError(rc)));
    return absl::OkStatus();
  }

  absl::Status Finish(std::string* out) {
    out->clear();
    out->swap(pending_);
    sink_ = out;
    const int rc = av_write_trailer(fmt_.get());
    avio_flush(io_.get());
    sink_ = &pending_;
    if (rc < 0) return absl::InvalidArgumentError(absl::StrCat("mpegts muxer: ", AvError(rc)));
    return absl::OkStatus();
  }

 private:
#if LIBAVFORMAT_VERSION_MAJOR >= 61
  static int Sink(void* opaque, const uint8_t* data, int size) {
#else
  static int Sink(void* opaque, uint8_t* data, int size) {
#endif
    static_cast<TsMuxer*>(opaque)->sink_->append(reinterpret_cast<const char*>(data),
                                                  static_cast<size_t>(size));
    return size;
  }

  std::unique_ptr<AVFormatContext, OutputFree> fmt_;
  Av<AVIOContext> io_;
  AVRational in_time_base_{1, 1};
  std::string pending_;
  std::string* sink_ = &pending_;
};

class FilePacketReader final : public PacketReader {
 public:
  absl::Status Open(const std::string& path, Output output) {
    QuietOnce();
    AVFormatContext* in = nullptr;
    int rc = avformat_open_input(&in, path.c_str(), nullptr, nullptr);
    if (rc < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": cannot be opened as a video: ", AvError(rc)));
    }
    in_.reset(in);
    if ((rc = avformat_find_stream_info(in, nullptr)) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": cannot be demuxed: ", AvError(rc)));
    }
    stream_ = av_find_best_stream(in, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (stream_ < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no video stream"));
    const AVStream* st = in->streams[stream_];
    const AVCodecID id = st->codecpar->codec_id;
    if (id != AV_CODEC_ID_H264 && id != AV_CODEC_ID_HEVC) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": video is ", avcodec_get_name(id),
          "; only H.264 and HEVC can be streamed (re-encode it, e.g. ffmpeg -i ",
          path, " -c:v libx264 -bf 0 out.ts)"));
    }
    codec_ = id == AV_CODEC_ID_H264 ? "h264" : "hevc";
    time_base_ = st->time_base;
    AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    frame_us_ = rate.num > 0 && rate.den > 0 ? av_rescale_q(1, av_inv_q(rate), kMicros) : 40000;
    packet_.reset(av_packet_alloc());
    if (packet_ == nullptr) return absl::ResourceExhaustedError("out of memory");
    if (output == Output::kMpegTs) {
      mux_ = std::make_unique<TsMuxer>();
      if (absl::Status s = mux_->Open(st->codecpar, time_base_); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
      }
    }
    path_ = path;
    return absl::OkStatus();
  }

  const std::string& codec() const override { return codec_; }

  absl::StatusOr<bool> Next(std::string* bytes, int64_t* time_us) override {
    AVPacket* pkt = packet_.get();
    for (;;) {
      if (ended_) return false;
      const int rc = av_read_frame(in_.get(), pkt);
      if (rc == AVERROR_EOF) {
        ended_ = true;
        if (mux_ == nullptr) return false;
        if (absl::Status s = mux_->Finish(bytes); !s.ok()) return s;
        *time_us = last_us_;
        return !bytes->empty();
      }
      if (rc < 0) {
        return absl::InvalidArgumentError(absl::StrCat(path_, ": read: ", AvError(rc)));
      }
      if (pkt->stream_index != stream_) {
        av_packet_unref(pkt);
        continue;
      }
      int64_t ts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
      int64_t t;
      if (ts == AV_NOPTS_VALUE) {
        t = first_ts_ == AV_NOPTS_VALUE && packets_ == 0 ? 0 : last_us_ + frame_us_;
        if (first_ts_ == AV_NOPTS_VALUE) first_ts_ = 0;
        pkt->dts = pkt->pts = av_rescale_q(t, kMicros, time_base_) + first_ts_;
      } else {
        if (first_ts_ == AV_NOPTS_VALUE) first_ts_ = ts;
        t = av_rescale_q(ts - first_ts_, time_base_, kMicros);
      }
      t = std::max(t, last_us_);  // never backwards
      last_us_ = t;
      ++packets_;
      *time_us = t;
      absl::Status s = absl::OkStatus();
      if (mux_ != nullptr) {
        s = mux_->Write(pkt, bytes);
      } else {
        bytes->assign(reinterpret_cast<const char*>(pkt->data),
                      static_cast<size_t>(pkt->size));
      }
      av_packet_unref(pkt);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path_, ": ", s.message()));
      if (!bytes->empty()) return true;
    }
  }

 private:
  std::string path_;
  std::unique_ptr<AVFormatContext, InputFree> in_;
  Av<AVPacket> packet_;
  std::unique_ptr<TsMuxer> mux_;
  int stream_ = -1;
  std::string codec_;
  AVRational time_base_{1, 1};
  int64_t frame_us_ = 40000;
  int64_t first_ts_ = AV_NOPTS_VALUE;
  int64_t last_us_ = 0;
  int64_t packets_ = 0;
  bool ended_ = false;
};

// The moving pattern: 8 x 8 blocks that drift diagonally, a bright bar that
// sweeps across, slowly cycling colours.
void FillPattern(AVFrame* f, int t) {
  for (int y = 0; y < f->height; ++y) {
    uint8_t* row = f->data[0] + static_cast<ptrdiff_t>(y) * f->linesize[0];
    const int by = (y + 2 * t) >> 3;
    for (int x = 0; x < f->width; ++x) {
      row[x] = static_cast<uint8_t>(((((x + 4 * t) >> 3) ^ by) * 8) & 0xbf);
    }
    const int bar = (t * 16) % f->width;
    const int end = std::min(f->width, bar + f->width / 16);
    std::memset(row + bar, 235, static_cast<size_t>(end - bar));
  }
  for (int p = 1; p <= 2; ++p) {
    for (int y = 0; y < f->height / 2; ++y) {
      uint8_t* row = f->data[p] + static_cast<ptrdiff_t>(y) * f->linesize[p];
      for (int x = 0; x < f->width / 2; ++x) {
        row[x] = static_cast<uint8_t>(96 + (((p == 1 ? x : y) >> 4) + t) % 64);
      }
    }
  }
}

bool IsH264Keyframe(const std::string& unit) {
  for (size_t i = 0; i + 3 < unit.size(); ++i) {
    if (unit[i] == 0 && unit[i + 1] == 0 && unit[i + 2] == 1) {
      const int type = unit[i + 3] & 0x1f;
      if (type == 5 || type == 7) return true;
      i += 2;
    }
  }
  return false;
}

absl::Status Drain(AVCodecContext* ctx, AVPacket* pkt, std::vector<std::string>* out) {
  for (;;) {
    const int rc = avcodec_receive_packet(ctx, pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return absl::OkStatus();
    if (rc < 0) return absl::InternalError(absl::StrCat("H.264 encoder: ", AvError(rc)));
    out->emplace_back(reinterpret_cast<const char*>(pkt->data), static_cast<size_t>(pkt->size));
    av_packet_unref(pkt);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PacketReader>> PacketReader::Open(const std::string& path,
                                                                 Output output) {
  auto reader = std::make_unique<FilePacketReader>();
  if (absl::Status s = reader->Open(path, output); !s.ok()) return s;
  return reader;
}

absl::StatusOr<std::vector<std::string>> EncodeTestStream(const TestStreamOptions& o) {
  QuietOnce();
  if (o.width < 16 || o.height < 16 || o.width % 2 != 0 || o.height % 2 != 0 ||
      o.width > 8192 || o.height > 8192) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream size ", o.width, "x", o.height, ": width and height must be even, 16..8192"));
  }
  if (!(o.fps > 0) || o.frames < 1 || o.gop < 1) {
    return absl::InvalidArgumentError("test stream: fps, frames and gop must be positive");
  }
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  const bool x264 = codec != nullptr;
  if (codec == nullptr) codec = avcodec_find_encoder_by_name("h264");
  if (codec == nullptr) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
  if (codec == nullptr) {
    return absl::FailedPreconditionError(
        "no H.264 encoder in this FFmpeg's libavcodec (built without libx264?)");
  }
  Av<AVCodecContext> ctx(avcodec_alloc_context3(codec));
  Av<AVFrame> frame(av_frame_alloc());
  Av<AVPacket> pkt(av_packet_alloc());
  if (ctx == nullptr || frame == nullptr || pkt == nullptr) {
    return absl::ResourceExhaustedError("out of memory");
  }
  const AVRational rate = av_d2q(o.fps, 100000);
  ctx->width = o.width;
  ctx->height = o.height;
  ctx->pix_fmt = AV_PIX_FMT_YUV420P;
  ctx->time_base = av_inv_q(rate);
  ctx->framerate = rate;
  ctx->gop_size = o.gop;
  ctx->max_b_frames = 0;
  if (x264) {
    av_opt_set(ctx->priv_data, "preset", "ultrafast", 0);
    av_opt_set(ctx->priv_data, "tune", "zerolatency", 0);
    av_opt_set(ctx->priv_data, "x264-params", "scenecut=0:repeat-headers=1", 0);
  }
  int rc = avcodec_open2(ctx.get(), codec, nullptr);
  if (rc < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open the H.264 encoder ", codec->name, ": ", AvError(rc),
        x264 ? "" : " (libavcodec has no libx264)"));
  }
  frame->format = AV_PIX_FMT_YUV420P;
  frame->width = o.width;
  frame->height = o.height;
  if ((rc = av_frame_get_buffer(frame.get(), 0)) < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("frame: ", AvError(rc)));
  }
  std::vector<std::string> units;
  units.reserve(static_cast<size_t>(o.frames));
  for (int i = 0; i < o.frames; ++i) {
    if ((rc = av_frame_make_writable(frame.get())) < 0) {
      return absl::ResourceExhaustedError(absl::StrCat("frame: ", AvError(rc)));
    }
    FillPattern(frame.get(), i);
    frame->pts = i;
    frame->pict_type = i % o.gop == 0 ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    if ((rc = avcodec_send_frame(ctx.get(), frame.get())) < 0) {
      return absl::InternalError(absl::StrCat("H.264 encoder: ", AvError(rc)));
    }
    if (absl::Status s = Drain(ctx.get(), pkt.get(), &units); !s.ok()) return s;
  }
  avcodec_send_frame(ctx.get(), nullptr);
  if (absl::Status s = Drain(ctx.get(), pkt.get(), &units); !s.ok()) return s;
  if (units.size() != static_cast<size_t>(o.frames)) {
    return absl::InternalError(absl::StrCat("H.264 encoder ", codec->name, " gave ",
                                            units.size(), " access units for ", o.frames,
                                            " frames"));
  }
  if (!IsH264Keyframe(units.front())) {
    return absl::InternalError(absl::StrCat("H.264 encoder ", codec->name,
                                            " did not start with a keyframe"));
  }
  return units;
}

absl::Status WriteMpegTsFile(const std::vector<std::string>& units, int width, int height,
                             double fps, int64_t total_frames, const std::string& path) {
  QuietOnce();
  if (units.empty()) return absl::InvalidArgumentError("no access units to write");
  std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> par(
      avcodec_parameters_alloc(), [](AVCodecParameters* p) { avcodec_parameters_free(&p); });
  if (par == nullptr) return absl::ResourceExhaustedError("out of memory");
  par->codec_type = AVMEDIA_TYPE_VIDEO;
  par->codec_id = AV_CODEC_ID_H264;
  par->width = width;
  par->height = height;
  const AVRational time_base = av_inv_q(av_d2q(fps, 100000));
  TsMuxer mux;
  if (absl::Status s = mux.Open(par.get(), time_base); !s.ok()) return s;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (file == nullptr) return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  Av<AVPacket> pkt(av_packet_alloc());
  if (pkt == nullptr) return absl::ResourceExhaustedError("out of memory");
  std::string out;
  for (int64_t i = 0; i < total_frames; ++i) {
    const std::string& unit = units[static_cast<size_t>(i % static_cast<int64_t>(units.size()))];
    // The packet borrows the unit's bytes: av_write_frame takes no ownership.
    pkt->data = reinterpret_cast<uint8_t*>(const_cast<char*>(unit.data()));
    pkt->size = static_cast<int>(unit.size());
    pkt->pts = pkt->dts = i;
    pkt->duration = 1;
    pkt->flags = IsH264Keyframe(unit) ? AV_PKT_FLAG_KEY : 0;
    if (absl::Status s = mux.Write(pkt.get(), &out); !s.ok()) return s;
    if (std::fwrite(out.data(), 1, out.size(), file.get()) != out.size()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
    }
  }
  pkt->data = nullptr;
  pkt->size = 0;
  if (absl::Status s = mux.Finish(&out); !s.ok()) return s;
  if (std::fwrite(out.data(), 1, out.size(), file.get()) != out.size() ||
      std::fflush(file.get()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace clipserve::client
