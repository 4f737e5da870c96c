// Fuzz entry point for the Open Inference Protocol: the bytes are a
// serialised ModelInferRequest (as gRPC hands it to the server), checked
// against a model as ModelInfer and ModelStreamInfer do, raw and typed
// contents, batches, outputs and parameters alike. A request that parses
// gives a clip view inside its own bytes (or the converted copy) of exactly
// the promised size, and an answer can be filled for it; any other request
// gets INVALID_ARGUMENT. Both a fixed-shape model and one of any size.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "server/kserve_tensors.h"
#include "tests/fuzz/request_fuzz.h"

namespace {

using namespace clipserve;

void Check(const inference::ModelInferRequest& request,
           const runtime::ModelSpec& spec, int64_t max_batch_size) {
  server::kserve::ModelIo io;
  io.model_name = "fuzz";
  io.input_name = "clip";
  io.logits_name = "logits";
  io.spec = spec;
  io.max_batch_size = max_batch_size;
  server::kserve::ParsedInfer parsed;
  absl::Status status = server::kserve::ParseInferRequest(request, io, &parsed);
  if (!status.ok()) {
    if (status.code() != absl::StatusCode::kInvalidArgument) std::abort();
    return;
  }
  if (parsed.clip.count > max_batch_size) std::abort();
  if (!parsed.converted.empty()) {
    fuzz::CheckClipView(parsed.clip, spec, parsed.converted.data(),
                        parsed.converted.size());
  } else if (parsed.raw) {
    const std::string& raw = request.raw_input_contents(0);
    fuzz::CheckClipView(parsed.clip, spec, raw.data(), raw.size());
  } else {
    const auto& contents = request.inputs(0).contents().fp32_contents();
    fuzz::CheckClipView(parsed.clip, spec, contents.data(),
                        contents.size() * sizeof(float));
  }
  const std::vector<float> logits(parsed.clip.count * spec.num_classes, 0.5f);
  inference::ModelInferResponse response;
  server::kserve::FillInferResponse(request, parsed, io, logits, spec.num_classes,
                                    server::ExecutionStats{}, &response);
  if (response.outputs_size() != static_cast<int>(parsed.outputs.size())) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  Check(request, fuzz::FixedSpec(), 4);
  Check(request, fuzz::FreeSpec(), 2);
  return 0;
}
