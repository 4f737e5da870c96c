#include "runtime/i3d.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/avg_pool3d.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/conv3d.h>
#include <ATen/ops/max_pool3d.h>
#include <ATen/ops/mkldnn_convolution.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/relu.h>
#include <c10/util/Exception.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace clipserve::runtime {

SamePadding TfSamePadding(int64_t size, int64_t kernel, int64_t stride) {
  const int64_t total = size % stride == 0
                            ? std::max<int64_t>(kernel - stride, 0)
                            : std::max<int64_t>(kernel - size % stride, 0);
  return {total / 2, total - total / 2};
}

namespace {

using Triple = std::array<int64_t, 3>;

// Splits SAME padding of x's (T, H, W) into the symmetric part (`front` on
// both sides) and the extra back padding, as a constant_pad_nd list
// (last axis first); `need_extra` tells whether any is non-zero. Fixed-size
// (no allocation: this runs for every convolution and pool of a forward).
struct SplitPadding {
  Triple symmetric{0, 0, 0};
  std::array<int64_t, 6> extra{};
  bool need_extra = false;
};

SplitPadding Split(const at::Tensor& x, const Triple& kernel,
                   const Triple& stride) {
  SplitPadding out;
  for (int i = 0; i < 3; ++i) {
    const SamePadding p = TfSamePadding(x.size(2 + i), kernel[i], stride[i]);
    out.symmetric[i] = p.front;
    const int64_t extra = p.back - p.front;
    out.extra[static_cast<size_t>(2 * (2 - i) + 1)] = extra;
    out.need_extra = out.need_extra || extra != 0;
  }
  return out;
}

bool UseDirectMkldnn(const at::Tensor& x, const at::Tensor& weight) {
  return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() &&
         x.device().is_cpu() && x.layout() == at::kStrided &&
         x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
         weight.device().is_cpu() &&
         !(at::GradMode::is_enabled() &&
           (x.requires_grad() || weight.requires_grad()));
}

void CheckInput5d(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.defined() && x.dim() == 5, op,
              ": expected a 5-D tensor [B, C, T, H, W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
}

using ConvObserver = InceptionI3dImpl::ConvObserver;

at::Tensor SameConv3dImpl(const at::Tensor& x, const at::Tensor& weight,
                          const at::Tensor& bias, const Triple& stride,
                          I3dConvPath path, const ConvObserver* observer,
                          const std::string& name) {
  CheckInput5d(x, "SameConv3d");
  TORCH_CHECK(weight.dim() == 5, "SameConv3d: weight must be 5-D");
  const Triple kernel{weight.size(2), weight.size(3), weight.size(4)};
  const SplitPadding pad = Split(x, kernel, stride);
  const at::Tensor input =
      pad.need_extra ? at::constant_pad_nd(x, pad.extra, 0) : x;
  if (observer != nullptr && *observer) {
    (*observer)(name, input, weight, stride, pad.symmetric);
  }
  if (path == I3dConvPath::kDirectMkldnn && UseDirectMkldnn(input, weight)) {
    return at::mkldnn_convolution(
        input, weight,
        bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
        pad.symmetric, stride, /*dilation=*/{1, 1, 1}, /*groups=*/1);
  }
  return at::conv3d(input, weight, bias, stride, pad.symmetric);
}

}  // namespace

at::Tensor PadSame(const at::Tensor& x, std::array<int64_t, 3> kernel,
                   std::array<int64_t, 3> stride, double value) {
  CheckInput5d(x, "PadSame");
  std::vector<int64_t> pad(6, 0);
  for (int i = 0; i < 3; ++i) {
    const SamePadding p = TfSamePadding(x.size(2 + i), kernel[i], stride[i]);
    pad[static_cast<size_t>(2 * (2 - i))] = p.front;
    pad[static_cast<size_t>(2 * (2 - i) + 1)] = p.back;
  }
  return at::constant_pad_nd(x, pad, value);
}

at::Tensor SameConv3d(const at::Tensor& x, const at::Tensor& weight,
                      const at::Tensor& bias, std::array<int64_t, 3> stride,
                      I3dConvPath path) {
  return SameConv3dImpl(x, weight, bias, stride, path, nullptr, "");
}

at::Tensor SameMaxPool3d(const at::Tensor& x, std::array<int64_t, 3> kernel,
                         std::array<int64_t, 3> stride) {
  CheckInput5d(x, "SameMaxPool3d");
  const SplitPadding pad = Split(x, kernel, stride);
  const at::Tensor input =
      pad.need_extra
          ? at::constant_pad_nd(x, pad.extra,
                                -std::numeric_limits<double>::infinity())
          : x;
  return at::max_pool3d(input, kernel, stride, pad.symmetric,
                        /*dilation=*/{1, 1, 1}, /*ceil_mode=*/false);
}

