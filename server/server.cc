#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace clipserve::server {
namespace {

constexpr size_t kHeadroomBytes = 1 << 20;
constexpr size_t kAnySizeLimitBytes = 256u << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    std::unique_ptr<ModelRepository> models, std::shared_ptr<Metrics> metrics,
    const ServerOptions& options) {
  std::unique_ptr<Server> server(new Server());
  server->metrics_ = std::move(metrics);
  server->max_request_bytes_ = options.max_request_bytes;
  if (server->max_request_bytes_ == 0) {
    const size_t largest = models->largest_clip_bytes();
    server->max_request_bytes_ =
        largest == 0 ? kAnySizeLimitBytes
                     : std::max(largest, options.video_limits.max_bytes) +
                           kHeadroomBytes;
  }
  server->models_ = std::move(models);
  const int decode_threads =
      options.decode_threads > 0
          ? options.decode_threads
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  server->decoders_ =
      std::make_unique<DecodePool>(decode_threads, options.decode_queue_size);
  server->classify_ = std::make_unique<ClassifyService>(
      server->models_.get(), server->decoders_.get(), options.video_limits,
      server->metrics_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc_address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<size_t>(server->max_request_bytes_, INT32_MAX)));
  builder.RegisterService(server->classify_.get());
  server->grpc_ = builder.BuildAndStart();
  if (!server->grpc_ || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.grpc_address));
  }
  if (!options.metrics_address.empty()) {
    try {
      server->exposer_ =
          std::make_unique<prometheus::Exposer>(options.metrics_address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", options.metrics_address,
                       ": ", e.what()));
    }
    for (const auto& c : server->metrics_->collectables()) {
      server->exposer_->RegisterCollectable(c);
    }
    const std::vector<int> ports = server->exposer_->GetListeningPorts();
    server->metrics_port_ = ports.empty() ? 0 : ports.front();
  }
  grpc::HealthCheckServiceInterface* health =
      server->grpc_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (ServedModel* m : server->models_->models()) {
    health->SetServingStatus(m->name(), true);
  }
  return server;
}

Server::~Server() {
  Shutdown(std::chrono::seconds(5));
  // Stop serving metrics before the models they read go away.
  exposer_.reset();
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_ || !grpc_) return;
  shut_down_ = true;
  LogInfo("shutting down: refusing new requests, answering queued ones");
  // NOT_SERVING for every service name, and frozen there.
  grpc_->GetHealthCheckService()->Shutdown();
  classify_->StartDraining();
  const auto start = std::chrono::steady_clock::now();
  // Videos being decoded still join their models' queues, which drain after.
  decoders_->Shutdown();
  models_->Shutdown();
  LogInfo(absl::StrCat(
      "all queued requests answered in ",
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start)
          .count(),
      " ms"));
  grpc_->Shutdown(std::chrono::system_clock::now() + grace);
  grpc_->Wait();
  LogInfo("gRPC server stopped");
}

}  // namespace clipserve::server
