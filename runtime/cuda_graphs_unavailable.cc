// CapturedForward in a build without LibTorch's CUDA libraries: no graphs.
#include "runtime/cuda_graphs.h"

namespace clipserve::runtime {

absl::StatusOr<std::unique_ptr<CapturedForward>> CapturedForward::Capture(
    const std::function<at::Tensor(const at::Tensor&)>& /*forward*/,
    const at::Tensor& /*input*/, absl::Span<const int64_t> /*buckets*/,
    c10::Stream /*stream*/) {
  return absl::FailedPreconditionError(
      "CUDA graphs need clipserve built with LibTorch's CUDA libraries "
      "(CLIPSERVE_CUDA=ON)");
}

}  // namespace clipserve::runtime
