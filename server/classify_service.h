// The clipserve.v1.VideoClassifier service on gRPC's callback API.
#ifndef CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_
#define CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_

#include <atomic>

#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "server/model_repository.h"

namespace clipserve::server {

class ClassifyService final : public v1::VideoClassifier::CallbackService {
 public:
  // `models` must outlive the service.
  explicit ClassifyService(const ModelRepository* models) : models_(models) {}

  // From now on new requests get UNAVAILABLE; queued ones still complete.
  void StartDraining() { draining_.store(true, std::memory_order_release); }

  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const v1::ClassifyRequest* request,
                                     v1::ClassifyResponse* response) override;

 private:
  const ModelRepository* const models_;
  std::atomic<bool> draining_{false};
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_
