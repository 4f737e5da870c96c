// Internal to video/: owning pointers for FFmpeg's objects, FFmpeg's error
// codes as text, and how much FFmpeg logs.
#ifndef CLIPSERVE_VIDEO_AV_PTR_H_
#define CLIPSERVE_VIDEO_AV_PTR_H_

#include <memory>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
}

namespace clipserve::video::internal {

struct AvDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
  void operator()(AVCodecParserContext* p) const { av_parser_close(p); }
  void operator()(AVPacket* p) const { av_packet_free(&p); }
  void operator()(AVFrame* f) const { av_frame_free(&f); }
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
  void operator()(AVDictionary* d) const { av_dict_free(&d); }
  // A custom AVIOContext (avio_alloc_context), with its buffer.
  void operator()(AVIOContext* io) const {
    if (io != nullptr) av_freep(&io->buffer);
    avio_context_free(&io);
  }
};

template <typename T>
using AvPtr = std::unique_ptr<T, AvDeleter>;

inline std::string AvErrorText(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, text, sizeof(text));
  return text;
}

// FFmpeg would log every damaged packet of every stream on stderr, on the
// decoding path: it logs only what ends the process. What goes wrong
// reaches the caller as a status, a count or a stream event instead
// (process-wide; every entry point calls this before FFmpeg does anything).
inline void QuietFfmpegOnce() {
  static const bool once = [] {
    av_log_set_level(AV_LOG_FATAL);
    return true;
  }();
  (void)once;
}

}  // namespace clipserve::video::internal

#endif  // CLIPSERVE_VIDEO_AV_PTR_H_
