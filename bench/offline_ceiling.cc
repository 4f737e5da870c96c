// clipserve-offline: the throughput ceiling of a model, run in-process on one
// instance exactly as the server loads it, with no gRPC and no batcher.
// Prints one JSON object per batch size.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/flags.h"
#include "runtime/allocator.h"
#include "runtime/backend.h"
#include "runtime/device.h"
#include "server/model_config.h"

namespace {

constexpr const char* kUsage = R"(Usage: clipserve-offline --model-repository DIR --model NAME [flags]

Runs the model's first instance back to back on random uint8 clips and
prints clips/s for each batch size, as JSON lines.

Flags:
  --batch-sizes LIST   Comma-separated (default 1,2,4,8).
  --seconds S          Measured time per batch size (default 10).
  --warmup-runs N      Unmeasured runs per batch size (default 2).
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace clipserve;
  client::FlagReader flags(argc, argv, kUsage,
                           {"model-repository", "model", "batch-sizes",
                            "seconds", "warmup-runs"});
  if (!flags.Has("model-repository") || !flags.Has("model")) {
    flags.Fail("--model-repository and --model are required");
  }
  // The allocator settings the server runs with.
  runtime::KeepTensorMemoryInProcess();
  const std::filesystem::path dir =
      std::filesystem::path(flags.String("model-repository", "")) /
      flags.String("model", "");
  auto config = server::LoadModelConfig((dir / "config.pbtxt").string(),
                                        dir.filename().string());
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  const runtime::ModelSpec spec = server::SpecFromConfig(*config);
  runtime::BackendOptions options = server::InstanceOptionsFromConfig(
      *config, runtime::CudaDeviceCount(),
      static_cast<int>(std::thread::hardware_concurrency()))[0];
  auto backend = runtime::LoadTorchScriptBackend((dir / "1" / "model.pt").string(),
                                                 spec, options);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", std::string(backend.status().message()).c_str());
    return 1;
  }

  const double seconds = flags.Double("seconds", 10);
  const int64_t warmup = flags.Int("warmup-runs", 2, 0, 1000);
  const size_t clip_bytes = static_cast<size_t>(spec.input.elements());
  std::vector<float> logits;
  for (int64_t batch : flags.IntList("batch-sizes", {1, 2, 4, 8})) {
    // Distinct random clips, one view each, as the server would pass them.
    std::vector<uint8_t> data(clip_bytes * batch);
    std::mt19937 rng(static_cast<uint32_t>(batch));
    for (uint8_t& v : data) v = static_cast<uint8_t>(rng());
    std::vector<runtime::ClipView> views(batch);
    for (int64_t i = 0; i < batch; ++i) {
      views[i].dtype = runtime::ClipDType::kUInt8;
      views[i].shape = spec.input;
      views[i].data = data.data() + i * clip_bytes;
    }
    for (int64_t i = 0; i < warmup; ++i) (void)(*backend)->Run(views, &logits);
    int64_t runs = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      const absl::Status s = (*backend)->Run(views, &logits);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
        return 1;
      }
      ++runs;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::printf(
        "{\"model\": \"%s\", \"batch_size\": %lld, \"runs\": %lld, \"seconds\": %.3f, "
        "\"clips_per_second\": %.3f, \"ms_per_batch\": %.3f, \"intra_op_threads\": %d}\n",
        dir.filename().c_str(), static_cast<long long>(batch), static_cast<long long>(runs),
        elapsed, runs * batch / elapsed, elapsed * 1000 / runs, options.intra_op_threads);
    std::fflush(stdout);
  }
  return 0;
}
