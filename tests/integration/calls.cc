#include "tests/integration/calls.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

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

void ExpectError(const CallResult& r, grpc::StatusCode code,
                 const std::string& fragment) {
  EXPECT_EQ(r.status.error_code(), code) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find(fragment), std::string::npos)
      << "\"" << r.status.error_message() << "\" lacks \"" << fragment << "\"";
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

std::string Series(const std::string& name, const std::string& model,
                   const std::string& code) {
  return absl::StrCat(name, "{", code.empty() ? "" : "code=\"" + code + "\",",
                      "model=\"", model, "\",version=\"1\"}");
}

}  // namespace clipserve::testing
