// The Open Inference Protocol (KServe v2) as clipserve's models see it:
// checking a ModelInferRequest against a model, filling the response, and
// describing the model (ModelMetadata, Triton's ModelConfig and
// ModelStatistics). Pure functions over messages; kserve_service.h does the
// gRPC side.
//
// A model with clips of C x T x H x W (config dims) takes one input, named as
// its config's input, in either of two forms:
//   FP32  [B, C, T, H, W]  already normalised: the config's declared input,
//                          the one form ModelMetadata and ModelConfig list
//                          (input names are unique in the protocol), or
//   UINT8 [B, T, H, W, C]  frames, 0..255 (the server normalises): the same
//                          name with datatype UINT8, accepted as well; told
//                          apart by the request's datatype
// with B in 1..max_batch_size (the B clips are batched together, in order).
// It answers with up to two outputs, FP32 [B, num_classes]: the config's
// output (the logits) and "probabilities" (their softmax).
#ifndef CLIPSERVE_SERVER_KSERVE_TENSORS_H_
#define CLIPSERVE_SERVER_KSERVE_TENSORS_H_

#include <cstdint>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "clipserve/config.pb.h"
#include "inference/grpc_service.pb.h"
#include "inference/model_config.pb.h"
#include "runtime/backend.h"
#include "runtime/clip.h"
#include "server/inference_statistics.h"
#include "server/inference_task.h"

namespace clipserve::server::kserve {

inline constexpr const char* kProbabilitiesOutput = "probabilities";

// What one model exposes on the protocol. The names view strings that must
// outlive it (a ServedModel's config).
struct ModelIo {
  absl::string_view model_name;
  absl::string_view input_name;   // the config's input name, e.g. "clip"
  absl::string_view logits_name;  // the config's output name, e.g. "logits"
  runtime::ModelSpec spec;
  int64_t max_batch_size = 1;
};

enum class Output : uint8_t { kLogits, kProbabilities };

// A request that passed ParseInferRequest.
struct ParsedInfer {
  // count = B clips; views the request's bytes, or `converted`.
  runtime::ClipView clip;
  // Typed UINT8 contents (uint32 values) narrowed to bytes.
  std::string converted;
  // The request sent raw_input_contents: answer in raw_output_contents.
  bool raw = false;
  // In the order to answer them.
  absl::InlinedVector<Output, 2> outputs;
  // Request parameters: "priority" (0: none asked) and "timeout" in
  // microseconds (0: none).
  uint64_t priority = 0;
  int64_t timeout_us = 0;
};

// Checks `request` (its model already chosen) against `io` and fills `out`,
// whose clip then points into `request` (or out->converted): both must
// outlive its use. INVALID_ARGUMENT naming the input, output or parameter.
absl::Status ParseInferRequest(const inference::ModelInferRequest& request,
                               const ModelIo& io, ParsedInfer* out);

// Fills the outputs of `response` from `logits` (parsed.clip.count rows of
// `num_classes`), in the form and order `parsed` asks, plus the request's id
// and the server-side split as int64 parameters queue_us, compute_us and
// batch_size. Model name and version are the caller's.
void FillInferResponse(const inference::ModelInferRequest& request,
                       const ParsedInfer& parsed, const ModelIo& io,
                       absl::Span<const float> logits, int64_t num_classes,
                       const ExecutionStats& stats,
                       inference::ModelInferResponse* response);

// Inputs and outputs for ModelMetadata (name, versions and platform are the
// caller's): the declared input, FP32 [-1, C, T, H, W], and both outputs,
// FP32 [-1, num_classes]; -1 also for any size the model leaves free.
void FillTensorMetadata(const ModelIo& io,
                        inference::ModelMetadataResponse* response);

// What one served model is, for Triton's ModelConfig: its `config`
// (validated, defaults filled) in Triton's message, with the input and
// outputs as ModelMetadata lists them (dims without the batch dimension),
// label_filename "labels.txt" on both outputs when `has_labels`, and each
// instance group's kind as loaded: `devices` has one entry per instance, in
// instance_group order ("cpu" or "cuda:N"), so KIND_AUTO and the "device"
// parameter resolve to KIND_CPU or KIND_GPU with its gpus (a count that
// does not match keeps the config's kinds).
void FillModelConfig(const config::ModelConfig& config, const ModelIo& io,
                     bool has_labels, absl::Span<const std::string> devices,
                     inference::ModelConfig* out);

// `stats` as Triton's ModelStatistics (name and version are the caller's).
void FillModelStatistics(const InferenceStatistics::Snapshot& stats,
                         inference::ModelStatistics* out);

}  // namespace clipserve::server::kserve

#endif  // CLIPSERVE_SERVER_KSERVE_TENSORS_H_
