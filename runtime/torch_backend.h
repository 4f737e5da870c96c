// Internal to runtime/: the machinery shared by LibTorch backends.
//
// TorchBackend validates a batch, stages it, moves it to the device,
// normalises it there, runs the model, checks the output and copies the
// logits out, turning exceptions into statuses. A concrete backend supplies
// only Forward() on a [B, C, T, H, W] tensor of the instance's precision.
// Includes LibTorch headers: do not include from torch-free code (the server
// uses runtime/backend.h).
//
// Staging. Each instance owns staging slots (1 on the CPU; on CUDA
// options.cuda_staging_slots, default 2), each with a host buffer for the
// batch (pinned on CUDA; uint8 [B, T, H, W, C] or float [B, C, T, H, W], as
// the clips come), a device buffer it is uploaded into, and (CUDA) a pinned
// buffer the logits come back to. Buffers are sized for
// options.max_batch_size clips (bucket-padded) and reused by every batch;
// each clip is copied once, from the request into the slot. On CUDA the
// upload runs on the instance's copy stream, normalisation and the forward
// on its compute stream, so while one lane's batch computes the other lane's
// batch is assembled and uploaded. Normalisation (uint8 -> [-1, 1]) and the
// cast to the model's precision happen on the device, into one model-input
// buffer per instance, whose padding rows are zeroed.
#ifndef CLIPSERVE_RUNTIME_TORCH_BACKEND_H_
#define CLIPSERVE_RUNTIME_TORCH_BACKEND_H_

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/backend.h"
#include "runtime/clip.h"

namespace clipserve::runtime {

class CapturedForward;  // runtime/cuda_graphs.h

// Parses options.device ("cpu", "cuda", "cuda:N") into a device that this
// build and machine can use. INVALID_ARGUMENT for an unparsable string,
// FAILED_PRECONDITION for CUDA without a CUDA build or device. "cuda" means
// "cuda:0".
absl::StatusOr<c10::Device> ResolveDevice(const std::string& device);

// Checks a spec and options before loading anything: INVALID_ARGUMENT if
// channels or num_classes are not positive, a frames/height/width is neither
// -1 nor positive, intra_op_threads, max_batch_size or a warm-up batch size
// is negative (resp. not positive), batch_buckets are not positive and
// strictly ascending, or cuda_graphs is set without buckets or a fixed input
// shape.
absl::Status ValidateSpecAndOptions(const ModelSpec& spec,
                                    const BackendOptions& options);

// Checks `spec` with each entry of `instances` (ValidateSpecAndOptions) and
// resolves their devices, in order. INVALID_ARGUMENT for no instances.
absl::StatusOr<std::vector<c10::Device>> ResolveInstances(
    const ModelSpec& spec, const std::vector<BackendOptions>& instances);

// The scalar type of a precision (kFloat, kHalf, kBFloat16).
at::ScalarType ScalarTypeOf(Precision precision);

// One line that says what went wrong in a LibTorch exception: the message
// without the C++ backtrace, and for TorchScript interpreter errors the
// raised exception (e.g. "RuntimeError: Exception: boom") rather than the
// script traceback.
std::string TorchErrorSummary(const std::exception& e);

// Whether a LibTorch exception means the device can no longer be trusted:
// a CUDA error that stays with the context (illegal address or instruction,
// device-side assert, launch failure, ECC or hardware error).
bool IsStickyDeviceError(const std::exception& e);

class TorchBackend : public Backend {
 public:
  ~TorchBackend() override;

  const ModelSpec& spec() const final { return spec_; }
  std::string device() const final { return device_.str(); }
  int max_concurrent_runs() const final {
    return static_cast<int>(slots_.size());
  }
  absl::Status health() const final;

  // See Backend::Run. Also INVALID_ARGUMENT, without running the model, when
  // the views are not one dtype and shape that fits spec(), or a view has a
  // negative count or null data. No views (or only empty ones): OK, no logits.
  // On any failure *logits is left empty.
  absl::Status Run(absl::Span<const ClipView> clips,
                   std::vector<float>* logits, RunTimings* timings) final;
  using Backend::Run;

  // Readies the instance before it is handed out: on CUDA turns on cuDNN's
  // algorithm search; runs each of options.warmup_batch_sizes (twice:
  // TorchScript profiles on the first call and optimises on the second, and
  // cuDNN picks its algorithms for the shape) with zero uint8 clips, when
  // spec().input is fully fixed, which also checks that the model returns
  // [B, num_classes]; then captures the CUDA graphs when asked to. Failures
  // are INVALID_ARGUMENT (the model does not fit its spec or precision) or
  // what capture returned. Call once, from the factory.
  absl::Status Prepare();

