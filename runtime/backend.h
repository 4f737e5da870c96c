// Backend: one loaded copy of a model that turns a batch of clips into logits.
//
// This header is free of LibTorch so that the server's translation units stay
// cheap to compile; implementations live in runtime/*.cc.
#ifndef CLIPSERVE_RUNTIME_BACKEND_H_
#define CLIPSERVE_RUNTIME_BACKEND_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/clip.h"

namespace clipserve::runtime {

// What a model accepts and produces. -1 in frames/height/width: any size.
struct ModelSpec {
  ClipShape input;        // channels first; channels is never -1
  int64_t num_classes = 0;
};

// The floating-point type a model's weights and activations are held in.
enum class Precision { kFp32, kFp16, kBf16 };

// "fp32", "fp16", "bf16" (the names a config uses); INVALID_ARGUMENT else.
absl::StatusOr<Precision> ParsePrecision(absl::string_view name);
const char* PrecisionName(Precision precision);

// The batch size a batch of `batch` clips runs at: the smallest bucket that
// holds it, or `batch` itself when `buckets` (ascending) is empty or all of
// them are smaller.
int64_t BucketFor(int64_t batch, absl::Span<const int64_t> buckets);

// 1, 2, 4, ... up to max_batch_size, and max_batch_size itself.
std::vector<int64_t> PowerOfTwoBuckets(int64_t max_batch_size);

// How far one precision's logits are from another's on the same clips.
struct LogitAgreement {
  int64_t clips = 0;
  // Fraction of clips whose top-1 class is the same.
  double top1_agreement = 0;
  // Largest |a - b| over every logit, and the largest |a| (for scale).
  double max_abs_diff = 0;
  double max_abs_reference = 0;
};
// `reference` and `other`: clips x `classes` logits, row-major, same size.
LogitAgreement CompareLogits(absl::Span<const float> reference,
                             absl::Span<const float> other, int64_t classes);

// How to load one instance of a model.
struct BackendOptions {
  // "cpu" or "cuda:N" (e.g. "cuda:0"). CUDA needs a CUDA build of LibTorch
  // and a visible device; otherwise loading fails with FAILED_PRECONDITION.
  std::string device = "cpu";
  // Threads one operator may use inside this instance (LibTorch's intra-op
  // parallelism). 0 keeps LibTorch's default. Applied on the thread that
  // calls Run(), since LibTorch's setting is per thread under OpenMP.
  int intra_op_threads = 0;
  // Batch sizes to run once at load time with zeros, so the first requests do
  // not pay for lazy initialisation (and, on CUDA, cuDNN's algorithm search
  // for that shape). Needs a fixed input shape; empty: none. Sizes are
  // rounded up to their bucket first.
  std::vector<int64_t> warmup_batch_sizes = {1};
  // Weights and activations: converted once at load. Inputs are converted on
  // the device; logits always come back as float.
  Precision precision = Precision::kFp32;
  // Clips the staging buffers hold without growing. 0: sized by the first
  // batch. A larger batch still runs (the buffers grow, once).
  int64_t max_batch_size = 0;
  // Ascending batch sizes the model runs at: a batch is padded with zero
  // clips up to BucketFor(); only its own rows are answered. Empty: each
  // batch runs at its own size.
  std::vector<int64_t> batch_buckets;
  // CUDA only, needs batch_buckets: the forward of each bucket is captured
  // as a CUDA graph at load and replayed for every batch of that bucket.
  bool cuda_graphs = false;
  // Batches one instance may hold in flight on CUDA (a staging slot each):
  // with 2, batch N+1 is assembled and uploaded while batch N computes.
  // Ignored on the CPU (always 1).
  int cuda_staging_slots = 2;
  // Test seam: called just before each forward with the batch size it runs
  // at. A test throws from it (e.g. c10::OutOfMemoryError) to inject a fault.
  std::function<void(int64_t)> before_forward;
};

// Where the time of one Run() went, in microseconds. On CUDA these come from
// CUDA events on the instance's streams; on the CPU from the host clock, and
// there are no device copies (upload_us and download_us stay 0).
struct RunTimings {
  bool device_copies = false;  // true on CUDA
  int64_t batch = 0;           // the size the model ran at (after padding)
  int64_t upload_us = 0;       // host -> device copy of the batch
  int64_t compute_us = 0;      // normalisation and the model's forward
  int64_t download_us = 0;     // logits device -> host
};

// One instance runs at most max_concurrent_runs() batches at a time: the
// batcher gives each its own thread ("lane"). Different instances may run
// concurrently.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelSpec& spec() const = 0;

  // Runs one batch. All views share dtype and shape (the batcher groups them
  // so), and that shape fits spec().input. Writes sum(count) x num_classes
  // logits, row-major and in view order, into *logits (resized), and where
  // the time went into *timings when not null.
  // A model error fails the whole batch with INTERNAL and the model's message;
  // running out of device memory fails it with RESOURCE_EXHAUSTED. Either
  // way the instance stays usable, unless health() says otherwise.
  virtual absl::Status Run(absl::Span<const ClipView> clips,
                           std::vector<float>* logits,
                           RunTimings* timings) = 0;
  absl::Status Run(absl::Span<const ClipView> clips,
                   std::vector<float>* logits) {
    return Run(clips, logits, nullptr);
  }

  // How many threads may be inside Run() at once (1 on the CPU; the staging
  // slots on CUDA).
  virtual int max_concurrent_runs() const { return 1; }

  // OK while the instance can run batches. After a device error that leaves
  // the device unusable (an illegal address, a device-side assert), the
  // reason, as UNAVAILABLE; every later Run() fails with it at once.
  virtual absl::Status health() const { return absl::OkStatus(); }

  // Human-readable device this instance runs on, e.g. "cpu" or "cuda:0".
  virtual std::string device() const = 0;

  // True when the weights are random rather than loaded (a model served to
  // try the server, whose answers mean nothing).
  virtual bool untrained() const { return false; }
};

// Loads a TorchScript module (torch::jit::load) from `path`. The module's
// forward takes one float tensor [B, C, T, H, W] and returns logits
// [B, num_classes]; `spec` says what C, T, H, W and num_classes are.
absl::StatusOr<std::unique_ptr<Backend>> LoadTorchScriptBackend(
    const std::string& path, const ModelSpec& spec,
    const BackendOptions& options);

// One instance per entry of `options`; instances with the same device and
// precision share one copy of the weights (the module is only read).
absl::StatusOr<std::vector<std::unique_ptr<Backend>>> LoadTorchScriptBackends(
    const std::string& path, const ModelSpec& spec,
    const std::vector<BackendOptions>& options);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_BACKEND_H_
