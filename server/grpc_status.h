// absl::Status -> grpc::Status. The two share the canonical code numbers.
#ifndef CLIPSERVE_SERVER_GRPC_STATUS_H_
#define CLIPSERVE_SERVER_GRPC_STATUS_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace clipserve::server {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_GRPC_STATUS_H_
