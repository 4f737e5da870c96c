// ModelRepository: the models a server serves, loaded at start-up.
//
// Layout (Triton's):
//   <repository>/<model>/config.pbtxt      required, see proto/clipserve/config.proto
//   <repository>/<model>/labels.txt        optional, one class name per line
//   <repository>/<model>/<version>/...     numeric version directories; the
//                                          highest one is served. TorchScript:
//                                          model.pt. I3D: model.safetensors or
//                                          model.pth (none: random weights)
#ifndef CLIPSERVE_SERVER_MODEL_REPOSITORY_H_
#define CLIPSERVE_SERVER_MODEL_REPOSITORY_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clipserve/config.pb.h"
#include "runtime/backend.h"
#include "server/metrics.h"
#include "server/served_model.h"

namespace clipserve::server {

// Name of the model served when no repository is given.
inline constexpr const char* kBuiltinModelName = "i3d";

// The instances of the model whose validated config is `config`, placed by
// InstanceOptionsFromConfig and loaded from `version_dir`: TorchScript
// <version_dir>/model.pt; I3D <version_dir>/model.safetensors or model.pth
// (an empty `version_dir`: random weights). Errors name the model.
absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> LoadInstances(
    const config::ModelConfig& config, const std::string& version_dir,
    int cuda_devices);

class ModelRepository {
 public:
  // Loads every model under `root`. Any bad model stops the load with an
  // error naming its file and field.
  // Each model's series go to `metrics`, which must outlive the repository.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(
      const std::string& root, Metrics* metrics);

  // The built-in default model: Inception-I3D with random (untrained)
  // weights, 400 classes, 16 x 224 x 224 clips, so the server runs with
  // nothing to download.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Builtin(
      Metrics* metrics);

  // The model `name` (empty: the default model) at `version` (empty: the
  // loaded one); NOT_FOUND naming what exists otherwise.
  absl::StatusOr<ServedModel*> Find(const std::string& name,
                                    const std::string& version) const;

  // Models in name order.
  std::vector<ServedModel*> models() const;

  // Bytes of the largest single request any model accepts (max_batch_size
  // FP32 clips at its full shape), or 0 when some model accepts any size.
  size_t largest_request_bytes() const;

  // From now on draining() is true: every protocol refuses new requests
  // (UNAVAILABLE) and reports not ready, while queued ones still complete.
  void StartDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // Answers every queued request and stops all models' instances.
  void Shutdown();

 private:
  std::map<std::string, std::unique_ptr<ServedModel>> models_;
  std::atomic<bool> draining_{false};
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_MODEL_REPOSITORY_H_
