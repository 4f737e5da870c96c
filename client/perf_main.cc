// clipserve-perf: throughput and latency of a clipserve server under load.
#include <cstdio>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "client/channel.h"
#include "client/clips.h"
#include "client/flags.h"
#include "client/perf.h"

namespace {

constexpr const char* kUsage = R"(Usage: clipserve-perf [flags]

Closed-loop load: for each concurrency level, that many callers send random
clips back to back; after a warm-up, it measures throughput, client latency
percentiles, and the server's own queue/compute split and batch sizes.

Flags:
  --server HOST:PORT     Server address (default localhost:8001).
  --ssl                  TLS, verifying the server against the system's roots.
  --ssl-ca FILE          TLS, verifying the server against this PEM CA.
  --ssl-cert FILE --ssl-key FILE
                         Mutual TLS: this client's PEM certificate and key.
  --model NAME           Model (default: the server's default model).
  --concurrency LIST     Comma-separated levels (default 1,2,4,8).
  --warmup-seconds S     Per level, not measured (default 2).
  --window-seconds S     Per level, measured (default 10).
  --dtype uint8|fp32     Clip type (default uint8).
  --frames N --height N --width N
                         Clip shape (default: the model's).
  --json FILE            Also write the results as JSON.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace clipserve::client;
  std::vector<std::string> known = {"model",  "concurrency", "warmup-seconds",
                                    "window-seconds", "dtype", "frames",
                                    "height", "width", "json"};
  known.insert(known.end(), kChannelFlags.begin(), kChannelFlags.end());
  FlagReader flags(argc, argv, kUsage, known, kChannelSwitches);
  auto channel = MakeChannelFromFlags(flags);

  clipserve::v1::ClassifyRequest request;
  request.set_model_name(flags.String("model", ""));
  request.set_top_k(1);
  // The clip shape defaults to the model's.
  clipserve::v1::ModelMetadataResponse metadata;
  if (const grpc::Status s =
          FetchModelMetadata(channel, request.model_name(), &metadata);
      !s.ok()) {
    std::fprintf(stderr, "error: %s: %s\n", StatusCodeName(s.error_code()).c_str(),
                 s.error_message().c_str());
    return s.error_code();
  }
  const std::string dtype = flags.String("dtype", "uint8");
  if (dtype != "uint8" && dtype != "fp32") flags.Fail("--dtype must be uint8 or fp32");
  *request.mutable_clip() = RandomClip(
      dtype == "fp32" ? clipserve::v1::FP32 : clipserve::v1::UINT8,
      flags.Int("frames", ModelDim(metadata, 1, 16), 1, 4096),
      flags.Int("height", ModelDim(metadata, 2, 224), 1, 8192),
      flags.Int("width", ModelDim(metadata, 3, 224), 1, 8192), 1);

  StepOptions options;
  options.warmup = std::chrono::milliseconds(
      static_cast<int64_t>(flags.Double("warmup-seconds", 2) * 1000));
  options.window = std::chrono::milliseconds(
      static_cast<int64_t>(flags.Double("window-seconds", 10) * 1000));
  if (options.window.count() <= 0) flags.Fail("--window-seconds must be > 0");

  std::printf("%11s %10s %10s %10s %10s %10s %10s %10s %8s\n", "concurrency",
              "clips/s", "p50 ms", "p90 ms", "p99 ms", "queue ms",
              "compute ms", "batch", "errors");
  std::vector<StepResult> steps;
  for (int64_t c : flags.IntList("concurrency", {1, 2, 4, 8})) {
    options.concurrency = static_cast<int>(c);
    StepResult r = RunStep(channel, request, options);
    int64_t errors = 0;
    for (const auto& [code, n] : r.errors) errors += n;
    std::printf("%11d %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %8lld\n",
                r.concurrency, r.throughput, r.p50_us / 1000, r.p90_us / 1000,
                r.p99_us / 1000, r.mean_queue_us / 1000,
                r.mean_compute_us / 1000, r.mean_batch_size,
                static_cast<long long>(errors));
    std::fflush(stdout);
    steps.push_back(std::move(r));
  }
  if (flags.Has("json")) {
    std::ofstream(flags.String("json", "")) << StepsToJson(steps);
  }
  int64_t ok = 0;
  for (const StepResult& s : steps) ok += s.ok;
  return ok > 0 ? 0 : 1;
}
