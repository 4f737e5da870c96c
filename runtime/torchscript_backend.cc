#include "runtime/torchscript_backend.h"

#include <filesystem>
#include <functional>
#include <map>
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

// Moves `module` to `device` in `precision` and puts it in eval mode.
absl::Status PrepareModule(torch::jit::Module& module, const std::string& name,
                           c10::Device device, Precision precision) {
  try {
    if (!module.find_method("forward")) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, " has no forward method"));
    }
    module.to(device, ScalarTypeOf(precision));
    module.eval();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot prepare model ", name, ": ", TorchErrorSummary(e)));
  }
  return absl::OkStatus();
}

// One backend per options entry from `load(device)`, a fresh module on that
// device; instances with the same device and precision share one module.
absl::StatusOr<std::vector<std::unique_ptr<Backend>>> MakeBackends(
    const std::function<absl::StatusOr<torch::jit::Module>(c10::Device)>& load,
    const std::string& name, const ModelSpec& spec,
    const std::vector<BackendOptions>& instances) {
  absl::StatusOr<std::vector<c10::Device>> resolved =
      ResolveInstances(spec, instances);
  if (!resolved.ok()) return resolved.status();
  const std::vector<c10::Device>& devices = *resolved;
  std::map<std::pair<std::string, Precision>, torch::jit::Module> modules;
  std::vector<std::unique_ptr<Backend>> out;
  for (size_t i = 0; i < instances.size(); ++i) {
    const BackendOptions& options = instances[i];
    const auto key = std::make_pair(devices[i].str(), options.precision);
    auto it = modules.find(key);
    if (it == modules.end()) {
      absl::StatusOr<torch::jit::Module> module = load(devices[i]);
      if (!module.ok()) return module.status();
      absl::Status prepared =
          PrepareModule(*module, name, devices[i], options.precision);
      if (!prepared.ok()) return prepared;
      it = modules.emplace(key, *std::move(module)).first;
    }
    // torch::jit::Module is a handle: the copy shares the weights.
    auto backend = std::make_unique<TorchScriptBackend>(it->second, name, spec,
                                                        options, devices[i]);
    absl::Status ready = backend->Prepare();
    if (!ready.ok()) return ready;
    out.push_back(std::move(backend));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Backend>> First(
    absl::StatusOr<std::vector<std::unique_ptr<Backend>>> backends) {
  if (!backends.ok()) return backends.status();
  return std::move(backends->front());
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Backend>>> LoadTorchScriptBackends(
    const std::string& path, const ModelSpec& spec,
    const std::vector<BackendOptions>& instances) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    // A bad spec or device is reported first, as for a file that exists.
    absl::StatusOr<std::vector<c10::Device>> devices =
        ResolveInstances(spec, instances);
    if (!devices.ok()) return devices.status();
    return absl::NotFoundError(
        absl::StrCat("model file ", path, " does not exist"));
  }
  return MakeBackends(
      [&path](c10::Device device) -> absl::StatusOr<torch::jit::Module> {
        try {
          return torch::jit::load(path, device);
        } catch (const std::exception& e) {
          return absl::InvalidArgumentError(
              absl::StrCat("cannot load TorchScript model ", path, ": ",
                           TorchErrorSummary(e)));
        }
      },
      path, spec, instances);
}

absl::StatusOr<std::unique_ptr<Backend>> LoadTorchScriptBackend(
    const std::string& path, const ModelSpec& spec,
    const BackendOptions& options) {
  return First(LoadTorchScriptBackends(path, spec, {options}));
}

absl::StatusOr<std::unique_ptr<Backend>> WrapTorchScriptModule(
    torch::jit::Module module, const std::string& name, const ModelSpec& spec,
    const BackendOptions& options) {
  return First(MakeBackends(
      [&module](c10::Device) -> absl::StatusOr<torch::jit::Module> {
        return module;
      },
      name, spec, {options}));
}

}  // namespace clipserve::runtime
