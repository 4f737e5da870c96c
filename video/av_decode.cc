// DecodeClip on FFmpeg's libraries (libavformat, libavcodec, libswscale).
//
// The plan of a decode, after the checks decode.h lists:
//  1. Demux every packet of the video stream once (no decoding): the frame
//     count is the packets there are, whatever the header says, and each
//     packet's timestamp and keyframe flag are known.
//  2. Frame i is the i-th frame in presentation order (packets sorted by
//     timestamp; in decode order when a stream carries no timestamps).
//  3. For each sampled frame, in presentation order: if a keyframe lies
//     between the packet the decoder would read next and the sampled frame's
//     packet (and shows no later than it), flush the decoder and restart
//     there; otherwise decode on. Packets that no sampled frame is made from
//     are decoded with skip_frame = AVDISCARD_NONREF, so frames that nothing
//     references are never reconstructed. Once a sampled frame's packet is
//     in and the next sample restarts at a later keyframe anyway (or there
//     is none), the decoder is drained instead of fed more packets (closed
//     GOPs only).
//  4. Only sampled frames are converted: one swscale call from the decoder's
//     format to RGB at the resized size, then the centre crop is copied out.
// The frames returned are those a full sequential decode returns at those
// indices (tests/video/decode_exact_test.cc compares them bit for bit).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
}

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "video/container.h"
#include "video/decode.h"
#include "video/av_convert.h"
#include "video/av_ptr.h"
#include "video/sampling_internal.h"

namespace clipserve::video {
namespace {

using internal::ValidateGeometry;
using internal::ValidateSampling;
using internal::CheckResizedSize;
using internal::FrameConverter;
using internal::kPrefix;
using internal::VideoError;


// Frame rates outside (0, kMaxFps] are taken as unknown (raw MPEG-4 streams
// report 1.2 MHz, for instance).
constexpr double kMaxFps = 1000;

// The demuxers FFmpeg may use: those of the containers SniffContainer()
// accepts, and nothing that opens other files (playlists, concat lists).
constexpr const char* kDemuxers =
    "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm,mpegts,mpeg,flv,ogg,asf,"
    "yuv4mpegpipe,h264";

// Bytes FFmpeg reads from memory at a time.
constexpr int kIoBufferBytes = 64 << 10;


absl::Status Prefixed(const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(kPrefix, status.message()));
}

// The request's bytes as FFmpeg's input.
struct MemoryInput {
  const uint8_t* data;
  int64_t size;
  int64_t pos = 0;

  static int Read(void* opaque, uint8_t* buf, int n) {
    auto* in = static_cast<MemoryInput*>(opaque);
    const int64_t left = in->size - in->pos;
    if (left <= 0) return AVERROR_EOF;
    const int64_t take = std::min<int64_t>(n, left);
    std::memcpy(buf, in->data + in->pos, static_cast<size_t>(take));
    in->pos += take;
    return static_cast<int>(take);
  }

  static int64_t Seek(void* opaque, int64_t offset, int whence) {
    auto* in = static_cast<MemoryInput*>(opaque);
    if ((whence & AVSEEK_SIZE) != 0) return in->size;
    int64_t to = offset;
    switch (whence & ~AVSEEK_FORCE) {
      case SEEK_SET:
        break;
      case SEEK_CUR:
        to = in->pos + offset;
        break;
      case SEEK_END:
        to = in->size + offset;
        break;
      default:
        return AVERROR(EINVAL);
    }
    if (to < 0 || to > in->size) return AVERROR(EINVAL);
    in->pos = to;
    return to;
  }
};

using internal::AvErrorText;
using internal::AvPtr;
using PacketPtr = AvPtr<AVPacket>;



// One demuxed packet of the video stream.
struct Packet {
  PacketPtr packet;
  int64_t pts = AV_NOPTS_VALUE;  // presentation time, stream time base
  bool key = false;
};

// FFmpeg's CUDA device for NVDEC, opened once per process (or the reason it
// cannot be).
struct CudaDevice {
  AVBufferRef* ref = nullptr;
  std::string error;
};

const CudaDevice& SharedCudaDevice() {
  static const CudaDevice* device = [] {
    auto* d = new CudaDevice();
    const int r = av_hwdevice_ctx_create(&d->ref, AV_HWDEVICE_TYPE_CUDA,
                                         nullptr, nullptr, 0);
    if (r < 0) {
      d->ref = nullptr;
      d->error = absl::StrCat("FFmpeg's cuda hwaccel cannot open a device (",
                              AvErrorText(r), ")");
    }
    return d;
  }();
  return *device;
}

bool HasNvdec(const AVCodec* codec) {
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* config = avcodec_get_hw_config(codec, i);
    if (config == nullptr) return false;
    if (config->device_type == AV_HWDEVICE_TYPE_CUDA &&
        (config->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) != 0) {
      return true;
    }
  }
}

