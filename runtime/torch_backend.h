// Internal to runtime/: the machinery shared by LibTorch backends.
//
// TorchBackend validates a batch, assembles it into one tensor, moves it to
// the device, normalises it, checks the model's output and copies the logits
// out, turning exceptions into statuses. A concrete backend supplies only
// Forward() on a float [B, C, T, H, W] tensor. Includes LibTorch headers: do
// not include from torch-free code (the server uses runtime/backend.h).
#ifndef CLIPSERVE_RUNTIME_TORCH_BACKEND_H_
#define CLIPSERVE_RUNTIME_TORCH_BACKEND_H_

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/backend.h"
#include "runtime/clip.h"

namespace clipserve::runtime {

// Parses options.device ("cpu", "cuda", "cuda:N") into a device that this
// build and machine can use. INVALID_ARGUMENT for an unparsable string,
// FAILED_PRECONDITION for CUDA without a CUDA build or device. "cuda" means
// "cuda:0".
absl::StatusOr<c10::Device> ResolveDevice(const std::string& device);

// Checks a spec and options before loading anything: INVALID_ARGUMENT if
// channels or num_classes are not positive, a frames/height/width is neither
// -1 nor positive, or intra_op_threads or a warm-up batch size is negative
// (resp. not positive).
absl::Status ValidateSpecAndOptions(const ModelSpec& spec,
                                    const BackendOptions& options);

// One line that says what went wrong in a LibTorch exception: the message
// without the C++ backtrace, and for TorchScript interpreter errors the
// raised exception (e.g. "RuntimeError: Exception: boom") rather than the
// script traceback.
std::string TorchErrorSummary(const std::exception& e);

class TorchBackend : public Backend {
 public:
  const ModelSpec& spec() const final { return spec_; }
  std::string device() const final { return device_.str(); }

  // See Backend::Run. Also INVALID_ARGUMENT, without running the model, when
  // the views are not one dtype and shape that fits spec(), or a view has a
  // negative count or null data. No views (or only empty ones): OK, no logits.
  // On any failure *logits is left empty.
  absl::Status Run(absl::Span<const ClipView> clips,
                   std::vector<float>* logits) final;

  // Runs each of options.warmup_batch_sizes (twice: TorchScript profiles on
  // the first call and optimises on the second) with zero uint8 clips, when
  // spec().input is fully fixed. This also checks that the model returns
  // [B, num_classes]. Failures are INVALID_ARGUMENT (the model does not fit
  // its spec). Call once, from the factory, before handing the instance out.
  absl::Status WarmUp();

 protected:
  // `name` names the model in error messages (e.g. its file path). `device`
  // comes from ResolveDevice; the model's weights must already be there.
  TorchBackend(std::string name, const ModelSpec& spec,
               const BackendOptions& options, c10::Device device);

  // Runs the model. `input` is a contiguous float tensor [B, C, T, H, W] on
  // torch_device(), normalised. Returns logits [B, num_classes] of any
  // floating dtype on any device. May throw; called under InferenceMode.
  virtual at::Tensor Forward(const at::Tensor& input) = 0;

  const c10::Device& torch_device() const { return device_; }
  const std::string& name() const { return name_; }

 private:
  // Validates `clips` and returns the batch size (sum of counts).
  absl::StatusOr<int64_t> CheckClips(absl::Span<const ClipView> clips) const;

  // Host tensor for one batch. Seam for CUDA: allocate pinned memory here
  // (TensorOptions::pinned_memory(true)) and make the device copy in
  // ToModelInput non_blocking, so the upload overlaps. Pageable for now.
  at::Tensor AllocateHostBatch(at::IntArrayRef sizes,
                               at::ScalarType type) const;

  // The batch as one host tensor, each view's bytes copied in once: uint8
  // [B, T, H, W, C] or float [B, C, T, H, W].
  at::Tensor AssembleBatch(absl::Span<const ClipView> clips,
                           int64_t batch) const;

  // Moves the host batch to the device and, for uint8, converts it there to
  // float [B, C, T, H, W] in [-1, 1] (x / 127.5 - 1).
  at::Tensor ToModelInput(const at::Tensor& host) const;

  // Runs a validated batch. Model failures and a wrong output shape come back
  // with `failure_code`.
  absl::Status Execute(absl::Span<const ClipView> clips, int64_t batch,
                       std::vector<float>* logits,
                       absl::StatusCode failure_code);

  const std::string name_;
  const ModelSpec spec_;
  const BackendOptions options_;
  const c10::Device device_;
};

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_TORCH_BACKEND_H_
