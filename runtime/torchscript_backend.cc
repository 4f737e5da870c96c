#include "runtime/torchscript_backend.h"

#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <torch/csrc/jit/serialization/import.h>

#include "absl/strings/str_cat.h"
#include "runtime/torch_backend.h"

namespace clipserve::runtime {
namespace {

// The logits in what forward returned: the tensor itself, or the first
// element of a tuple or list.
at::Tensor FirstTensor(const c10::IValue& out) {
  if (out.isTensor()) return out.toTensor();
  if (out.isTuple()) {
    const auto& elements = out.toTupleRef().elements();
    if (!elements.empty() && elements[0].isTensor()) {
      return elements[0].toTensor();
    }
  } else if (out.isList()) {
    const auto list = out.toListRef();
    if (!list.empty() && list[0].isTensor()) return list[0].toTensor();
  }
  throw std::runtime_error(absl::StrCat(
      "forward returned ", out.tagKind(),
      ", expected a tensor or a tuple/list starting with one"));
}

class TorchScriptBackend final : public TorchBackend {
 public:
  TorchScriptBackend(torch::jit::Module module, std::string name,
                     const ModelSpec& spec, const BackendOptions& options,
                     c10::Device device)
      : TorchBackend(std::move(name), spec, options, device),
        module_(std::move(module)) {}

 protected:
  at::Tensor Forward(const at::Tensor& input) override {
    return FirstTensor(module_.forward({input}));
  }

 private:
  torch::jit::Module module_;
};

// `module` is on `device` or is moved there.
absl::StatusOr<std::unique_ptr<Backend>> Finish(torch::jit::Module module,
                                                const std::string& name,
                                                const ModelSpec& spec,
                                                const BackendOptions& options,
                                                c10::Device device) {
  try {
    if (!module.find_method("forward")) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, " has no forward method"));
    }
    module.to(device);
    module.eval();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot prepare model ", name, ": ", TorchErrorSummary(e)));
  }
  auto backend = std::make_unique<TorchScriptBackend>(std::move(module), name,
                                                      spec, options, device);
  absl::Status warm = backend->WarmUp();
  if (!warm.ok()) return warm;
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> LoadTorchScriptBackend(
    const std::string& path, const ModelSpec& spec,
    const BackendOptions& options) {
  absl::Status valid = ValidateSpecAndOptions(spec, options);
  if (!valid.ok()) return valid;
  absl::StatusOr<c10::Device> device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model file ", path, " does not exist"));
  }
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, *device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot load TorchScript model ", path, ": ", TorchErrorSummary(e)));
  }
  return Finish(std::move(module), path, spec, options, *device);
}

absl::StatusOr<std::unique_ptr<Backend>> WrapTorchScriptModule(
    torch::jit::Module module, const std::string& name, const ModelSpec& spec,
    const BackendOptions& options) {
  absl::Status valid = ValidateSpecAndOptions(spec, options);
  if (!valid.ok()) return valid;
  absl::StatusOr<c10::Device> device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();
  return Finish(std::move(module), name, spec, options, *device);
}

}  // namespace clipserve::runtime
