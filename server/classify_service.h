// The clipserve.v1.VideoClassifier service on gRPC's callback API.
#ifndef CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_
#define CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_

#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "server/decode_pool.h"
#include "server/metrics.h"
#include "server/lifecycle/model_repository.h"
#include "server/streams/stream_service.h"
#include "video/decode.h"
#include "video/fetch.h"

namespace clipserve::server {

class ClassifyService final : public v1::VideoClassifier::CallbackService {
 public:
  // `models`, `decoders` and `metrics` must outlive the service. Encoded
  // videos are decoded on `decoders` within `video_limits`; a video given
  // by URI is read there too, under `uri_policy`.
  ClassifyService(const ModelRepository* models, DecodePool* decoders,
                  StreamService* streams, const video::Limits& video_limits,
                  const video::DecodeOptions& decode_options,
                  const video::UriPolicy& uri_policy, Metrics* metrics)
      : models_(models),
        decoders_(decoders),
        streams_(streams),
        video_limits_(video_limits),
        decode_options_(decode_options),
        uri_policy_(uri_policy),
        metrics_(metrics) {}

  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const v1::ClassifyRequest* request,
                                     v1::ClassifyResponse* response) override;

  // Live streams: see server/streams/stream_service.h.
  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* ClassifyStream(
      grpc::CallbackServerContext* context) override {
    return streams_->Start(context);
  }

  grpc::ServerUnaryReactor* GetModelMetadata(
      grpc::CallbackServerContext* context,
      const v1::ModelMetadataRequest* request,
      v1::ModelMetadataResponse* response) override;

 private:
  const ModelRepository* const models_;
  DecodePool* const decoders_;
  StreamService* const streams_;
  const video::Limits video_limits_;
  const video::DecodeOptions decode_options_;
  const video::UriPolicy uri_policy_;
  Metrics* const metrics_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_CLASSIFY_SERVICE_H_
