// clipserve-client: classifies one clip or video with a clipserve server.
#include <cmath>
#include <cstdio>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/channel.h"
#include "client/clips.h"
#include "client/flags.h"
#include "client/npy.h"
#include "client/repository_command.h"
#include "client/stream_command.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "video/decode.h"

namespace {

using clipserve::client::FlagReader;

constexpr const char* kUsage = R"(Usage: clipserve-client [flags] [classify] [FILE]
       clipserve-client [flags] stream SOURCE
       clipserve-client [flags] metadata
       clipserve-client [flags] health [--service NAME]
       clipserve-client [flags] repository index [--ready]
       clipserve-client [flags] repository load|unload MODEL

classify (the default) sends one clip to a clipserve server and prints the
top-k classes and where the time went. FILE is
  a video (any container and codec FFmpeg reads): sent encoded; the server
    decodes, samples and crops it (--decode-local does that here instead and
    sends the frames);
  a .npy clip: uint8 [T, H, W, 3] (RGB frames) or float32 [3, T, H, W]
    (normalised to [-1, 1]);
  absent: a random clip of the model's shape (or --frames/--height/--width).

Flags:
  --server HOST:PORT   Server address (default localhost:8001).
  --ssl                TLS, verifying the server against the system's roots.
  --ssl-ca FILE        TLS, verifying the server against this PEM CA.
  --ssl-cert FILE --ssl-key FILE
                       Mutual TLS: this client's PEM certificate and key.
  --model NAME         Model (default: the server's default model).
  --version V          Model version (default: the loaded one).
  --top-k K            Classes to print (default 5).
  --timeout-ms MS      Call deadline (default: none).
  --logits             Also print all logits.
 Video:
  --num-frames N       Frames to sample (default: the model's).
  --start-seconds S    Sample from S seconds on, every --stride frames
  --stride N           (default: uniformly over the whole video).
  --approximate        Let each sampled frame move to a nearby keyframe where
                       that saves decoding (the reply's frame indices say
                       which frames were used).
  --decode-local       Decode, sample and crop here; send uint8 frames.
 Random clip:
  --dtype uint8|fp32   Clip type (default uint8).
  --frames N --height N --width N
                       Clip shape (default: the model's).
  --seed N             Seed (default 1).
 health:
  --service NAME       Service or model to ask about (default "": the
                       server as a whole).
 repository (--timeout-ms and the server flags as above):
  --admin-token-file FILE
                       The server's admin token: the file's content,
                       surrounding whitespace stripped (default: the
                       environment variable CLIPSERVE_ADMIN_TOKEN; neither:
                       none), sent as "authorization: Bearer <token>".
  --ready              index: only the entries that are READY.
 stream (--model, --top-k and the server flags as above):
  --model-version V    Model version (default: the loaded one; --version too).
  --window N           Frames per window (default 0: the model's T).
  --stride N           Frames between window starts (default 0: --window).
  --frame-step N       Use every N-th decoded frame (default 0: every one).
  --target-fps F       Or: about F frames per second of stream time.
  --priority P         Scheduling priority of every window (default 0: the
                       model's default).
  --every-window       Answer every window however late (default: a window
                       still queued when the next is ready is dropped).
  --realtime           Push a local file at its own pace (packet times);
                       default: as fast as the server reads.
  --seconds S          Half-close after S seconds (default: at the file's
                       end; a URL runs until the server ends it or Ctrl-C).
  --rtsp-tcp           URL sources: RTSP over TCP.
  --replay-speed X     file:// sources: X times real time (default 1;
                       negative: as fast as the server decodes).
  --max-reconnects N   URL sources: reconnects before giving up (default 0:
                       the server's 5; -1: never give up).

"stream" classifies a live stream over sliding windows (ClassifyStream).
SOURCE is a URL the server pulls (rtsp, rtsps, http, https, udp, file), or
a local file pushed to it: .ts/.m2ts as MPEG-TS, .h264/.264 and
.hevc/.h265/.265 as Annex B, anything else (e.g. .mp4, .mkv) remuxed here to
MPEG-TS (H.264 or HEVC video only). It prints the stream's settings, a line
per window (top-k, frames, times, latency from the last frame's arrival) and
per event, then a summary; Ctrl-C half-closes (the server answers what it
has), a second Ctrl-C aborts.

"metadata" prints what the model takes and gives. "health" asks
grpc.health.v1 and prints SERVING or NOT_SERVING; it exits 0 only when
serving.

"repository" is Triton's model repository extension, restricted to holders
of the server's admin token (PERMISSION_DENIED without it): "index" lists
every model in the repository (MODEL VERSION STATE REASON), "load" loads or
reloads MODEL from disk, "unload" unloads it; load and unload need a server
in explicit model control mode (FAILED_PRECONDITION otherwise).

Exit status: 0 on success, the gRPC status code on a failed call (e.g. 3 for
INVALID_ARGUMENT, 5 for NOT_FOUND), 64 on a usage error or unreadable file.
)";

int PrintError(const grpc::Status& status) {
  std::fprintf(stderr, "error: %s (code %d): %s\n",
               clipserve::client::StatusCodeName(status.error_code()).c_str(),
               static_cast<int>(status.error_code()),
               status.error_message().c_str());
  return static_cast<int>(status.error_code());
}

int RunStream(const FlagReader& flags, const std::shared_ptr<grpc::Channel>& channel,
              const std::vector<std::string>& words) {
  using namespace clipserve;
  if (words.size() != 1) flags.Fail("stream takes one SOURCE (a URL or a local file)");
  client::StreamCommandOptions o;
  o.source = words.front();
  v1::StreamOpen& open = o.open;
  open.set_model_name(flags.String("model", ""));
  open.set_model_version(flags.String("model-version", flags.String("version", "")));
  open.set_window_frames(static_cast<int32_t>(flags.Int("window", 0, 0, 1 << 20)));
  open.set_stride_frames(static_cast<int32_t>(flags.Int("stride", 0, 0, 1 << 20)));
  open.set_frame_step(static_cast<int32_t>(flags.Int("frame-step", 0, 0, 1 << 20)));
  open.set_target_fps(flags.Double("target-fps", 0));
  if (open.frame_step() > 1 && open.target_fps() > 0) {
    flags.Fail("give --frame-step or --target-fps, not both");
  }
  open.set_top_k(static_cast<int32_t>(flags.Int("top-k", 5, 1, 1 << 20)));
  open.set_priority(static_cast<uint32_t>(flags.Int("priority", 0, 0, UINT32_MAX)));
  open.set_every_window(flags.Has("every-window"));
  v1::SourceOptions* source = open.mutable_source();
  source->set_rtsp_tcp(flags.Has("rtsp-tcp"));
  const std::string speed = flags.String("replay-speed", "0");
  double replay_speed = 0;
  if (!absl::SimpleAtod(speed, &replay_speed) || !std::isfinite(replay_speed)) {
    flags.Fail(absl::StrCat("--replay-speed must be a number, got \"", speed, "\""));
  }
  source->set_replay_speed(replay_speed);
  source->set_max_reconnects(static_cast<int32_t>(flags.Int("max-reconnects", 0, -1, 1 << 20)));
  o.realtime = flags.Has("realtime");
  o.seconds = flags.Double("seconds", 0);
  return client::RunStreamCommand(channel, o);
}

int UsageFailure(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 64;
}

int CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return PrintError(status);
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                          response.status())
                          .c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

void PrintMetadata(const clipserve::v1::ModelMetadataResponse& m) {
  std::printf("model %s version %s (%s)%s\n", m.model_name().c_str(),
              m.model_version().c_str(), m.backend().c_str(),
              m.untrained() ? " UNTRAINED: random weights" : "");
  std::printf("input [C, T, H, W]: [");
  for (int i = 0; i < m.input_shape_size(); ++i) {
    std::printf("%s%lld", i ? ", " : "", static_cast<long long>(m.input_shape(i)));
  }
  std::printf("] (-1: any)\nclasses: %lld%s\nmax batch size: %d\ndevices:",
              static_cast<long long>(m.num_classes()),
              m.has_labels() ? " (labelled)" : "", m.max_batch_size());
  for (const std::string& d : m.devices()) std::printf(" %s", d.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace clipserve;
  std::vector<std::string> known = {"model", "version", "dtype", "frames", "height",
                                    "width", "seed", "top-k", "timeout-ms", "service",
                                    "num-frames", "start-seconds", "stride", "model-version",
                                    "window", "frame-step", "target-fps", "priority",
                                    "seconds", "replay-speed", "max-reconnects"};
  known.insert(known.end(), client::kChannelFlags.begin(), client::kChannelFlags.end());
  known.insert(known.end(), client::kRepositoryFlags.begin(), client::kRepositoryFlags.end());
  std::vector<std::string> switches = {"logits", "decode-local", "approximate", "every-window",
                                       "realtime", "rtsp-tcp"};
  switches.insert(switches.end(), client::kChannelSwitches.begin(),
                  client::kChannelSwitches.end());
  switches.insert(switches.end(), client::kRepositorySwitches.begin(),
                  client::kRepositorySwitches.end());
  FlagReader flags(argc, argv, kUsage, known, switches);
  auto channel = client::MakeChannelFromFlags(flags);
  auto stub = v1::VideoClassifier::NewStub(channel);
  const std::string model = flags.String("model", "");

  std::vector<std::string> words = flags.positional();
  const std::string command = words.empty() ? "classify" : words.front();
  if (command == "health" || command == "metadata" || command == "classify" ||
      command == "stream" || command == "repository") {
    if (!words.empty()) words.erase(words.begin());
  }
  if (command == "stream") return RunStream(flags, channel, words);
  if (command == "repository") return client::RunRepositoryFromFlags(flags, channel, words);
  if (command == "health") {
    if (!words.empty()) flags.Fail("health takes no file");
    return CheckHealth(channel, flags.String("service", ""));
  }
  v1::ModelMetadataResponse metadata;
  if (command == "metadata") {
    const grpc::Status s = client::FetchModelMetadata(channel, model, &metadata);
    if (!s.ok()) return PrintError(s);
    PrintMetadata(metadata);
    return 0;
  }
  if (words.size() > 1) flags.Fail("at most one file");

  v1::ClassifyRequest request;
  request.set_model_name(model);
  request.set_model_version(flags.String("version", ""));
  request.set_top_k(static_cast<int>(flags.Int("top-k", 5, 1, 1 << 20)));
  request.set_return_logits(flags.Has("logits"));
  const bool is_npy = !words.empty() && absl::EndsWith(words.front(), ".npy");
  const bool is_video = !words.empty() && !is_npy;
  const bool needs_shape = words.empty() || (is_video && flags.Has("decode-local"));
  if (needs_shape) {
    const grpc::Status s = client::FetchModelMetadata(channel, model, &metadata);
    if (!s.ok()) return PrintError(s);
  }

  if (words.empty()) {
    const std::string dtype = flags.String("dtype", "uint8");
    if (dtype != "uint8" && dtype != "fp32") flags.Fail("--dtype must be uint8 or fp32");
    *request.mutable_clip() = client::RandomClip(
        dtype == "fp32" ? v1::FP32 : v1::UINT8,
        flags.Int("frames", client::ModelDim(metadata, 1, 16), 1, 4096),
        flags.Int("height", client::ModelDim(metadata, 2, 224), 1, 8192),
        flags.Int("width", client::ModelDim(metadata, 3, 224), 1, 8192),
        static_cast<uint64_t>(flags.Int("seed", 1, 0, INT64_MAX)));
  } else if (is_npy) {
    auto array = client::ReadNpy(words.front());
    if (!array.ok()) return UsageFailure(std::string(array.status().message()));
    auto clip = client::ClipFromNpy(*array);
    if (!clip.ok()) {
      return UsageFailure(absl::StrCat(words.front(), ": ", clip.status().message()));
    }
    *request.mutable_clip() = *std::move(clip);
  } else {
    absl::StatusOr<std::string> read = client::ReadFileBytes(words.front());
    if (!read.ok()) {
      return UsageFailure(absl::StrCat(words.front(), ": cannot be read"));
    }
    std::string bytes = *std::move(read);
    const bool stride = flags.Has("stride") || flags.Has("start-seconds");
    if (flags.Has("decode-local")) {
      video::Sampling sampling;
      sampling.num_frames = flags.Int("num-frames", client::ModelDim(metadata, 1, 16), 1, 100000);
      sampling.mode = stride ? video::Sampling::Mode::kStride : video::Sampling::Mode::kUniform;
      sampling.start_seconds = flags.Double("start-seconds", 0);
      sampling.stride = flags.Int("stride", 1, 1, 100000);
      sampling.approximate = flags.Has("approximate");
      video::Geometry geometry;
      geometry.crop_height = client::ModelDim(metadata, 2, 224);
      geometry.crop_width = client::ModelDim(metadata, 3, 224);
      absl::StatusOr<video::Clip> clip =
          video::DecodeClip(bytes, sampling, geometry, video::Limits());
      if (!clip.ok()) return UsageFailure(std::string(clip.status().message()));
      v1::Tensor* t = request.mutable_clip();
      t->set_dtype(v1::UINT8);
      for (int64_t d : {clip->frames_count, clip->height, clip->width, int64_t{3}}) {
        t->add_shape(d);
      }
      t->set_data(std::move(clip->frames));
    } else {
      v1::EncodedVideo* v = request.mutable_video();
      v->set_data(std::move(bytes));
      v1::VideoSampling* s = v->mutable_sampling();
      s->set_num_frames(static_cast<int32_t>(flags.Int("num-frames", 0, 0, 100000)));
      if (stride) {
        s->set_mode(v1::VideoSampling::STRIDE);
        s->set_start_seconds(flags.Double("start-seconds", 0));
        s->set_stride(static_cast<int32_t>(flags.Int("stride", 1, 1, 100000)));
      }
      s->set_approximate(flags.Has("approximate"));
    }
  }

  grpc::ClientContext context;
  if (flags.Has("timeout-ms")) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(
                             flags.Int("timeout-ms", 0, 1, INT32_MAX)));
  }
  v1::ClassifyResponse response;
  const grpc::Status status = stub->Classify(&context, request, &response);
  if (!status.ok()) return PrintError(status);

  std::printf("model %s version %s\n", response.model_name().c_str(),
              response.model_version().c_str());
  int rank = 1;
  for (const auto& c : response.classes()) {
    std::printf("%3d. class %-5d %-40s p=%.4f\n", rank++, c.class_index(),
                c.label().empty() ? "-" : c.label().c_str(), c.probability());
  }
  const auto& t = response.timings();
  std::printf("timings: decode %.3f ms, queue %.3f ms, compute %.3f ms, batch size %d\n",
              t.decode_us() / 1000.0, t.queue_us() / 1000.0,
              t.compute_us() / 1000.0, t.batch_size());
  if (response.has_video()) {
    const v1::SourceVideo& v = response.video();
    std::printf("video: %dx%d, %.3f fps, %lld frames", v.width(), v.height(), v.fps(),
                static_cast<long long>(v.frames()));
    if (v.declared_frames() != 0 && v.declared_frames() != v.frames()) {
      std::printf(" (declares %lld)", static_cast<long long>(v.declared_frames()));
    }
    std::printf("; frames used:");
    for (int64_t i : v.frame_indices()) std::printf(" %lld", static_cast<long long>(i));
    std::printf("\n");
  }
  if (request.return_logits()) {
    std::printf("logits:");
    for (float v : response.logits()) std::printf(" %.6g", v);
    std::printf("\n");
  }
  return 0;
}
