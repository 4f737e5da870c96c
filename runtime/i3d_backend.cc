#include "runtime/i3d_backend.h"

#include <filesystem>
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
  absl::Status valid = ValidateSpecAndOptions(spec, options);
  if (!valid.ok()) return valid;
  if (spec.input.channels != 2 && spec.input.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "I3D takes 3 input channels (RGB) or 2 (optical flow), got ",
        spec.input.channels));
  }
  absl::StatusOr<c10::Device> device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();

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

  InceptionI3d model(nullptr);
  try {
    model = InceptionI3d(I3dOptions{spec.num_classes, spec.input.channels});
    if (weights.empty()) {
      InitI3dRandom(model, seed);
    } else {
      absl::Status loaded = LoadI3dCheckpoint(model, weights);
      if (!loaded.ok()) return loaded;
    }
    model->to(*device);
    model->eval();
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot build I3D: ", TorchErrorSummary(e)));
  }
  std::string name =
      weights.empty() ? absl::StrCat("i3d (random weights, seed ", seed, ")")
                      : weights;
  auto backend = std::make_unique<I3dBackend>(std::move(model), weights.empty(),
                                              std::move(name), spec, options,
                                              *device);
  absl::Status warm = backend->WarmUp();
  if (!warm.ok()) return warm;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace clipserve::runtime
