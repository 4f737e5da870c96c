#include "client/perf_target.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"

namespace clipserve::client {
namespace {

class ClipserveSlot : public CallSlot {
 public:
  ClipserveSlot(v1::VideoClassifier::Stub* stub,
                const v1::ClassifyRequest* request)
      : stub_(stub), request_(request) {}

  void Start(grpc::ClientContext* context,
             std::function<void(grpc::Status)> done) override {
    response_.Clear();
    stub_->async()->Classify(context, request_, &response_, std::move(done));
  }

  ServerSplit Split() const override {
    ServerSplit s;
    if (!response_.has_timings()) return s;
    const v1::Timings& t = response_.timings();
    s.present = true;
    s.queue_us = t.queue_us();
    s.compute_us = t.compute_us();
    s.decode_us = t.decode_us();
    s.batch_size = t.batch_size();
    return s;
  }

 private:
  v1::VideoClassifier::Stub* stub_;
  const v1::ClassifyRequest* request_;
  v1::ClassifyResponse response_;
};

class KServeSlot : public CallSlot {
 public:
  KServeSlot(inference::GRPCInferenceService::Stub* stub,
             const inference::ModelInferRequest* request)
      : stub_(stub), request_(request) {}

  void Start(grpc::ClientContext* context,
             std::function<void(grpc::Status)> done) override {
    response_.Clear();
    stub_->async()->ModelInfer(context, request_, &response_, std::move(done));
  }

  ServerSplit Split() const override { return KServeSplit(response_); }

 private:
  inference::GRPCInferenceService::Stub* stub_;
  const inference::ModelInferRequest* request_;
  inference::ModelInferResponse response_;
};

// A stub and the one request every slot sends; Slot is ClipserveSlot or
// KServeSlot.
template <typename Service, typename Request, typename Slot>
class Target : public LoadTarget {
 public:
  Target(std::shared_ptr<grpc::Channel> channel, Request request,
         int clips_per_request)
      : stub_(Service::NewStub(std::move(channel))),
        request_(std::move(request)),
        clips_per_request_(clips_per_request) {}

  std::unique_ptr<CallSlot> NewSlot() override {
    return std::make_unique<Slot>(stub_.get(), &request_);
  }
  int clips_per_request() const override { return clips_per_request_; }

