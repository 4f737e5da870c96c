// Backend: one loaded copy of a model that turns a batch of clips into logits.
//
// This header is free of LibTorch so that the server's translation units stay
// cheap to compile; implementations live in runtime/*.cc.
#ifndef CLIPSERVE_RUNTIME_BACKEND_H_
#define CLIPSERVE_RUNTIME_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/clip.h"

namespace clipserve::runtime {

// What a model accepts and produces. -1 in frames/height/width: any size.
struct ModelSpec {
  ClipShape input;        // channels first; channels is never -1
  int64_t num_classes = 0;
};

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
  // not pay for lazy initialisation. Needs a fixed input shape; empty: none.
  std::vector<int64_t> warmup_batch_sizes = {1};
};

// Not thread-safe: one instance runs one batch at a time (the batcher gives
// each instance its own thread). Different instances may run concurrently.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelSpec& spec() const = 0;

  // Runs one batch. All views share dtype and shape (the batcher groups them
  // so), and that shape fits spec().input. Writes sum(count) x num_classes
  // logits, row-major and in view order, into *logits (resized).
  // A model error fails the whole batch with INTERNAL and the model's message;
  // the instance stays usable.
  virtual absl::Status Run(absl::Span<const ClipView> clips,
                           std::vector<float>* logits) = 0;

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

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_BACKEND_H_
