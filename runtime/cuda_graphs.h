// Internal to runtime/: a model's forward captured as CUDA graphs, one per
// batch-size bucket, replayed instead of launching its kernels one by one.
//
// The graphs read a fixed input buffer and write fixed output tensors (that
// is what a graph is): the caller writes a batch into input[0, bucket) and
// reads the bucket's output after Replay(). Built without CUDA (a CPU-only
// LibTorch), Capture() fails with FAILED_PRECONDITION.
#ifndef CLIPSERVE_RUNTIME_CUDA_GRAPHS_H_
#define CLIPSERVE_RUNTIME_CUDA_GRAPHS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Stream.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace clipserve::runtime {

class CapturedForward {
 public:
  virtual ~CapturedForward() = default;

  // Captures `forward(input[0, b))` for each bucket b (ascending; the last
  // at most input.size(0)) on `stream`, a non-default stream of input's
  // device, which must be current for the calling thread. `forward` must
  // already have run at each bucket (warm-up): capture records kernels, it
  // cannot initialise anything. The graphs share one memory pool.
  static absl::StatusOr<std::unique_ptr<CapturedForward>> Capture(
      const std::function<at::Tensor(const at::Tensor&)>& forward,
      const at::Tensor& input, absl::Span<const int64_t> buckets,
      c10::Stream stream);

  // Whether a graph was captured for this batch size.
  virtual bool Has(int64_t bucket) const = 0;
  // Replays the bucket's graph on the current stream and returns its output
  // ([bucket, classes], overwritten by the next replay of that bucket).
  virtual at::Tensor Replay(int64_t bucket) = 0;
};

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_CUDA_GRAPHS_H_
