// Fuzz entry point for a model's config.pbtxt: the bytes are the file's
// text, parsed, validated and turned into the settings the server derives
// from it (spec, queue options, instances, batch buckets), as loading a
// model does. Every input gives a config or INVALID_ARGUMENT (instances:
// FAILED_PRECONDITION for a GPU that is not there), never a crash or
// another code; a config that passes gives settings within its bounds.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/model_config.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace clipserve::server;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string path = "fuzz/config.pbtxt";
  absl::StatusOr<clipserve::config::ModelConfig> config = ParseModelConfig(text, path);
  if (!config.ok()) {
    Require(config.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  absl::Status valid = ValidateModelConfig(&*config, path, "fuzz");
  if (!valid.ok()) {
    Require(valid.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  Require(!config->name().empty());
  const clipserve::runtime::ModelSpec spec = SpecFromConfig(*config);
  Require(spec.num_classes > 0);
  Require(spec.input.channels > 0);
  const clipserve::batching::BatchQueueOptions queue = QueueOptionsFromConfig(*config);
  Require(queue.max_batch_size >= 1);
  for (int cuda_devices : {0, 2}) {
    auto instances = InstanceOptionsFromConfig(*config, cuda_devices, 2);
    if (instances.ok()) {
      Require(!instances->empty());
    } else {
      Require(instances.status().code() == absl::StatusCode::kFailedPrecondition ||
              instances.status().code() == absl::StatusCode::kInvalidArgument);
    }
  }
  return 0;
}
