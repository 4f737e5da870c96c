#include "runtime/tiny_video_net.h"

#include <cmath>
#include <exception>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/jit/api/module.h>

#include "absl/strings/str_cat.h"
#include "runtime/torch_backend.h"
#include "runtime/torchscript_backend.h"

namespace clipserve::runtime {
namespace {

constexpr char kForward[] = R"JIT(
def forward(self, x):
    x = torch.relu(torch.conv3d(x, self.conv1_weight, self.conv1_bias,
                                [1, 2, 2], [1, 1, 1]))
    x = torch.relu(torch.conv3d(x, self.conv2_weight, self.conv2_bias,
                                [2, 2, 2], [1, 1, 1]))
    x = torch.mean(x, [2, 3, 4])
    return torch.linear(x, self.fc_weight, self.fc_bias)
)JIT";

absl::Status CheckOptions(const TinyVideoNetOptions& o) {
  if (o.num_classes < 1 || o.width < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TinyVideoNet needs num_classes and width >= 1, got ",
                     o.num_classes, " and ", o.width));
  }
  return absl::OkStatus();
}

// Normal(0, std) weights drawn from `gen`, in a fixed order.
at::Tensor Normal(at::IntArrayRef sizes, double std, at::Generator& gen) {
  return at::randn(sizes, gen, at::TensorOptions().dtype(at::kFloat))
      .mul_(std);
}

// Throws c10::Error on failure.
torch::jit::Module BuildModule(const TinyVideoNetOptions& o) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t w1 = o.width;
  const int64_t w2 = 2 * o.width;
  torch::jit::Module m("TinyVideoNet");
  // He init: std = sqrt(2 / fan_in); fan_in of a 3x3x3 conv is 27 * c_in.
  m.register_parameter("conv1_weight",
                       Normal({w1, 3, 3, 3, 3}, std::sqrt(2.0 / (27 * 3)), gen),
                       /*is_buffer=*/false);
  m.register_parameter("conv1_bias", at::zeros({w1}), false);
  m.register_parameter(
      "conv2_weight",
      Normal({w2, w1, 3, 3, 3}, std::sqrt(2.0 / (27.0 * w1)), gen), false);
  m.register_parameter("conv2_bias", at::zeros({w2}), false);
  m.register_parameter(
      "fc_weight", Normal({o.num_classes, w2}, std::sqrt(1.0 / w2), gen),
      false);
  m.register_parameter("fc_bias", Normal({o.num_classes}, 0.01, gen), false);
  m.define(kForward);
  m.eval();
  return m;
}

}  // namespace

absl::Status SaveTinyVideoNet(const std::string& path,
                              const TinyVideoNetOptions& options) {
  absl::Status valid = CheckOptions(options);
  if (!valid.ok()) return valid;
  try {
    BuildModule(options).save(path);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot save TinyVideoNet to ",
                                            path, ": ", TorchErrorSummary(e)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateTinyVideoNetBackend(
    const TinyVideoNetOptions& options, const ModelSpec& spec,
    const BackendOptions& backend_options) {
  absl::Status valid = CheckOptions(options);
  if (!valid.ok()) return valid;
  if (spec.input.channels != 3 || spec.num_classes != options.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TinyVideoNet takes 3 channels and has ", options.num_classes,
        " classes; spec says ", spec.input.channels, " channels and ",
        spec.num_classes, " classes"));
  }
  torch::jit::Module module;
  try {
    module = BuildModule(options);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("cannot build TinyVideoNet: ", TorchErrorSummary(e)));
  }
  return WrapTorchScriptModule(
      std::move(module), absl::StrCat("TinyVideoNet(seed=", options.seed, ")"),
      spec, backend_options);
}

}  // namespace clipserve::runtime