namespace i3d_internal {

// Conv3d (padding 0 after SAME padding) -> BatchNorm3d(eps 1e-3) -> ReLU, or
// for the logits unit a conv with bias alone. Inference only: BatchNorm
// always uses its running statistics.
class Unit3DImpl : public torch::nn::Module {
 public:
  Unit3DImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride,
             bool bn_relu)
      : stride_{stride, stride, stride} {
    conv = register_module(
        "conv3d", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, kernel)
                                        .stride(stride)
                                        .padding(0)
                                        .bias(!bn_relu)));
    if (bn_relu) {
      bn = register_module(
          "bn", torch::nn::BatchNorm3d(
                    torch::nn::BatchNorm3dOptions(out).eps(1e-3).momentum(0.01)));
    }
  }

  at::Tensor forward(const at::Tensor& x, I3dConvPath path,
                     const ConvObserver* observer, const std::string& name) {
    at::Tensor y = SameConv3dImpl(x, conv->weight, conv->bias, stride_, path,
                                  observer, name);
    if (bn.is_empty()) return y;
    y = at::batch_norm(y, bn->weight, bn->bias, bn->running_mean,
                       bn->running_var, /*training=*/false, /*momentum=*/0.0,
                       bn->options.eps(), /*cudnn_enabled=*/true);
    return at::relu_(y);
  }

  torch::nn::Conv3d conv{nullptr};
  torch::nn::BatchNorm3d bn{nullptr};

 private:
  Triple stride_;
};

// Channels: b0, b1a, b1b, b2a, b2b, b3b.
using MixedChannels = std::array<int64_t, 6>;

class MixedImpl : public torch::nn::Module {
 public:
  MixedImpl(int64_t in, const MixedChannels& c) {
    b0 = Add("b0", in, c[0], 1);
    b1a = Add("b1a", in, c[1], 1);
    b1b = Add("b1b", c[1], c[2], 3);
    b2a = Add("b2a", in, c[3], 1);
    b2b = Add("b2b", c[3], c[4], 3);
    b3b = Add("b3b", in, c[5], 1);
  }

  at::Tensor forward(const at::Tensor& x, I3dConvPath path,
                     const ConvObserver* observer, const std::string& name) {
    // The branch name is only for the observer: not built without one.
    auto run = [&](Unit3DImpl& unit, const at::Tensor& in, const char* branch) {
      return unit.forward(
          in, path, observer,
          observer != nullptr ? absl::StrCat(name, ".", branch) : std::string());
    };
    at::Tensor y0 = run(*b0, x, "b0");
    at::Tensor y1 = run(*b1b, run(*b1a, x, "b1a"), "b1b");
    at::Tensor y2 = run(*b2b, run(*b2a, x, "b2a"), "b2b");
    at::Tensor y3 = run(*b3b, SameMaxPool3d(x, {3, 3, 3}, {1, 1, 1}), "b3b");
    return at::cat({y0, y1, y2, y3}, 1);
  }

  std::vector<Unit3DImpl*> units() const {
    return {b0.get(), b1a.get(), b1b.get(), b2a.get(), b2b.get(), b3b.get()};
  }

 private:
  std::shared_ptr<Unit3DImpl> Add(const char* name, int64_t in, int64_t out,
                                  int64_t kernel) {
    return register_module(
        name, std::make_shared<Unit3DImpl>(in, out, kernel, 1, true));
  }

  std::shared_ptr<Unit3DImpl> b0, b1a, b1b, b2a, b2b, b3b;
};

struct Layers {
  std::shared_ptr<Unit3DImpl> conv_1a, conv_2b, conv_2c;
  std::vector<std::pair<std::string, std::shared_ptr<MixedImpl>>> mixed;
  std::shared_ptr<Unit3DImpl> logits;
  ConvObserver observer;

  // Every unit in registration order.
  std::vector<Unit3DImpl*> units() const {
    std::vector<Unit3DImpl*> out = {conv_1a.get(), conv_2b.get(), conv_2c.get()};
    for (const auto& m : mixed) {
      for (Unit3DImpl* u : m.second->units()) out.push_back(u);
    }
    out.push_back(logits.get());
    return out;
  }
};

}  // namespace i3d_internal

