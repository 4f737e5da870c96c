// KServeService: Triton's model repository extension (RepositoryIndex,
// RepositoryModelLoad, RepositoryModelUnload). See kserve_service.h.
#include <grpcpp/grpcpp.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"
#include "server/kserve_service.h"
#include "server/log.h"

namespace clipserve::server {
namespace {

// The RPC's name for the one repository: "" or the directory's own name.
bool IsOurRepository(const std::string& requested, const ModelRepository& models) {
  return requested.empty() ||
         requested ==
             std::filesystem::path(models.root()).lexically_normal().filename().string();
}

// Triton's parameters (a config override, files) would load a model from
// somewhere other than the repository: refused. Only `unload_dependents`
// (a bool, which tritonclient's unload_model always sends) is accepted:
// no model depends on another here, so it changes nothing.
absl::Status CheckParameters(
    const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& params,
    bool unload) {
  for (const auto& [key, value] : params) {
    if (unload && key == "unload_dependents" &&
        value.parameter_choice_case() == inference::ModelRepositoryParameter::kBoolParam) {
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter '", key,
        "' is not supported (a model is loaded from its directory in the "
        "repository)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status KServeService::CheckAdmin(grpc::CallbackServerContext* context,
                                       const std::string& repository_name) const {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(kAdminTokenHeader);
  const absl::string_view authorization =
      it == metadata.end() ? absl::string_view()
                           : absl::string_view(it->second.data(), it->second.size());
  if (absl::Status s = admin_.Check(authorization); !s.ok()) {
    LogWarning(absl::StrCat("repository API refused to ", context->peer(), ": ",
                            s.message()));
    return s;
  }
  if (!IsOurRepository(repository_name, *models_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown repository '", repository_name,
        "' (this server has one: leave repository_name empty)"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KServeService::RepositoryIndex(
    grpc::CallbackServerContext* context,
    const inference::RepositoryIndexRequest* request,
    inference::RepositoryIndexResponse* response) {
  if (absl::Status s = CheckAdmin(context, request->repository_name()); !s.ok()) {
    return FinishUnary(context, s);
  }
  for (const IndexEntry& e : models_->Index(request->ready())) {
    auto* m = response->add_models();
    m->set_name(e.name);
    m->set_version(e.version);
    m->set_state(e.state);
    m->set_reason(e.reason);
  }
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelLoad(
    grpc::CallbackServerContext* context,
    const inference::RepositoryModelLoadRequest* request,
    inference::RepositoryModelLoadResponse* /*response*/) {
  return ChangeModel(context, request->repository_name(), request->model_name(),
                     request->parameters(), /*load=*/true);
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelUnload(
    grpc::CallbackServerContext* context,
    const inference::RepositoryModelUnloadRequest* request,
    inference::RepositoryModelUnloadResponse* /*response*/) {
  return ChangeModel(context, request->repository_name(), request->model_name(),
                     request->parameters(), /*load=*/false);
}

grpc::ServerUnaryReactor* KServeService::ChangeModel(
    grpc::CallbackServerContext* context, const std::string& repository_name,
    const std::string& model_name,
    const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& params,
    bool load) {
  absl::Status s = CheckAdmin(context, repository_name);
  if (s.ok()) s = CheckParameters(params, /*unload=*/!load);
  if (s.ok() && model_name.empty()) s = absl::InvalidArgumentError("model_name is empty");
  if (!s.ok()) return FinishUnary(context, s);
  LogInfo(absl::StrCat("repository API: ", load ? "load" : "unload", " model '",
                       model_name, "' (from ", context->peer(), ")"));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto done = [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); };
  if (load) {
    models_->Load(model_name, std::move(done));
  } else {
    models_->Unload(model_name, std::move(done));
  }
  return reactor;
}

}  // namespace clipserve::server
