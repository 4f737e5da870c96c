// Internal to runtime/: TorchScript modules already in memory as backends.
// Includes LibTorch headers; torch-free code uses runtime/backend.h.
#ifndef CLIPSERVE_RUNTIME_TORCHSCRIPT_BACKEND_H_
#define CLIPSERVE_RUNTIME_TORCHSCRIPT_BACKEND_H_

#include <memory>
#include <string>

#include <torch/csrc/jit/api/module.h>

#include "absl/status/statusor.h"
#include "runtime/backend.h"

namespace clipserve::runtime {

// Like LoadTorchScriptBackend, for a module built in memory: moves it to
// options.device, puts it in eval mode and warms it up. `name` names the
// model in error messages.
absl::StatusOr<std::unique_ptr<Backend>> WrapTorchScriptModule(
    torch::jit::Module module, const std::string& name, const ModelSpec& spec,
    const BackendOptions& options);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_TORCHSCRIPT_BACKEND_H_
