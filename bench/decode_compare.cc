// clipserve-decode-compare: DecodeClip (FFmpeg's libraries, planned decode)
// against the decoder it replaced (bench/baseline: OpenCV's VideoCapture) on
// one video file, same sampling and geometry. Run it pinned to one core
// (taskset -c 0). Prints one JSON line: the minimum of --runs wall times
// for each, their ratio, and the new decoder's packets decoded and restarts.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#ifdef CLIPSERVE_OPENCV_BASELINE
#include "bench/baseline/opencv_decode.h"
#endif
#include "client/flags.h"
#include "video/decode.h"

namespace {

constexpr const char* kUsage = R"(Usage: clipserve-decode-compare --video FILE [flags]

Flags:
  --frames N     Frames sampled uniformly (default 16).
  --runs N       Timed runs of each decoder; the minimum is reported
                 (default 3).
  --baseline B   true (default) also times the OpenCV baseline; false: the
                 new decoder only (always so in a build without OpenCV).
  --approximate  Sampling::approximate (nearby keyframes where they save
                 decoding).
  --device D     cpu (default) or cuda: DecodeOptions::device. With cuda,
                 "gpu_decoded" and "fallback" say whether NVDEC decoded.
  --dump FILE    Writes the new decoder's clip there (frames x 224 x 224 x 3
                 bytes, RGB), for comparing with other decoders.
)";

template <typename F>
double MinSeconds(int runs, F&& f) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace clipserve;
  client::FlagReader flags(argc, argv, kUsage,
                           {"video", "frames", "runs", "baseline", "dump", "device"},
                           {"approximate"});
  if (!flags.Has("video")) flags.Fail("--video is required");
  std::ifstream in(flags.String("video", ""), std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  video::Sampling sampling;
  sampling.num_frames = flags.Int("frames", 16, 1, 100000);
  sampling.approximate = flags.Has("approximate");
  const int runs = static_cast<int>(flags.Int("runs", 3, 1, 100));
  video::Limits limits;
  limits.max_bytes = bytes.size() + 1;
  limits.max_frames = 1000000;
  limits.max_seconds = 1e9;

  video::DecodeOptions options;
  options.device = flags.String("device", "cpu");
  absl::StatusOr<video::Clip> clip;
  const double now = MinSeconds(runs, [&] {
    clip = video::DecodeClip(bytes, sampling, video::Geometry(), limits, options);
  });
  if (!clip.ok()) {
    std::fprintf(stderr, "%s\n", std::string(clip.status().message()).c_str());
    return 1;
  }
  double before = 0;
#ifdef CLIPSERVE_OPENCV_BASELINE
  if (flags.String("baseline", "true") != "false") {
    absl::StatusOr<video::Clip> old;
    before = MinSeconds(runs, [&] {
      old = bench_baseline::DecodeClip(bytes, sampling, video::Geometry(), limits);
    });
    if (!old.ok()) {
      std::fprintf(stderr, "baseline: %s\n",
                   std::string(old.status().message()).c_str());
      return 1;
    }
  }
#endif
  if (flags.Has("dump")) {
    std::ofstream dump(flags.String("dump", ""), std::ios::binary);
    dump.write(reinterpret_cast<const char*>(clip->frames.data()),
               static_cast<std::streamsize>(clip->frames.size()));
    if (!dump) {
      std::fprintf(stderr, "cannot write %s\n", flags.String("dump", "").c_str());
      return 1;
    }
  }
  std::string indices;
  for (int64_t i : clip->frame_indices) {
    indices += (indices.empty() ? "" : ",") + std::to_string(i);
  }
  std::printf(
      "{\"video\": \"%s\", \"frames\": %lld, \"source_frames\": %lld, "
      "\"width\": %lld, \"height\": %lld, \"ms\": %.1f, \"baseline_ms\": %.1f, "
      "\"speedup\": %.2f, \"packets_decoded\": %lld, \"restarts\": %lld, "
      "\"frame_indices\": \"%s\", \"device\": \"%s\", \"gpu_decoded\": %s, "
      "\"fallback\": \"%s\"}\n",
      flags.String("video", "").c_str(),
      static_cast<long long>(sampling.num_frames),
      static_cast<long long>(clip->source_frames),
      static_cast<long long>(clip->source_width),
      static_cast<long long>(clip->source_height), now * 1000, before * 1000,
      before > 0 ? before / now : 0.0,
      static_cast<long long>(clip->packets_decoded),
      static_cast<long long>(clip->restarts), indices.c_str(),
      options.device.c_str(), clip->gpu_decoded ? "true" : "false",
      clip->decode_fallback.c_str());
  return 0;
}