AVPixelFormat PickCudaFormat(AVCodecContext* /*decoder*/,
                             const AVPixelFormat* formats) {
  for (const AVPixelFormat* f = formats; *f != AV_PIX_FMT_NONE; ++f) {
    if (*f == AV_PIX_FMT_CUDA) return *f;
  }
  return formats[0];  // no surface for this stream: software frames
}

// Sampling::approximate: each index moves to the keyframe (in
// presentation order) nearest to it within its share of the video, when
// there is one. `order[i]` is the packet of frame i.
void MoveToNearbyKeyframes(const std::vector<Packet>& packets,
                           const std::vector<int64_t>& order,
                           std::vector<int64_t>* indices) {
  std::vector<int64_t> keyframes;  // presentation indices, increasing
  for (size_t i = 0; i < order.size(); ++i) {
    if (packets[static_cast<size_t>(order[i])].key) {
      keyframes.push_back(static_cast<int64_t>(i));
    }
  }
  const std::vector<int64_t> exact = *indices;
  const size_t n = exact.size();
  for (size_t k = 0; k < n; ++k) {
    const int64_t at = exact[k];
    // The share [lo, hi): halfway to each neighbour, half-open, so the
    // shares of neighbours never overlap and the order is kept.
    const int64_t before = k > 0 ? at - exact[k - 1]
                           : n > 1 ? exact[1] - at : at + 1;
    const int64_t after = k + 1 < n ? exact[k + 1] - at
                          : n > 1 ? at - exact[k - 1] : static_cast<int64_t>(order.size()) - at;
    const int64_t lo = at - before / 2;
    const int64_t hi = at + (after + 1) / 2;  // exclusive
    auto it = std::lower_bound(keyframes.begin(), keyframes.end(), lo);
    int64_t best = -1;
    for (; it != keyframes.end() && *it < hi; ++it) {
      if (best < 0 || std::llabs(*it - at) < std::llabs(best - at)) best = *it;
    }
    if (best >= 0) (*indices)[k] = best;
  }
}

