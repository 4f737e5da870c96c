// DecodeClip throughput, one thread: clips/s and ms per clip for uniform
// sampling of 16 and 64 frames to 224x224, and the same work split up:
//
//   BM_Open          open the capture and read its properties
//   BM_GrabOnly      demux + decode every frame up to the last sampled one
//   BM_DecodeOnly    ... and convert the sampled ones to BGR (retrieve())
//   BM_ResizeCrop    resize + centre crop + BGR->RGB of already decoded frames
//   BM_DecodeClip    the whole DecodeClip (in-memory file included)
//
// Usage: clipserve-decode-bench [--video=PATH] [benchmark flags]
// Without --video, a 10 s 1080p 30 fps H.264 clip (libx264 defaults, from
// ffmpeg's testsrc2 pattern) is generated in a temporary file and removed at
// the end; with --video=PATH, PATH is used, and generated there first when it
// does not exist. "CPU" is the process's CPU time (FFmpeg's decoder threads
// included); run under `taskset -c 0` for a figure per core.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "video/decode.h"

namespace {

using clipserve::video::Clip;
using clipserve::video::ComputeResizeCrop;
using clipserve::video::DecodeClip;
using clipserve::video::Geometry;
using clipserve::video::Limits;
using clipserve::video::ResizeCrop;
using clipserve::video::Sampling;

std::string g_path;   // the video file
std::string g_bytes;  // its contents

Sampling Uniform(int64_t frames) {
  Sampling s;
  s.num_frames = frames;
  return s;
}

std::vector<int64_t> Indices(int64_t frames) {
  cv::VideoCapture cap(g_path, cv::CAP_FFMPEG);
  const auto total = static_cast<int64_t>(cap.get(cv::CAP_PROP_FRAME_COUNT));
  return *clipserve::video::SampleFrameIndices(total, 0, Uniform(frames));
}

void SetCounters(benchmark::State& state) {
  state.counters["clips/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_DecodeClip(benchmark::State& state) {
  const Sampling sampling = Uniform(state.range(0));
  for (auto _ : state) {
    absl::StatusOr<Clip> clip =
        DecodeClip(g_bytes, sampling, Geometry(), Limits());
    if (!clip.ok()) {
      state.SkipWithError(std::string(clip.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(clip->frames.data());
  }
  SetCounters(state);
}

void BM_Open(benchmark::State& state) {
  for (auto _ : state) {
    cv::VideoCapture cap(g_path, cv::CAP_FFMPEG);
    benchmark::DoNotOptimize(cap.get(cv::CAP_PROP_FRAME_COUNT));
  }
  SetCounters(state);
}

// Grabs frames 0..last; retrieves the sampled ones when `retrieve`.
void Decode(benchmark::State& state, bool retrieve) {
  const std::vector<int64_t> indices = Indices(state.range(0));
  cv::Mat frame;
  for (auto _ : state) {
    cv::VideoCapture cap(g_path, cv::CAP_FFMPEG);
    size_t next = 0;
    for (int64_t i = 0; next < indices.size(); ++i) {
      if (!cap.grab()) {
        state.SkipWithError("stream ended");
        return;
      }
      if (i != indices[next]) continue;
      if (retrieve) cap.retrieve(frame);
      ++next;
    }
    benchmark::DoNotOptimize(frame.data);
  }
  SetCounters(state);
}

void BM_GrabOnly(benchmark::State& state) { Decode(state, false); }
void BM_DecodeOnly(benchmark::State& state) { Decode(state, true); }

// What DecodeClip does to each sampled frame after retrieve().
void BM_ResizeCrop(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<cv::Mat> frames;
  {
    cv::VideoCapture cap(g_path, cv::CAP_FFMPEG);
    cv::Mat f;
    for (int64_t i = 0; i < n && cap.read(f); ++i) frames.push_back(f.clone());
  }
  const Geometry g;
  const ResizeCrop rc = ComputeResizeCrop(frames[0].cols, frames[0].rows, g);
  std::string out(static_cast<size_t>(n * g.crop_height * g.crop_width * 3),
                  '\0');
  cv::Mat resized;
  for (auto _ : state) {
    for (int64_t t = 0; t < n; ++t) {
      cv::resize(frames[t], resized,
                 cv::Size(static_cast<int>(rc.resized_width),
                          static_cast<int>(rc.resized_height)),
                 0, 0, cv::INTER_LINEAR);
      cv::Mat dst(static_cast<int>(g.crop_height),
                  static_cast<int>(g.crop_width), CV_8UC3,
                  out.data() + t * g.crop_height * g.crop_width * 3);
      cv::cvtColor(
          resized(cv::Rect(
              static_cast<int>(rc.crop_x), static_cast<int>(rc.crop_y),
              static_cast<int>(g.crop_width), static_cast<int>(g.crop_height))),
          dst, cv::COLOR_BGR2RGB);
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetCounters(state);
}

// With --benchmark_repetitions=N, "_min" is the least disturbed run: on a
// shared machine the best estimate of the work itself.
double Min(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

void Common(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->MinTime(2.0)
      ->ComputeStatistics("min", Min);
}

void Configure(benchmark::internal::Benchmark* b) {
  Common(b);
  b->Arg(16)->Arg(64)->ArgName("frames");
}

BENCHMARK(BM_DecodeClip)->Apply(Configure);
BENCHMARK(BM_Open)->Apply(Common);
BENCHMARK(BM_GrabOnly)->Apply(Configure);
BENCHMARK(BM_DecodeOnly)->Apply(Configure);
BENCHMARK(BM_ResizeCrop)->Apply(Configure);

bool Exists(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

bool Generate(const std::string& path) {
  const std::string command = absl::StrCat(
      "ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi "
      "-i testsrc2=size=1920x1080:rate=30 -t 10 -c:v libx264 "
      "-pix_fmt yuv420p '",
      path, "'");
  std::cerr << "generating: " << command << "\n";
  return std::system(command.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bool temporary = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (absl::StartsWith(arg, "--video=")) {
      g_path = arg.substr(8);
      temporary = false;
    } else {
      std::cerr << "unknown flag " << arg << "\n";
      return 2;
    }
  }
  if (g_path.empty()) {
    g_path = absl::StrCat("/tmp/clipserve_decode_bench_", getpid(), ".mp4");
  }
  if (!Exists(g_path) && !Generate(g_path)) {
    std::cerr << "cannot generate " << g_path << " (is ffmpeg installed?)\n";
    return 1;
  }
  {
    std::ifstream in(g_path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    g_bytes = ss.str();
  }
  // Warm up, and have DecodeClip set OpenCV's threads (1) for all below.
  absl::StatusOr<Clip> clip =
      DecodeClip(g_bytes, Uniform(16), Geometry(), Limits());
  if (!clip.ok()) {
    std::cerr << clip.status() << "\n";
    return 1;
  }
  benchmark::AddCustomContext(
      "video",
      absl::StrCat(g_path, ": ", clip->source_width, "x", clip->source_height,
                   ", ", clip->source_frames, " frames at ", clip->source_fps,
                   " fps, ", g_bytes.size(), " bytes"));
  benchmark::AddCustomContext("opencv_threads",
                              absl::StrCat(cv::getNumThreads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (temporary) std::remove(g_path.c_str());
  return 0;
}
