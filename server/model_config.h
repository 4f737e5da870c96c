// Reading and checking a model's config.pbtxt.
#ifndef CLIPSERVE_SERVER_MODEL_CONFIG_H_
#define CLIPSERVE_SERVER_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "batching/batch_scheduler.h"
#include "clipserve/config.pb.h"
#include "runtime/backend.h"

namespace clipserve::server {

// Backends a config may name.
inline constexpr const char* kTorchScriptBackend = "torchscript";
inline constexpr const char* kI3dBackend = "i3d";

// Defaults filled in by ValidateModelConfig where the config leaves a field out.
inline constexpr uint64_t kDefaultMaxQueueSize = 1024;
// Priority levels of a model whose config sets none, and the most it may set.
inline constexpr uint32_t kDefaultPriorityLevels = 3;
inline constexpr uint32_t kMaxPriorityLevels = 1000;

// Parses `text` (protobuf text format). Errors are INVALID_ARGUMENT naming
// `path` and the line and column.
absl::StatusOr<config::ModelConfig> ParseModelConfig(const std::string& text,
                                                     const std::string& path);

// Reads and parses the file at `path`, then validates it as the config of
// the model in directory `dir_name`. NOT_FOUND if the file is missing.
absl::StatusOr<config::ModelConfig> LoadModelConfig(const std::string& path,
                                                    const std::string& dir_name);

// Checks every field and fills defaults (name from `dir_name` when empty,
// instance count 1, max_queue_size). Errors are INVALID_ARGUMENT with a
// message "<path>: <field>: <what is wrong>".
absl::Status ValidateModelConfig(config::ModelConfig* config,
                                 const std::string& path,
                                 const std::string& dir_name);

// Derived settings of a valid config.
runtime::ModelSpec SpecFromConfig(const config::ModelConfig& config);
batching::BatchQueueOptions QueueOptionsFromConfig(
    const config::ModelConfig& config);

// One entry per instance: where it runs, with how many threads, in which
// precision, and at which batch sizes. `cuda_devices` is how many CUDA
// devices this process sees. As Triton: a KIND_GPU group puts `count`
// instances on each GPU it lists (all visible GPUs when it lists none);
// KIND_AUTO is KIND_GPU when a GPU is visible, else KIND_CPU.
// FAILED_PRECONDITION for KIND_GPU without a visible GPU, or a listed GPU
// that is not visible.
absl::StatusOr<std::vector<runtime::BackendOptions>> InstanceOptionsFromConfig(
    const config::ModelConfig& config, int cuda_devices, int cpu_cores);

// parameters[batch_buckets]: "auto" (1, 2, 4, ... and max_batch_size),
// "none" (no padding), or ascending sizes "1,4,16" (max_batch_size is added
// when missing). INVALID_ARGUMENT otherwise.
absl::StatusOr<std::vector<int64_t>> ParseBuckets(const std::string& text,
                                                  int64_t max_batch_size);

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_MODEL_CONFIG_H_
