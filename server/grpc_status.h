// absl::Status -> grpc::Status (the two share the canonical code numbers),
// and answering a unary call with one.
#ifndef CLIPSERVE_SERVER_GRPC_STATUS_H_
#define CLIPSERVE_SERVER_GRPC_STATUS_H_

#include <string>

#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace clipserve::server {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// Answers a unary callback call that needs no reactor of its own with
// `status` (its response already filled when OK).
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                             const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_GRPC_STATUS_H_