namespace {

struct MixedSpec {
  const char* name;
  int64_t in;
  i3d_internal::MixedChannels channels;
};

// The spec's table: (in; b0, b1a, b1b, b2a, b2b, b3b).
constexpr MixedSpec kMixed[] = {
    {"Mixed_3b", 192, {64, 96, 128, 16, 32, 32}},
    {"Mixed_3c", 256, {128, 128, 192, 32, 96, 64}},
    {"Mixed_4b", 480, {192, 96, 208, 16, 48, 64}},
    {"Mixed_4c", 512, {160, 112, 224, 24, 64, 64}},
    {"Mixed_4d", 512, {128, 128, 256, 24, 64, 64}},
    {"Mixed_4e", 512, {112, 144, 288, 32, 64, 64}},
    {"Mixed_4f", 528, {256, 160, 320, 32, 128, 128}},
    {"Mixed_5b", 832, {256, 160, 320, 32, 128, 128}},
    {"Mixed_5c", 832, {384, 192, 384, 48, 128, 128}},
};

}  // namespace

InceptionI3dImpl::InceptionI3dImpl(const I3dOptions& options)
    : options_(options), layers_(std::make_shared<i3d_internal::Layers>()) {
  TORCH_CHECK(options.num_classes >= 1, "I3D: num_classes must be >= 1, got ",
              options.num_classes);
  TORCH_CHECK(options.in_channels >= 1, "I3D: in_channels must be >= 1, got ",
              options.in_channels);
  using i3d_internal::MixedImpl;
  using i3d_internal::Unit3DImpl;
  i3d_internal::Layers& l = *layers_;
  l.conv_1a = register_module(
      "Conv3d_1a_7x7",
      std::make_shared<Unit3DImpl>(options.in_channels, 64, 7, 2, true));
  l.conv_2b = register_module("Conv3d_2b_1x1",
                              std::make_shared<Unit3DImpl>(64, 64, 1, 1, true));
  l.conv_2c = register_module(
      "Conv3d_2c_3x3", std::make_shared<Unit3DImpl>(64, 192, 3, 1, true));
  for (const MixedSpec& m : kMixed) {
    l.mixed.emplace_back(m.name, register_module(m.name, std::make_shared<MixedImpl>(
                                                             m.in, m.channels)));
  }
  l.logits = register_module(
      "logits",
      std::make_shared<Unit3DImpl>(1024, options.num_classes, 1, 1, false));
}

void InceptionI3dImpl::set_conv_path(I3dConvPath path) { conv_path_ = path; }

void InceptionI3dImpl::set_conv_observer(ConvObserver observer) {
  layers_->observer = std::move(observer);
}

at::Tensor InceptionI3dImpl::logits_map(const at::Tensor& input) {
  TORCH_CHECK(input.defined() && input.dim() == 5 &&
                  input.size(1) == options_.in_channels,
              "I3D expects input [B, ", options_.in_channels,
              ", T, H, W], got ",
              input.defined() ? input.sizes() : at::IntArrayRef{});
  TORCH_CHECK(input.size(0) >= 1 && input.size(2) >= 1 && input.size(3) >= 1 &&
                  input.size(4) >= 1,
              "I3D needs B, T, H, W >= 1, got ", input.sizes());
  TORCH_CHECK(input.is_floating_point(), "I3D expects a floating input, got ",
              input.scalar_type());
  const i3d_internal::Layers& l = *layers_;
  const ConvObserver* obs = l.observer ? &l.observer : nullptr;
  const I3dConvPath path = conv_path_;

  at::Tensor x = l.conv_1a->forward(input, path, obs, "Conv3d_1a_7x7");
  x = SameMaxPool3d(x, {1, 3, 3}, {1, 2, 2});  // MaxPool3d_2a_3x3
  x = l.conv_2b->forward(x, path, obs, "Conv3d_2b_1x1");
  x = l.conv_2c->forward(x, path, obs, "Conv3d_2c_3x3");
  x = SameMaxPool3d(x, {1, 3, 3}, {1, 2, 2});  // MaxPool3d_3a_3x3
  for (const auto& [name, block] : l.mixed) {
    x = block->forward(x, path, obs, name);
    if (name == "Mixed_3c") {
      x = SameMaxPool3d(x, {3, 3, 3}, {2, 2, 2});  // MaxPool3d_4a_3x3
    } else if (name == "Mixed_4f") {
      x = SameMaxPool3d(x, {2, 2, 2}, {2, 2, 2});  // MaxPool3d_5a_2x2
    }
  }
  // Head: average pool (2, 7, 7) shrunk to fit, stride 1, no padding;
  // dropout is the identity at inference; then the 1x1x1 logits conv.
  // LibTorch's CPU avg_pool3d has no bf16/fp16 kernel: pool those in fp32
  // there (a small tensor: 1024 channels of a few positions).
  const at::ScalarType type = x.scalar_type();
  const bool widen = x.device().is_cpu() && type != at::kFloat &&
                     type != at::kDouble;
  x = at::avg_pool3d(widen ? x.to(at::kFloat) : x,
                     {std::min<int64_t>(2, x.size(2)),
                      std::min<int64_t>(7, x.size(3)),
                      std::min<int64_t>(7, x.size(4))},
                     /*stride=*/{1, 1, 1}, /*padding=*/{0, 0, 0});
  if (widen) x = x.to(type);
  return l.logits->forward(x, path, obs, "logits");
}

