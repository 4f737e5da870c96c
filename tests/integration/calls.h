// Calls to a running server for the integration tests: a Classify call
// (blocking or on its own thread), a health check, and the names of the
// metric series the tests read.
#ifndef CLIPSERVE_TESTS_INTEGRATION_CALLS_H_
#define CLIPSERVE_TESTS_INTEGRATION_CALLS_H_

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"

namespace clipserve::testing {

struct CallResult {
  grpc::Status status;
  v1::ClassifyResponse response;
};

// Classify with a deadline `timeout` from now.
CallResult Call(const std::shared_ptr<grpc::Channel>& channel,
                const v1::ClassifyRequest& request,
                std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Call() on a thread of its own; the request is copied.
std::future<CallResult> CallAsync(
    const std::shared_ptr<grpc::Channel>& channel, v1::ClassifyRequest request,
    std::chrono::milliseconds timeout = std::chrono::seconds(120));

// A Classify request for `model` with a random UINT8 clip of t x h x w
// (client::RandomClip, seeded).
v1::ClassifyRequest ClipRequest(const std::string& model, int t, int h, int w,
                                uint64_t seed);

// A KServe ModelInfer request for `model`: input "clip", UINT8, shape
// [batch, t, h, w, 3], the random clips of seeds seed, seed + 1, ... as raw
// contents; output "logits".
inference::ModelInferRequest InferRequest(const std::string& model, int batch,
                                          int t, int h, int w, uint64_t seed);

struct InferResult {
  grpc::Status status;
  inference::ModelInferResponse response;
  std::chrono::steady_clock::time_point done;  // when the answer came
};

// ModelInfer with a deadline `timeout` from now.
InferResult Infer(const std::shared_ptr<grpc::Channel>& channel,
                  const inference::ModelInferRequest& request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(60));
std::future<InferResult> InferAsync(
    const std::shared_ptr<grpc::Channel>& channel,
    inference::ModelInferRequest request,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The int64 response parameter `name` of `r` (e.g. "batch_size"), or -1.
int64_t Param(const inference::ModelInferResponse& r, const std::string& name);

// The call failed with `code`, and its message contains `fragment`.
void ExpectError(const CallResult& r, grpc::StatusCode code,
                 const std::string& fragment);

// grpc.health.v1 Check of `service` ("" for the whole server). The call's
// status goes to `status` when given; without it, the call must succeed.
grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
    grpc::Status* status = nullptr);

// A model's series as the server exposes it: name{code="CODE",model="M",
// version="1"} (no code label when `code` is empty).
std::string Series(const std::string& name, const std::string& model,
                   const std::string& code = "");

}  // namespace clipserve::testing

#endif  // CLIPSERVE_TESTS_INTEGRATION_CALLS_H_