absl::StatusOr<Clip> DecodeClipImpl(absl::string_view bytes,
                                    const Sampling& sampling,
                                    const Geometry& geometry,
                                    const Limits& limits,
                                    const DecodeOptions& options) {
  absl::StatusOr<absl::string_view> checked =
      internal::CheckInput(bytes, sampling, geometry, limits);
  if (!checked.ok()) return checked.status();
  const absl::string_view container = *checked;
  if (options.threads < 0 || options.threads > 64) {
    return VideoError("invalid decode threads ", options.threads,
                      "; must be in [0, 64]");
  }
  if (options.device != "cpu" && options.device != "cuda") {
    return VideoError("invalid decode device \"", options.device,
                      "\"; must be cpu or cuda");
  }
  if (!(limits.max_decode_seconds > 0)) {
    return VideoError("invalid decode time limit ", limits.max_decode_seconds,
                      " s; must be above 0");
  }
  internal::QuietFfmpegOnce();
  // Asked before each packet is demuxed or decoded.
  const auto give_up_at =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(
              std::min(limits.max_decode_seconds, 1e9)));
  const auto keep_going = [&]() -> absl::Status {
    if (options.interrupt) {
      if (absl::Status s = options.interrupt(); !s.ok()) return s;
    }
    if (std::chrono::steady_clock::now() >= give_up_at) {
      return VideoError("decoding took longer than the limit of ",
                        limits.max_decode_seconds, " s");
    }
    return absl::OkStatus();
  };

  // Open, from memory, with the accepted demuxers only.
  MemoryInput input{reinterpret_cast<const uint8_t*>(bytes.data()),
                    static_cast<int64_t>(bytes.size())};
  auto* io_buffer = static_cast<uint8_t*>(av_malloc(kIoBufferBytes));
  if (io_buffer == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
  AvPtr<AVIOContext> io(
      avio_alloc_context(io_buffer, kIoBufferBytes, 0, &input,
                         &MemoryInput::Read, nullptr, &MemoryInput::Seek));
  if (io == nullptr) {
    av_free(io_buffer);
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
  AVFormatContext* raw_format = avformat_alloc_context();
  if (raw_format == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
  raw_format->pb = io.get();
  raw_format->flags |= AVFMT_FLAG_CUSTOM_IO;
  raw_format->format_whitelist = av_strdup(kDemuxers);
  raw_format->protocol_whitelist = av_strdup("none");
  // On failure avformat_open_input frees the context.
  if (avformat_open_input(&raw_format, nullptr, nullptr, nullptr) < 0) {
    return VideoError("cannot open the ", container,
                      " data (corrupt or truncated?)");
  }
  AvPtr<AVFormatContext> format(raw_format);
  if (avformat_find_stream_info(format.get(), nullptr) < 0) {
    return VideoError("cannot read the ", container,
                      " data's streams (corrupt or truncated?)");
  }
  const AVCodec* codec = nullptr;
  const int stream_index = av_find_best_stream(format.get(), AVMEDIA_TYPE_VIDEO,
                                               -1, -1, &codec, 0);
  if (stream_index < 0 || codec == nullptr) {
    if (stream_index == AVERROR_DECODER_NOT_FOUND) {
      return VideoError("the ", container,
                        " data's video stream has a codec that cannot be "
                        "decoded");
    }
    return VideoError("cannot open the ", container,
                      " data: it holds no video stream (corrupt or "
                      "truncated?)");
  }
  AVStream* stream = format->streams[stream_index];
  const AVCodecParameters* par = stream->codecpar;

  // Resolution first: before anything is decoded.
  if (par->width < 1 || par->height < 1) {
    return VideoError("the ", container, " data declares no frame size");
  }
  if (par->width > limits.max_width || par->height > limits.max_height) {
    return VideoError("resolution ", par->width, "x", par->height,
                      " is over the limit of ", limits.max_width, "x",
                      limits.max_height);
  }
  Clip clip;
  clip.source_width = par->width;
  clip.source_height = par->height;
  if (absl::Status s = CheckResizedSize(
          ComputeResizeCrop(clip.source_width, clip.source_height, geometry),
          clip.source_width, clip.source_height, geometry, limits);
      !s.ok()) {
    return s;
  }
  const AVRational rate = av_guess_frame_rate(format.get(), stream, nullptr);
  const double fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  clip.source_fps = (std::isfinite(fps) && fps > 0 && fps <= kMaxFps) ? fps : 0;
  clip.declared_frames = stream->nb_frames > 0 ? stream->nb_frames : 0;
  if (clip.declared_frames > limits.max_frames) {
    return VideoError("the video declares ", clip.declared_frames,
                      " frames, over the limit of ", limits.max_frames);
  }

  // 1. Every packet of the video stream, demuxed once.
  std::vector<Packet> packets;
  bool all_pts = true;
  for (;;) {
    if (absl::Status s = keep_going(); !s.ok()) return s;
    PacketPtr p(av_packet_alloc());
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
    }
    const int r = av_read_frame(format.get(), p.get());
    if (r < 0) break;  // end of data, or the rest is unreadable
    if (p->stream_index != stream_index || p->size <= 0) continue;
    if (static_cast<int64_t>(packets.size()) >= limits.max_frames) {
      return VideoError("the video has more than ", limits.max_frames,
                        " frames, the limit");
    }
    Packet packet;
    packet.pts = p->pts;
    packet.key = (p->flags & AV_PKT_FLAG_KEY) != 0;
    all_pts = all_pts && p->pts != AV_NOPTS_VALUE;
    packet.packet = std::move(p);
    packets.push_back(std::move(packet));
  }
  const int64_t total = static_cast<int64_t>(packets.size());
  if (total == 0) {
    return VideoError("the ", container, " data holds no video frames");
  }
  clip.source_frames = total;
  if (absl::Status s = internal::CheckDuration(total, clip.source_fps, limits);
      !s.ok()) {
    return s;
  }

  // 2. Presentation order: frame i is packet order[i].
  std::vector<int64_t> order(static_cast<size_t>(total));
  std::iota(order.begin(), order.end(), 0);
  if (all_pts) {
    std::stable_sort(order.begin(), order.end(), [&packets](int64_t a, int64_t b) {
      return packets[a].pts < packets[b].pts;
    });
  }
  absl::StatusOr<std::vector<int64_t>> indices =
      SampleFrameIndices(total, clip.source_fps, sampling);
  if (!indices.ok()) return Prefixed(indices.status());
  if (sampling.approximate && all_pts) {
    MoveToNearbyKeyframes(packets, order, &*indices);
  }

  int64_t frame_bytes = 0;
  if (absl::Status s =
          internal::SizeClip(static_cast<int64_t>(indices->size()), geometry,
                             limits, &clip, &frame_bytes);
      !s.ok()) {
    return s;
  }
  uint8_t* out = reinterpret_cast<uint8_t*>(clip.frames.data());

  // The decoder.
  AvPtr<AVCodecContext> decoder(
      avcodec_alloc_context3(codec));
  if (decoder == nullptr ||
      avcodec_parameters_to_context(decoder.get(), par) < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
  decoder->thread_count = options.threads;  // 0: FFmpeg's choice
  decoder->pkt_timebase = stream->time_base;
  if (options.device == "cuda") {
    const CudaDevice& cuda = SharedCudaDevice();
    if (cuda.ref == nullptr) {
      clip.decode_fallback = cuda.error;
    } else if (!HasNvdec(codec)) {
      clip.decode_fallback =
          absl::StrCat("codec ", codec->name, " has no NVDEC decoder");
    } else {
      decoder->hw_device_ctx = av_buffer_ref(cuda.ref);
      decoder->get_format = &PickCudaFormat;
      clip.gpu_decoded = decoder->hw_device_ctx != nullptr;
    }
  }
  if (int r = avcodec_open2(decoder.get(), codec, nullptr); r < 0) {
    return VideoError("cannot open the ", codec->name, " decoder: ",
                      AvErrorText(r));
  }
  AvPtr<AVFrame> frame(av_frame_alloc());
  AvPtr<AVFrame> host_frame(av_frame_alloc());
  if (frame == nullptr || host_frame == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
  FrameConverter converter(geometry, limits);

  // Which output slot each packet's frame fills (-1: none), and the keyframes.
  std::vector<int64_t> slot_of(static_cast<size_t>(total), -1);
  for (size_t k = 0; k < indices->size(); ++k) {
    slot_of[static_cast<size_t>(order[static_cast<size_t>((*indices)[k])])] =
        static_cast<int64_t>(k);
  }
  // Decoded frames are matched to packets by timestamp when every packet
  // has one (`order` is sorted by it), else by arrival (decode order =
  // presentation order then).
  const auto packet_of_frame = [&](const AVFrame& f, int64_t arrival) -> int64_t {
    if (!all_pts) return arrival;
    const int64_t pts =
        f.pts != AV_NOPTS_VALUE ? f.pts : f.best_effort_timestamp;
    auto it = std::lower_bound(
        order.begin(), order.end(), pts,
        [&packets](int64_t p, int64_t value) { return packets[p].pts < value; });
    return it != order.end() && packets[*it].pts == pts ? *it : -1;
  };

  // 3. Decode: per sampled frame, decode on or restart at a keyframe.
  std::vector<bool> written(indices->size(), false);
  int64_t next = 0;       // next packet to send
  // Frames received: the frame's index when the stream has no timestamps
  // (such a stream is never restarted, so it arrives whole and in order).
  int64_t arrivals = 0;
  bool draining = false;
  const auto receive = [&]() -> absl::Status {
    for (;;) {
      const int r = avcodec_receive_frame(decoder.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return absl::OkStatus();
      if (r < 0) return absl::OkStatus();  // a bad frame: counted as missing
      const int64_t p = packet_of_frame(*frame, arrivals);
      ++arrivals;
      if (p >= 0 && slot_of[static_cast<size_t>(p)] >= 0) {
        const int64_t slot = slot_of[static_cast<size_t>(p)];
        if (!written[static_cast<size_t>(slot)]) {
          // NVDEC's frames live on the GPU: copy the sampled ones down.
          const AVFrame* image = frame.get();
          if (frame->format == AV_PIX_FMT_CUDA) {
            if (av_hwframe_transfer_data(host_frame.get(), frame.get(), 0) < 0) {
              av_frame_unref(frame.get());
              return absl::InternalError(absl::StrCat(
                  kPrefix, "copying frame ", (*indices)[slot],
                  " from the GPU failed"));
            }
            image = host_frame.get();
          }
          absl::Status written_ok = converter.Write(*image, (*indices)[slot],
                                                    out + slot * frame_bytes);
          av_frame_unref(host_frame.get());
          if (absl::Status s = written_ok; !s.ok()) {
            av_frame_unref(frame.get());
            return s;
          }
          written[static_cast<size_t>(slot)] = true;
        }
      }
      av_frame_unref(frame.get());
    }
  };
  // The keyframe (packet) to restart at for `target`: the last at or before
  // it in decode order that shows no later than it, if that skips packets
  // (lies after `next`); else -1. Without timestamps, frames are matched by
  // arrival: never restart.
  const auto restart_point = [&](int64_t target) -> int64_t {
    if (!all_pts) return -1;
    int64_t key = target;
    while (key > next &&
           !(packets[key].key && packets[key].pts <= packets[target].pts)) {
      --key;
    }
    return key > next ? key : -1;
  };
  // Whether a GOP opens onto frames shown before its keyframe (open GOPs:
  // such a keyframe is no IDR, and after draining to the end FFmpeg's H.264
  // decoder will not restart cleanly at one), which rules out draining early.
  bool open_gop = false;
  for (int64_t i = 0, key = -1; i < total && all_pts && !open_gop; ++i) {
    if (packets[i].key) {
      key = i;
    } else if (key >= 0 && packets[i].pts < packets[key].pts) {
      open_gop = true;
    }
  }
  // The packet of the first sample after k not yet written, or -1.
  const auto next_target = [&](size_t k) -> int64_t {
    for (size_t j = k + 1; j < indices->size(); ++j) {
      if (!written[j]) return order[static_cast<size_t>((*indices)[j])];
    }
    return -1;
  };
  for (size_t k = 0; k < indices->size(); ++k) {
    if (written[k]) continue;
    const int64_t target = order[static_cast<size_t>((*indices)[k])];
    if (!draining) {
      if (const int64_t key = restart_point(target); key >= 0) {
        avcodec_flush_buffers(decoder.get());
        next = key;
        ++clip.restarts;
      }
    }
    while (!written[k] && !draining) {
      if (absl::Status s = keep_going(); !s.ok()) return s;
      // The target's packet is in, its frame held back only by the
      // decoder's reordering delay, and the next sample restarts anyway (or
      // there is none): drain the decoder rather than feed it packets that
      // nothing needs.
      if (all_pts && !open_gop && next > target) {
        const int64_t following = next_target(k);
        if (following < 0 || restart_point(following) >= 0) {
          decoder->skip_frame = AVDISCARD_DEFAULT;
          avcodec_send_packet(decoder.get(), nullptr);
          if (absl::Status s = receive(); !s.ok()) return s;
          avcodec_flush_buffers(decoder.get());
          break;
        }
      }
      if (next < total) {
        const Packet& p = packets[static_cast<size_t>(next)];
        decoder->skip_frame =
            slot_of[static_cast<size_t>(next)] >= 0 || !all_pts
                ? AVDISCARD_DEFAULT
                : AVDISCARD_NONREF;
        ++clip.packets_decoded;
        int r = avcodec_send_packet(decoder.get(), p.packet.get());
        if (r == AVERROR(EAGAIN)) {
          if (absl::Status s = receive(); !s.ok()) return s;
          r = avcodec_send_packet(decoder.get(), p.packet.get());
        }
        ++next;  // a packet that does not decode is skipped
      } else {
        decoder->skip_frame = AVDISCARD_DEFAULT;
        avcodec_send_packet(decoder.get(), nullptr);
        draining = true;
      }
      if (absl::Status s = receive(); !s.ok()) return s;
    }
    if (!written[k]) {
      return VideoError("frame ", (*indices)[k], " of ", total,
                        " could not be decoded (corrupt?)");
    }
  }
  clip.frame_indices = *std::move(indices);
  return clip;
}

}  // namespace

absl::StatusOr<Clip> DecodeClip(absl::string_view bytes,
                                const Sampling& sampling,
                                const Geometry& geometry,
                                const Limits& limits,
                                const DecodeOptions& options) {
  try {
    return DecodeClipImpl(bytes, sampling, geometry, limits, options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(kPrefix, "out of memory"));
  }
}

}  // namespace clipserve::video
