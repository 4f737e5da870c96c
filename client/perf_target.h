// What clipserve-perf sends: one prepared request per step, over clipserve's
// own API (clipserve.v1.VideoClassifier/Classify) or the Open Inference
// Protocol (inference.GRPCInferenceService/ModelInfer, KServe v2).
#ifndef CLIPSERVE_CLIENT_PERF_TARGET_H_
#define CLIPSERVE_CLIENT_PERF_TARGET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "clipserve/v1/video_classifier.pb.h"
#include "inference/grpc_service.pb.h"

namespace clipserve::client {

// Where one request's time went on the server, as its response reports it.
struct ServerSplit {
  bool present = false;  // false: the response carried no timings
  int64_t queue_us = 0;
  int64_t compute_us = 0;
  int64_t decode_us = 0;   // encoded video only
  int64_t batch_size = 0;  // clips in the batch the request ran in
};

// One in-flight call at a time, with its own response; the request it sends
// belongs to the target and is shared, read-only, by all slots.
class CallSlot {
 public:
  virtual ~CallSlot() = default;
  // Starts a call on `context` (fresh for each call). `done` runs once, on a
  // gRPC thread, when the call ends; it may start the next call.
  virtual void Start(grpc::ClientContext* context,
                     std::function<void(grpc::Status)> done) = 0;
  // The server's split from the response of the call that just ended OK.
  virtual ServerSplit Split() const = 0;
};

class LoadTarget {
 public:
  virtual ~LoadTarget() = default;
  virtual std::unique_ptr<CallSlot> NewSlot() = 0;
  // Clips in each request (the KServe batch dimension; 1 for clipserve).
  virtual int clips_per_request() const = 0;
};

// Classify(`request`) on `channel`, the request built once and kept.
std::unique_ptr<LoadTarget> MakeClipserveTarget(
    std::shared_ptr<grpc::Channel> channel, v1::ClassifyRequest request);

// ModelInfer(`request`) on `channel`, the request built once and kept.
std::unique_ptr<LoadTarget> MakeKServeTarget(
    std::shared_ptr<grpc::Channel> channel, inference::ModelInferRequest request);

// How a KServe request carries its input tensor.
enum class KServeContents {
  kRaw,    // raw_input_contents: one bytes entry, row-major little-endian
  kTyped,  // contents.uint_contents (UINT8) or contents.fp32_contents (FP32)
};

// A ModelInfer request for `model` whose input "clip" stacks `clips` (all of
// one dtype and shape, as RandomClip makes them) along a new first (batch)
// dimension: UINT8 [B, T, H, W, 3] or FP32 [B, 3, T, H, W]. `outputs` names
// the outputs to return (empty: all). INVALID_ARGUMENT for no clips or clips
// that differ in dtype or shape.
absl::StatusOr<inference::ModelInferRequest> BuildKServeRequest(
    const std::string& model, const std::string& version,
    const std::vector<v1::Tensor>& clips, KServeContents contents,
    const std::vector<std::string>& outputs);

// The split clipserve puts in a ModelInfer response's parameters: queue_us,
// compute_us and batch_size (int64 or uint64 parameters).
ServerSplit KServeSplit(const inference::ModelInferResponse& response);

// KServe ModelMetadata for `model`; 10 s deadline.
grpc::Status FetchKServeMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& model,
                                 inference::ModelMetadataResponse* metadata);

// T, H, W of the model's input "clip" from KServe metadata, read from the
// first such input listed in either layout (FP32 [-1, 3, T, H, W], which
// clipserve lists, or UINT8 [-1, T, H, W, 3]): the clip size is the same
// whichever form a request then sends. Each -1 when the model takes any
// size; nullopt when no such input is listed.
std::optional<std::vector<int64_t>> KServeClipDims(
    const inference::ModelMetadataResponse& metadata);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_TARGET_H_