at::Tensor InceptionI3dImpl::forward(const at::Tensor& x) {
  return logits_map(x).mean({2, 3, 4});
}

void InitI3dRandom(InceptionI3d& model, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  auto normal = [&](at::IntArrayRef sizes, double mean, double std) {
    return at::randn(sizes, gen, f32).mul_(std).add_(mean);
  };
  auto uniform = [&](at::IntArrayRef sizes, double lo, double hi) {
    return at::rand(sizes, gen, f32).mul_(hi - lo).add_(lo);
  };
  at::NoGradGuard no_grad;
  for (i3d_internal::Unit3DImpl* unit : model->layers().units()) {
    at::Tensor& w = unit->conv->weight;
    const int64_t fan_in = w.numel() / w.size(0);
    if (unit->bn.is_empty()) {
      // Logits: no ReLU after, so variance-preserving (1 / fan_in).
      w.copy_(normal(w.sizes(), 0.0, std::sqrt(1.0 / fan_in)));
      unit->conv->bias.copy_(normal(unit->conv->bias.sizes(), 0.0, 0.01));
      continue;
    }
    w.copy_(normal(w.sizes(), 0.0, std::sqrt(2.0 / fan_in)));  // He
    torch::nn::BatchNorm3dImpl& bn = *unit->bn;
    const at::IntArrayRef c = bn.weight.sizes();
    bn.weight.copy_(uniform(c, 0.7, 1.3));
    bn.bias.copy_(normal(c, 0.0, 0.1));
    bn.running_mean.copy_(normal(c, 0.0, 0.1));
    bn.running_var.copy_(uniform(c, 0.5, 1.5));
  }
}

std::map<std::string, at::Tensor> I3dStateDict(InceptionI3d& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    out.emplace(item.key(), item.value().detach());
  }
  for (const auto& item : model->named_buffers(/*recurse=*/true)) {
    if (absl::EndsWith(item.key(), "num_batches_tracked")) continue;
    out.emplace(item.key(), item.value().detach());
  }
  return out;
}

namespace {

std::string Dims(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

}  // namespace

absl::Status LoadI3dStateDict(InceptionI3d& model,
                              const std::map<std::string, at::Tensor>& state) {
  std::map<std::string, at::Tensor> target = I3dStateDict(model);
  // Normalised key -> (key as given, tensor).
  std::map<std::string, std::pair<std::string, at::Tensor>> given;
  std::vector<std::string> duplicate, missing, unexpected, wrong_shape,
      not_float;
  for (const auto& [key, tensor] : state) {
    absl::string_view name = key;
    absl::ConsumePrefix(&name, "module.");
    if (name == "num_batches_tracked" ||
        absl::EndsWith(name, ".num_batches_tracked")) {
      continue;
    }
    if (!given.emplace(std::string(name), std::make_pair(key, tensor)).second) {
      duplicate.push_back(key);
    }
  }
  for (const auto& [name, dst] : target) {
    if (given.find(name) == given.end()) missing.push_back(name);
  }
  for (const auto& [name, entry] : given) {
    const auto& [key, src] = entry;
    const auto it = target.find(name);
    if (it == target.end()) {
      unexpected.push_back(key);
    } else if (!src.defined() || !src.is_floating_point()) {
      not_float.push_back(absl::StrCat(
          key, ": ",
          src.defined() ? std::string(c10::toString(src.scalar_type()))
                        : std::string("undefined")));
    } else if (src.sizes() != it->second.sizes()) {
      wrong_shape.push_back(absl::StrCat(key, ": got ", Dims(src.sizes()),
                                         ", want ", Dims(it->second.sizes())));
    }
  }
  std::vector<std::string> sections;
  auto section = [&](const char* title, const std::vector<std::string>& items) {
    if (!items.empty()) {
      sections.push_back(
          absl::StrCat(title, ": [", absl::StrJoin(items, ", "), "]"));
    }
  };
  section("missing", missing);
  section("unexpected", unexpected);
  section("wrong shape", wrong_shape);
  section("not floating point", not_float);
  section("duplicate", duplicate);
  if (!sections.empty()) {
    const I3dOptions& o = model->options();
    return absl::InvalidArgumentError(absl::StrCat(
        "state dict does not fit I3D (", o.num_classes, " classes, ",
        o.in_channels, " channels): ", absl::StrJoin(sections, "; ")));
  }
  try {
    at::NoGradGuard no_grad;
    for (auto& [name, dst] : target) dst.copy_(given.at(name).second);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("copying the state dict into I3D failed: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace clipserve::runtime