 private:
  std::unique_ptr<typename Service::Stub> stub_;
  const Request request_;
  const int clips_per_request_;
};

// An int64 or uint64 parameter; nullopt when absent or of another type.
std::optional<int64_t> IntParameter(
    const google::protobuf::Map<std::string, inference::InferParameter>& params,
    const std::string& name) {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  switch (it->second.parameter_choice_case()) {
    case inference::InferParameter::kInt64Param:
      return it->second.int64_param();
    case inference::InferParameter::kUint64Param:
      return static_cast<int64_t>(it->second.uint64_param());
    default:
      return std::nullopt;
  }
}

}  // namespace

std::unique_ptr<LoadTarget> MakeClipserveTarget(
    std::shared_ptr<grpc::Channel> channel, v1::ClassifyRequest request) {
  return std::make_unique<
      Target<v1::VideoClassifier, v1::ClassifyRequest, ClipserveSlot>>(
      std::move(channel), std::move(request), 1);
}

std::unique_ptr<LoadTarget> MakeKServeTarget(
    std::shared_ptr<grpc::Channel> channel, inference::ModelInferRequest request) {
  // The batch is the input's first dimension.
  const int clips =
      request.inputs_size() > 0 && request.inputs(0).shape_size() > 0
          ? static_cast<int>(request.inputs(0).shape(0))
          : 1;
  return std::make_unique<Target<inference::GRPCInferenceService,
                                 inference::ModelInferRequest, KServeSlot>>(
      std::move(channel), std::move(request), clips);
}

absl::StatusOr<inference::ModelInferRequest> BuildKServeRequest(
    const std::string& model, const std::string& version,
    const std::vector<v1::Tensor>& clips, KServeContents contents,
    const std::vector<std::string>& outputs) {
  if (clips.empty()) return absl::InvalidArgumentError("no clips");
  const v1::Tensor& first = clips.front();
  if (first.dtype() != v1::UINT8 && first.dtype() != v1::FP32) {
    return absl::InvalidArgumentError("clip dtype must be UINT8 or FP32");
  }
  for (const v1::Tensor& clip : clips) {
    if (clip.dtype() != first.dtype() ||
        !std::equal(clip.shape().begin(), clip.shape().end(),
                    first.shape().begin(), first.shape().end()) ||
        clip.data().size() != first.data().size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clips differ: [", absl::StrJoin(clip.shape(), ", "), "] vs [",
          absl::StrJoin(first.shape(), ", "), "]"));
    }
  }
  const size_t clip_bytes = first.data().size();
  // A protobuf message (and a repeated field) holds under 2 GiB.
  if (clip_bytes * clips.size() >= size_t{1} << 31) {
    return absl::InvalidArgumentError(absl::StrCat(
        clips.size(), " clips of ", clip_bytes,
        " bytes exceed a request's 2 GiB limit"));
  }
  const bool uint8 = first.dtype() == v1::UINT8;
  inference::ModelInferRequest request;
  request.set_model_name(model);
  request.set_model_version(version);
  inference::ModelInferRequest::InferInputTensor* input = request.add_inputs();
  input->set_name("clip");
  input->set_datatype(uint8 ? "UINT8" : "FP32");
  input->add_shape(static_cast<int64_t>(clips.size()));
  for (int64_t d : first.shape()) input->add_shape(d);
  if (contents == KServeContents::kRaw) {
    std::string* raw = request.add_raw_input_contents();
    raw->reserve(clip_bytes * clips.size());
    for (const v1::Tensor& clip : clips) raw->append(clip.data());
  } else if (uint8) {
    auto* values = input->mutable_contents()->mutable_uint_contents();
    values->Reserve(static_cast<int>(clip_bytes * clips.size()));
    for (const v1::Tensor& clip : clips) {
      for (unsigned char byte : clip.data()) values->Add(byte);
    }
  } else {
    auto* values = input->mutable_contents()->mutable_fp32_contents();
    const size_t n = clip_bytes / sizeof(float);
    values->Reserve(static_cast<int>(n * clips.size()));
    for (const v1::Tensor& clip : clips) {
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, clip.data().data() + i * sizeof(float), sizeof(float));
        values->Add(v);
      }
    }
  }
  for (const std::string& name : outputs) request.add_outputs()->set_name(name);
  return request;
}

ServerSplit KServeSplit(const inference::ModelInferResponse& response) {
  ServerSplit s;
  const std::optional<int64_t> queue = IntParameter(response.parameters(), "queue_us");
  const std::optional<int64_t> compute =
      IntParameter(response.parameters(), "compute_us");
  const std::optional<int64_t> batch =
      IntParameter(response.parameters(), "batch_size");
  if (!queue && !compute && !batch) return s;
  s.present = true;
  s.queue_us = queue.value_or(0);
  s.compute_us = compute.value_or(0);
  s.batch_size = batch.value_or(0);
  return s;
}

grpc::Status FetchKServeMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& model,
                                 inference::ModelMetadataResponse* metadata) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  inference::ModelMetadataRequest request;
  request.set_name(model);
  return stub->ModelMetadata(&context, request, metadata);
}

std::optional<std::vector<int64_t>> KServeClipDims(
    const inference::ModelMetadataResponse& metadata) {
  for (const auto& input : metadata.inputs()) {
    const bool uint8 = input.datatype() == "UINT8";
    if (input.name() != "clip" || (!uint8 && input.datatype() != "FP32") ||
        input.shape_size() != 5) {
      continue;
    }
    // UINT8 [-1, T, H, W, 3]; FP32 [-1, 3, T, H, W].
    const int t = uint8 ? 1 : 2;
    return std::vector<int64_t>{input.shape(t), input.shape(t + 1),
                                input.shape(t + 2)};
  }
  return std::nullopt;
}

}  // namespace clipserve::client
