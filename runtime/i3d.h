// Inception-I3D (Carreira & Zisserman, CVPR 2017) as LibTorch C++ modules.
//
// The architecture and names follow the I3D spec shared with the project: the
// submodules produce the PyTorch port's state_dict keys
// ("Conv3d_1a_7x7.conv3d.weight", "Mixed_3b.b1b.bn.running_mean",
// "logits.conv3d.bias", ...), so its checkpoints load unchanged.
//
// Padding is TensorFlow's "SAME" (see TfSamePadding), computed per axis from
// the actual input size at forward time, so any T, H, W >= 1 works; the head
// averages with kernel (min(2, T'), min(7, H'), min(7, W')) and then takes
// the mean over what remains, which is the published head at 224 x 224.
//
// Internal to runtime/ and its tests/benchmarks (includes LibTorch headers);
// the server sees only runtime/i3d_backend.h.
#ifndef CLIPSERVE_RUNTIME_I3D_H_
#define CLIPSERVE_RUNTIME_I3D_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"

namespace clipserve::runtime {

struct I3dOptions {
  int64_t num_classes = 400;
  int64_t in_channels = 3;  // 3: RGB, 2: optical flow
};

// TF "SAME" padding along one axis of size `size` for a window `kernel`
// moved by `stride`: total = max(kernel - stride, 0) if size % stride == 0
// else max(kernel - size % stride, 0); front = total / 2, back = the rest.
// The output then has ceil(size / stride) positions. E.g. (224, 7, 2) ->
// {2, 3}; (7, 3, 2) -> {1, 1}; (1, 3, 1) -> {1, 1}; (112, 3, 2) -> {0, 1}.
struct SamePadding {
  int64_t front = 0;
  int64_t back = 0;
  bool operator==(const SamePadding& o) const {
    return front == o.front && back == o.back;
  }
};
SamePadding TfSamePadding(int64_t size, int64_t kernel, int64_t stride);

// How Unit3D runs its convolution on CPU float tensors.
enum class I3dConvPath {
  // at::mkldnn_convolution (oneDNN) whenever this build has it. The default:
  // ATen's at::conv3d sends batch-1 convolutions with small inputs to
  // slow_conv3d (im2col + BLAS): 5-19x slower on 1.13 (reference BLAS), still
  // 1.06-1.39x slower on 2.11 (MKL), and never faster (docs/benchmarks.md,
  // "LibTorch 1.13 vs 2.11 on the CPU").
  kDirectMkldnn,
  // at::conv3d, letting ATen choose (the behaviour before the fix).
  kAten,
};

// The ops with SAME padding, as I3D uses them (exposed for tests).
//
// Convolution (no dilation, one group) of x [B, C, T, H, W] with `weight`
// [O, C, kT, kH, kW] and optional `bias` [O]. The symmetric part of the
// padding (front on both sides) is the convolution's own zero padding; only
// the extra back row/column of an asymmetric case (stride 2) is padded
// explicitly, which is the same zero padding applied in fewer copies.
at::Tensor SameConv3d(const at::Tensor& x, const at::Tensor& weight,
                      const at::Tensor& bias, std::array<int64_t, 3> stride,
                      I3dConvPath path = I3dConvPath::kDirectMkldnn);
// Max-pool with SAME padding. Padded positions never win (TensorFlow's
// -inf semantics: the symmetric part is max_pool3d's own padding, the extra
// back row is padded with -inf). In I3D every pooled tensor comes out of a
// ReLU (>= 0) and every SAME window holds at least one real element, so
// this equals the PyTorch port's zero padding exactly.
at::Tensor SameMaxPool3d(const at::Tensor& x, std::array<int64_t, 3> kernel,
                         std::array<int64_t, 3> stride);
// Reference for tests: x padded explicitly with `value` on all three axes.
at::Tensor PadSame(const at::Tensor& x, std::array<int64_t, 3> kernel,
                   std::array<int64_t, 3> stride, double value);

namespace i3d_internal {
struct Layers;  // the submodules, defined in i3d.cc
}  // namespace i3d_internal

class InceptionI3dImpl : public torch::nn::Module {
 public:
  explicit InceptionI3dImpl(const I3dOptions& options = {});

  // x: float [B, in_channels, T, H, W] (pixels in [-1, 1]); T, H, W >= 1.
  // Returns the clip logits [B, num_classes]: the mean of logits_map over
  // time and space. Throws c10::Error on a wrong input.
  at::Tensor forward(const at::Tensor& x);

  // The logits before the final mean: [B, num_classes, T', H', W'] (the
  // PyTorch port's per-time logits, with the spatial axes kept). At
  // 64 x 224 x 224: [B, classes, 7, 1, 1]; at 16 x 224 x 224: T' = 1.
  at::Tensor logits_map(const at::Tensor& x);

  const I3dOptions& options() const { return options_; }

  void set_conv_path(I3dConvPath path);
  I3dConvPath conv_path() const { return conv_path_; }

  // Calls `fn(name, input, weight, stride, padding)` before each
  // convolution of later forward calls, with exactly what the convolution
  // receives (name e.g. "Mixed_4b.b1b"; `input` with any extra back padding
  // applied, `padding` the symmetric rest); nullptr to stop. Diagnostics for
  // benchmarks (which algorithm ATen would choose for each layer).
  using ConvObserver = std::function<void(
      const std::string& name, const at::Tensor& input,
      const at::Tensor& weight, std::array<int64_t, 3> stride,
      std::array<int64_t, 3> padding)>;
  void set_conv_observer(ConvObserver observer);

  // The submodules (an opaque type outside i3d.cc).
  i3d_internal::Layers& layers() { return *layers_; }

 private:
  I3dOptions options_;
  I3dConvPath conv_path_ = I3dConvPath::kDirectMkldnn;
  std::shared_ptr<i3d_internal::Layers> layers_;
};
TORCH_MODULE(InceptionI3d);

// Deterministic random weights from `seed` (same values on every machine and
// device): convolutions He-normal, logits bias small normal, and BatchNorm
// with non-trivial gamma, beta, running mean and running variance, so that a
// cross-check against another implementation exercises BN in eval mode.
void InitI3dRandom(InceptionI3d& model, uint64_t seed);

// The model's parameters and buffers under the PyTorch port's key names
// (without num_batches_tracked). The tensors alias the model's (detached).
std::map<std::string, at::Tensor> I3dStateDict(InceptionI3d& model);

// Copies `state` into the model. Accepts a leading "module." on any key and
// ignores "*.num_batches_tracked"; floating tensors of any dtype and device
// are converted. Anything else that does not fit is INVALID_ARGUMENT listing
// every offender, e.g. "state dict does not fit I3D (400 classes, 3
// channels): missing: [a, b]; unexpected: [c]; wrong shape:
// [logits.conv3d.weight: got [10, 1024, 1, 1, 1], want [400, 1024, 1, 1, 1]]"
// (sections only when non-empty; also "duplicate" for a key given with and
// without "module.", and "not floating point" for e.g. int64 tensors).
// Nothing is copied unless everything fits.
absl::Status LoadI3dStateDict(InceptionI3d& model,
                              const std::map<std::string, at::Tensor>& state);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_I3D_H_
