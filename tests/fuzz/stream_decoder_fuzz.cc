// Fuzz entry point for live streams: StreamDecoder fed arbitrary bytes.
// The first byte picks the format (H.264, H.265, MPEG-TS, fragmented MP4)
// and the size of the pieces the rest is pushed in. Frames that come out
// have the promised size; errors are INVALID_ARGUMENT; nothing crashes or
// hangs.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "video/stream_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using clipserve::video::StreamDecoder;
  static const char* const kFormats[] = {"h264", "hevc", "mpegts", "fmp4"};
  StreamDecoder::Options options;
  options.format = kFormats[data[0] & 3];
  options.geometry.resize_short_side = 32;
  options.geometry.crop_height = 24;
  options.geometry.crop_width = 32;
  options.limits.max_width = options.limits.max_height = 1024;
  const size_t piece = size_t{1} << (data[0] >> 4);  // 1 .. 32 KiB
  auto decoder = StreamDecoder::Create(options);
  if (!decoder.ok()) std::abort();
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  clipserve::video::FrameCollector sink(options.geometry);
  const std::vector<StreamDecoder::Frame>& frames = sink.frames;
  absl::Status status;
  for (size_t at = 0; at < bytes.size() && status.ok(); at += piece) {
    status = (*decoder)->Push(bytes.substr(at, piece), &sink);
  }
  if (status.ok()) status = (*decoder)->Finish(&sink);
  if (!status.ok() && status.code() != absl::StatusCode::kInvalidArgument &&
      status.code() != absl::StatusCode::kResourceExhausted) {
    std::fprintf(stderr, "unexpected status: %s\n", status.ToString().c_str());
    std::abort();
  }
  for (const StreamDecoder::Frame& f : frames) {
    if (f.rgb.size() != size_t{24} * 32 * 3) std::abort();
  }
  return 0;
}