  // How often a staging buffer was (re)allocated since load: stays put while
  // batches fit options.max_batch_size (and the clip shape stays the same).
  int64_t staging_allocations() const {
    return staging_allocations_.load(std::memory_order_relaxed);
  }

 protected:
  // `name` names the model in error messages (e.g. its file path). `device`
  // comes from ResolveDevice; the model's weights must already be there, in
  // options.precision.
  TorchBackend(std::string name, const ModelSpec& spec,
               const BackendOptions& options, c10::Device device);

  // Runs the model. `input` is a contiguous tensor [B, C, T, H, W] of the
  // instance's precision on torch_device(), normalised. Returns logits
  // [B, num_classes] of any floating dtype on any device. May throw; called
  // under InferenceMode, from up to max_concurrent_runs() threads at once
  // (never concurrently on CUDA, where launches are serialised).
  virtual at::Tensor Forward(const at::Tensor& input) = 0;

  const c10::Device& torch_device() const { return device_; }
  const std::string& name() const { return name_; }

 private:
  // What one batch in flight owns.
  struct Slot {
    at::Tensor host;         // staging for the clips as they come
    at::Tensor upload;       // CUDA: the same bytes on the device
    at::Tensor host_logits;  // CUDA: pinned float [rows, classes]
    // CUDA: upload start/end on the copy stream; forward start/end and
    // download end on the compute stream.
    std::optional<c10::Event> upload_start, uploaded, forward_start,
        forward_end, downloaded;
  };

  // Validates `clips` and returns the batch size (sum of counts).
  absl::StatusOr<int64_t> CheckClips(absl::Span<const ClipView> clips) const;

  // Takes a free slot (there is one for each thread allowed in Run) and
  // gives it back.
  int AcquireSlot();
  void ReleaseSlot(int slot);

  // `buffer` as a tensor of `sizes` and `type`, reallocated only when it is
  // too small or of another type/clip shape. Pinned when `pinned`.
  at::Tensor Staging(at::Tensor* buffer, at::IntArrayRef sizes,
                     at::ScalarType type, bool pinned, bool on_device);

  // Copies each view's bytes into the slot's host buffer: uint8
  // [batch, T, H, W, C] or float [batch, C, T, H, W].
  at::Tensor Assemble(Slot& slot, absl::Span<const ClipView> clips,
                      int64_t batch);

  // Writes rows [0, batch) of the model input from `staged` (normalising
  // uint8) and zeroes rows [batch, padded). Returns input[0, padded).
  at::Tensor Normalise(const at::Tensor& staged, int64_t padded);

  // Forward of a normalised [padded, ...] input: a captured graph's replay
  // when there is one for `padded`, else Forward().
  at::Tensor ForwardPadded(const at::Tensor& input, int64_t padded);

  absl::Status RunOnCpu(Slot& slot, absl::Span<const ClipView> clips,
                        int64_t batch, std::vector<float>* logits,
                        RunTimings* timings);
  absl::Status RunOnCuda(Slot& slot, absl::Span<const ClipView> clips,
                         int64_t batch, std::vector<float>* logits,
                         RunTimings* timings);

  // Runs a validated batch, turning exceptions into statuses: model failures
  // and a wrong output shape come back with `failure_code`, out-of-memory
  // as RESOURCE_EXHAUSTED, a sticky device error as INTERNAL (and health()
  // turns UNAVAILABLE).
  absl::Status Execute(absl::Span<const ClipView> clips, int64_t batch,
                       std::vector<float>* logits, RunTimings* timings,
                       absl::StatusCode failure_code);

  // INVALID_ARGUMENT (with `failure_code`) unless `output` is
  // [batch or more, num_classes].
  absl::Status CheckOutput(const at::Tensor& output, int64_t rows,
                           int64_t batch, absl::StatusCode failure_code) const;

  const std::string name_;
  const ModelSpec spec_;
  const BackendOptions options_;
  const c10::Device device_;
  const bool cuda_;

  std::vector<Slot> slots_;
  std::mutex slots_mu_;
  std::condition_variable slot_freed_;
  std::vector<int> free_slots_;  // guarded by slots_mu_

  // CUDA: launches on the compute stream, one batch at a time, so kernels of
  // one batch stay together and the model input buffer is the stream's.
  std::mutex compute_mu_;
  std::optional<c10::Stream> copy_stream_, compute_stream_;
  at::Tensor input_;  // model input, precision [rows, C, T, H, W]
  std::unique_ptr<CapturedForward> graphs_;

  std::atomic<int64_t> staging_allocations_{0};
  std::atomic<bool> poisoned_{false};
  mutable std::mutex health_mu_;
  absl::Status health_;  // guarded by health_mu_
};

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_TORCH_BACKEND_H_
