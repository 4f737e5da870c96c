#include "runtime/i3d_backend.h"

#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/checkpoint.h"
#include "runtime/i3d.h"
#include "runtime/torch_backend.h"

namespace clipserve::runtime {
namespace {

class I3dBackend final : public TorchBackend {
 public:
  I3dBackend(InceptionI3d model, bool untrained, std::string name,
             const ModelSpec& spec, const BackendOptions& options,
             c10::Device device)
      : TorchBackend(std::move(name), spec, options, device),
        model_(std::move(model)),
        untrained_(untrained) {}

  bool untrained() const override { return untrained_; }

 protected:
  at::Tensor Forward(const at::Tensor& input) override {
    return model_->forward(input);
  }

 private:
  InceptionI3d model_;
  const bool untrained_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> LoadI3dBackend(
    const std::string& weights_dir, const ModelSpec& spec,
    const BackendOptions& options, uint64_t seed) {
  absl::StatusOr<std::vector<std::unique_ptr<Backend>>> backends =
      LoadI3dBackends(weights_dir, spec, {options}, seed);
  if (!backends.ok()) return backends.status();
  return std::move(backends->front());
}

absl::StatusOr<std::vector<std::unique_ptr<Backend>>> LoadI3dBackends(
    const std::string& weights_dir, const ModelSpec& spec,
    const std::vector<BackendOptions>& instances, uint64_t seed) {
  absl::StatusOr<std::vector<c10::Device>> devices =
      ResolveInstances(spec, instances);
  if (!devices.ok()) return devices.status();
  if (spec.input.channels != 2 && spec.input.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "I3D takes 3 input channels (RGB) or 2 (optical flow), got ",
        spec.input.channels));
  }

  namespace fs = std::filesystem;
  std::string weights;  // empty: random weights
  if (!weights_dir.empty()) {
    std::error_code ec;
    const fs::path dir(weights_dir);
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "I3D weights directory ", weights_dir, " is not a directory"));
    }
    for (const char* file : {"model.safetensors", "model.pth"}) {
      if (fs::exists(dir / file, ec)) {
        weights = (dir / file).string();
        break;
      }
    }
  }
  const std::string name =
      weights.empty() ? absl::StrCat("i3d (random weights, seed ", seed, ")")
                      : weights;

  // One copy of the weights per (device, precision), shared by the
  // instances there: the module is only read.
  std::map<std::pair<std::string, Precision>, InceptionI3d> models;
  std::vector<std::unique_ptr<Backend>> out;
  for (size_t i = 0; i < instances.size(); ++i) {
    const BackendOptions& options = instances[i];
    const c10::Device device = (*devices)[i];
    const auto key = std::make_pair(device.str(), options.precision);
    auto it = models.find(key);
    if (it == models.end()) {
      InceptionI3d model(nullptr);
      try {
        model = InceptionI3d(I3dOptions{spec.num_classes, spec.input.channels});
        if (weights.empty()) {
          InitI3dRandom(model, seed);
        } else {
          absl::Status loaded = LoadI3dCheckpoint(model, weights);
          if (!loaded.ok()) return loaded;
        }
        model->to(device, ScalarTypeOf(options.precision));
        model->eval();
      } catch (const std::exception& e) {
        return absl::InternalError(
            absl::StrCat("cannot build I3D: ", TorchErrorSummary(e)));
      }
      it = models.emplace(key, std::move(model)).first;
    }
    auto backend = std::make_unique<I3dBackend>(
        it->second, weights.empty(), name, spec, options, device);
    absl::Status ready = backend->Prepare();
    if (!ready.ok()) return ready;
    out.push_back(std::move(backend));
  }
  return out;
}

}  // namespace clipserve::runtime
