// CapturedForward on CUDA (built when LibTorch's CUDA libraries are linked).
#include "runtime/cuda_graphs.h"

#include <map>
#include <utility>

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include "absl/strings/str_cat.h"
#include "runtime/torch_backend.h"

namespace clipserve::runtime {
namespace {

class CudaGraphForward final : public CapturedForward {
 public:
  bool Has(int64_t bucket) const override {
    return graphs_.find(bucket) != graphs_.end();
  }

  at::Tensor Replay(int64_t bucket) override {
    Graph& g = graphs_.at(bucket);
    g.graph->replay();
    return g.output;
  }

  struct Graph {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    at::Tensor output;
  };
  std::map<int64_t, Graph> graphs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CapturedForward>> CapturedForward::Capture(
    const std::function<at::Tensor(const at::Tensor&)>& forward,
    const at::Tensor& input, absl::Span<const int64_t> buckets,
    c10::Stream stream) {
  if (!input.is_cuda() || stream.device_type() != c10::DeviceType::CUDA) {
    return absl::FailedPreconditionError("CUDA graphs need a CUDA device");
  }
  auto out = std::make_unique<CudaGraphForward>();
  const c10::cuda::CUDAStream cuda_stream(stream);
  if (cuda_stream == c10::cuda::getDefaultCUDAStream(stream.device_index())) {
    return absl::InternalError("CUDA graphs cannot be captured on the default stream");
  }
  // The largest first: the smaller graphs then reuse its pool's blocks.
  const auto pool = at::cuda::graph_pool_handle();
  for (auto it = buckets.rbegin(); it != buckets.rend(); ++it) {
    const int64_t bucket = *it;
    if (bucket > input.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bucket ", bucket, " is larger than the input buffer (",
                       input.size(0), " rows)"));
    }
    CudaGraphForward::Graph g;
    g.graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      const at::Tensor rows = input.narrow(0, 0, bucket);
      // Thread-local mode: other threads (other models' instances) may keep
      // allocating and launching while this one captures.
      g.graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      g.output = forward(rows);
      g.graph->capture_end();
      g.graph->replay();  // Fills output once; checks the graph runs.
      cuda_stream.synchronize();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("capturing the CUDA graph of batch size ",
                                              bucket, " failed: ",
                                              TorchErrorSummary(e)));
    }
    out->graphs_.emplace(bucket, std::move(g));
  }
  return std::unique_ptr<CapturedForward>(std::move(out));
}

}  // namespace clipserve::runtime
