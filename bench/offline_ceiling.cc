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
#include "server/lifecycle/model_repository.h"

namespace {

constexpr const char* kUsage = R"(Usage: clipserve-offline --model-repository DIR --model NAME [flags]

Loads the model as the server does (its config's device, precision, buckets
and CUDA graphs; random weights for an I3D model without a version
directory), runs its first instance back to back on random uint8 clips, and
prints clips/s for each batch size, as JSON lines; on a GPU also the peak
memory LibTorch's allocator held.

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
  std::error_code ec;
  const std::filesystem::path version = dir / "1";
  auto instances = server::LoadInstances(
      *config, std::filesystem::is_directory(version, ec) ? version.string() : "",
      runtime::CudaDeviceCount());
  if (!instances.ok()) {
    std::fprintf(stderr, "%s\n", std::string(instances.status().message()).c_str());
    return 1;
  }
  runtime::Backend* backend = instances->front().get();
  const std::string device = backend->device();
  const int cuda_index =
      device.rfind("cuda:", 0) == 0 ? std::stoi(device.substr(5)) : -1;
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
    runtime::ResetCudaMemoryPeaks(cuda_index);
    for (int64_t i = 0; i < warmup; ++i) (void)backend->Run(views, &logits);
    int64_t runs = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      const absl::Status s = backend->Run(views, &logits);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
        return 1;
      }
      ++runs;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    const runtime::CudaMemoryPeaks memory = runtime::CudaMemoryPeak(cuda_index);
    std::printf(
        "{\"model\": \"%s\", \"device\": \"%s\", \"batch_size\": %lld, "
        "\"runs\": %lld, \"seconds\": %.3f, \"clips_per_second\": %.3f, "
        "\"ms_per_batch\": %.3f, \"gpu_memory_allocated_peak_bytes\": %lld, "
        "\"gpu_memory_reserved_peak_bytes\": %lld}\n",
        dir.filename().c_str(), device.c_str(), static_cast<long long>(batch),
        static_cast<long long>(runs), elapsed, runs * batch / elapsed,
        elapsed * 1000 / runs, static_cast<long long>(memory.allocated_bytes),
        static_cast<long long>(memory.reserved_bytes));
    std::fflush(stdout);
  }
  return 0;
}
