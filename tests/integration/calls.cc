#include "tests/integration/calls.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"

namespace clipserve::testing {

CallResult Call(const std::shared_ptr<grpc::Channel>& channel,
                const v1::ClassifyRequest& request,
                std::chrono::milliseconds timeout) {
  auto stub = v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  CallResult r;
  r.status = stub->Classify(&context, request, &r.response);
  return r;
}

std::future<CallResult> CallAsync(const std::shared_ptr<grpc::Channel>& channel,
                                  v1::ClassifyRequest request,
                                  std::chrono::milliseconds timeout) {
  return std::async(std::launch::async,
                    [channel, request = std::move(request), timeout] {
                      return Call(channel, request, timeout);
                    });
}

v1::ClassifyRequest ClipRequest(const std::string& model, int t, int h, int w,
                                uint64_t seed) {
  v1::ClassifyRequest r;
  r.set_model_name(model);
  *r.mutable_clip() = client::RandomClip(v1::UINT8, t, h, w, seed);
  return r;
}

inference::ModelInferRequest InferRequest(const std::string& model, int batch,
                                          int t, int h, int w, uint64_t seed) {
  inference::ModelInferRequest r;
  r.set_model_name(model);
  auto* in = r.add_inputs();
  in->set_name("clip");
  in->set_datatype("UINT8");
  for (int64_t d : {int64_t{batch}, int64_t{t}, int64_t{h}, int64_t{w}, int64_t{3}}) {
    in->add_shape(d);
  }
  std::string* raw = r.add_raw_input_contents();
  for (int i = 0; i < batch; ++i) {
    *raw += client::RandomClip(v1::UINT8, t, h, w, seed + i).data();
  }
  r.add_outputs()->set_name("logits");
  return r;
}

int64_t Param(const inference::ModelInferResponse& r, const std::string& name) {
  auto it = r.parameters().find(name);
  return it == r.parameters().end() ? -1 : it->second.int64_param();
}

InferResult Infer(const std::shared_ptr<grpc::Channel>& channel,
                  const inference::ModelInferRequest& request,
                  std::chrono::milliseconds timeout) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  InferResult r;
  r.status = stub->ModelInfer(&context, request, &r.response);
  r.done = std::chrono::steady_clock::now();
  return r;
}

std::future<InferResult> InferAsync(const std::shared_ptr<grpc::Channel>& channel,
                                    inference::ModelInferRequest request,
                                    std::chrono::milliseconds timeout) {
  return std::async(std::launch::async,
                    [channel, request = std::move(request), timeout] {
                      return Infer(channel, request, timeout);
                    });
}

void ExpectError(const CallResult& r, grpc::StatusCode code,
                 const std::string& fragment) {
  EXPECT_EQ(r.status.error_code(), code) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find(fragment), std::string::npos)
      << "\"" << r.status.error_message() << "\" lacks \"" << fragment << "\"";
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
    grpc::Status* status_out) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (status_out != nullptr) {
    *status_out = status;
  } else {
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  return response.status();
}

std::string Series(const std::string& name, const std::string& model,
                   const std::string& code) {
  return absl::StrCat(name, "{", code.empty() ? "" : "code=\"" + code + "\",",
                      "model=\"", model, "\",version=\"1\"}");
}

}  // namespace clipserve::testing
