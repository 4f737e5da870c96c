// inference.GRPCInferenceService: the Open Inference Protocol (KServe v2),
// served on the same port and over the same models, batchers and metrics as
// clipserve.v1.VideoClassifier. Tensor forms and checks: kserve_tensors.h.
//
// Besides the protocol's RPCs it serves two of Triton's extensions, which
// ServerMetadata lists: "model_configuration" (ModelConfig: the served
// model's config in Triton's message) and "statistics" (ModelStatistics:
// what each model version has done since load, server/inference_statistics.h).
//
// Errors follow Triton's mapping: unknown model or version NOT_FOUND; a bad
// input, output or parameter INVALID_ARGUMENT; a full queue or a draining
// server UNAVAILABLE. ModelStreamInfer answers each request on the stream,
// in completion order, tagged with the request's id; a failed request gets
// error_message and leaves the stream open. ModelConfig and ModelStatistics
// answer while the server drains.
//
// Triton's model repository extension ("model_repository"): RepositoryIndex,
// RepositoryModelLoad and RepositoryModelUnload (server/kserve_repository.cc)
// over the ModelRepository's lifecycle, restricted by an AdminAuth
// (PERMISSION_DENIED before anything else is looked at). A load or unload
// answers when it is done, without holding a gRPC thread meanwhile.
#ifndef CLIPSERVE_SERVER_KSERVE_SERVICE_H_
#define CLIPSERVE_SERVER_KSERVE_SERVICE_H_


#include "inference/grpc_service.grpc.pb.h"
#include "server/lifecycle/admin_auth.h"
#include "server/lifecycle/model_repository.h"
#include "server/metrics.h"

namespace clipserve::server {

class KServeService final
    : public inference::GRPCInferenceService::CallbackService {
 public:
  // `models` and `metrics` must outlive the service.
  KServeService(ModelRepository* models, Metrics* metrics, AdminAuth admin)
      : models_(models), metrics_(metrics), admin_(std::move(admin)) {}

  const ModelRepository& models() const { return *models_; }
  Metrics* metrics() const { return metrics_; }

  grpc::ServerUnaryReactor* ServerLive(
      grpc::CallbackServerContext* context,
      const inference::ServerLiveRequest* request,
      inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(
      grpc::CallbackServerContext* context,
      const inference::ServerReadyRequest* request,
      inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(
      grpc::CallbackServerContext* context,
      const inference::ModelReadyRequest* request,
      inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(
      grpc::CallbackServerContext* context,
      const inference::ServerMetadataRequest* request,
      inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(
      grpc::CallbackServerContext* context,
      const inference::ModelMetadataRequest* request,
      inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(
      grpc::CallbackServerContext* context,
      const inference::ModelInferRequest* request,
      inference::ModelInferResponse* response) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest,
                          inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* context) override;
  // The model `name` (empty: the default model) at `version` (empty: the
  // served one); NOT_FOUND otherwise.
  grpc::ServerUnaryReactor* ModelConfig(
      grpc::CallbackServerContext* context,
      const inference::ModelConfigRequest* request,
      inference::ModelConfigResponse* response) override;
  // One entry per model named (empty name: every model, in name order),
  // restricted to `version` when set; NOT_FOUND for an unknown model or
  // version, or a version no model serves.
  grpc::ServerUnaryReactor* ModelStatistics(
      grpc::CallbackServerContext* context,
      const inference::ModelStatisticsRequest* request,
      inference::ModelStatisticsResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryIndex(
      grpc::CallbackServerContext* context,
      const inference::RepositoryIndexRequest* request,
      inference::RepositoryIndexResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* context,
      const inference::RepositoryModelLoadRequest* request,
      inference::RepositoryModelLoadResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* context,
      const inference::RepositoryModelUnloadRequest* request,
      inference::RepositoryModelUnloadResponse* response) override;

 private:
  // PERMISSION_DENIED unless the call may use the repository RPCs; then
  // INVALID_ARGUMENT for a repository other than ours.
  absl::Status CheckAdmin(grpc::CallbackServerContext* context,
                          const std::string& repository_name) const;
  // RepositoryModelLoad (`load`) or RepositoryModelUnload: checks, then hands
  // the change to the lifecycle thread, which answers.
  grpc::ServerUnaryReactor* ChangeModel(
      grpc::CallbackServerContext* context, const std::string& repository_name,
      const std::string& model_name,
      const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& params,
      bool load);

  ModelRepository* const models_;
  Metrics* const metrics_;
  const AdminAuth admin_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_KSERVE_SERVICE_H_
