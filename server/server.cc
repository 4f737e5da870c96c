#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace clipserve::server {
namespace {

constexpr size_t kHeadroomBytes = 1 << 20;
constexpr size_t kAnySizeLimitBytes = 256u << 20;

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    const char* flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is not a PEM file"));
  }
  return text.str();
}

// Plaintext, TLS, or mutual TLS, as the options say.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerOptions& options) {
  if (options.tls_cert_file.empty()) {
    if (!options.tls_key_file.empty() || !options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--grpc-server-key and --grpc-ssl-client-ca need --grpc-use-ssl and "
          "--grpc-server-cert");
    }
    return grpc::InsecureServerCredentials();
  }
  absl::StatusOr<std::string> cert =
      ReadPem(options.tls_cert_file, "--grpc-server-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key =
      ReadPem(options.tls_key_file, "--grpc-server-key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.tls_client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem(options.tls_client_ca_file, "--grpc-ssl-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

// Connection ageing and keepalive, as ServerOptions::ConnectionOptions says.
// Age, grace and keepalive time at 0 mean never/no limit: the first two are
// then left at gRPC's default (infinite); keepalive pings, which gRPC's
// server sends every two hours by default, are turned off.
void SetConnectionArgs(const ServerOptions::ConnectionOptions& c,
                       grpc::ServerBuilder& builder) {
  const auto ms = [](std::chrono::milliseconds d) {
    return static_cast<int>(std::clamp<int64_t>(d.count(), 0, INT32_MAX));
  };
  if (c.max_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(c.max_age));
  }
  if (c.max_age_grace.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ms(c.max_age_grace));
  }
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      c.keepalive_time.count() > 0 ? ms(c.keepalive_time) : INT32_MAX);
  if (c.keepalive_timeout.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               ms(c.keepalive_timeout));
  }
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      ms(c.keepalive_min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             c.keepalive_permit_without_calls ? 1 : 0);
  if (c.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               c.max_concurrent_streams);
  }
}

// The settings SetConnectionArgs applies, in one line for the startup log:
// what an operator checks against a load balancer's or a client's own.
std::string ConnectionSummary(const ServerOptions::ConnectionOptions& c) {
  const auto s = [](std::chrono::milliseconds d) {
    return absl::StrCat(std::chrono::duration<double>(d).count(), " s");
  };
  return absl::StrCat(
      "connections: max age ", c.max_age.count() > 0 ? s(c.max_age) : "never",
      " (grace ", c.max_age_grace.count() > 0 ? s(c.max_age_grace) : "none",
      "), keepalive ",
      c.keepalive_time.count() > 0
          ? absl::StrCat("ping after ", s(c.keepalive_time), " quiet, timeout ",
                         c.keepalive_timeout.count() > 0 ? s(c.keepalive_timeout)
                                                         : "20 s")
          : "off",
      ", client pings at least ", s(c.keepalive_min_ping_interval), " apart ",
      c.keepalive_permit_without_calls ? "(also without calls)" : "(only during calls)",
      ", calls per connection ",
      c.max_concurrent_streams > 0 ? absl::StrCat(c.max_concurrent_streams)
                                   : "unlimited");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    std::unique_ptr<ModelRepository> models, std::shared_ptr<Metrics> metrics,
    const ServerOptions& options) {
  std::unique_ptr<Server> server(new Server());
  server->metrics_ = std::move(metrics);
  server->max_request_bytes_ = options.max_request_bytes;
  if (server->max_request_bytes_ == 0) {
    const size_t largest = models->largest_request_bytes();
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
  prometheus::Gauge* decode_depth = &server->metrics_->decode_queue_depth();
  server->metrics_->decode_queue_capacity().Set(
      static_cast<double>(options.decode_queue_size));
  server->decoders_ = std::make_unique<DecodePool>(
      decode_threads, options.decode_queue_size,
      [decode_depth](size_t waiting) { decode_depth->Set(static_cast<double>(waiting)); });
  server->streams_ = std::make_unique<StreamService>(
      server->models_.get(), server->metrics_.get(), options.streams);
  server->classify_ = std::make_unique<ClassifyService>(
      server->models_.get(), server->decoders_.get(), server->streams_.get(),
      options.video_limits, options.decode_options, options.video_uri_policy,
      server->metrics_.get());
  server->kserve_ = std::make_unique<KServeService>(
      server->models_.get(), server->metrics_.get(), options.admin);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentials(options);
  if (!credentials.ok()) return credentials.status();
  builder.AddListeningPort(options.grpc_address, *credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<size_t>(server->max_request_bytes_, INT32_MAX)));
  SetConnectionArgs(options.connection, builder);
  LogInfo(ConnectionSummary(options.connection));
  builder.RegisterService(server->classify_.get());
  builder.RegisterService(server->kserve_.get());
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
  // Each model's name follows its lifecycle: SERVING while a version of it
  // is served.
  server->models_->SetServingListener([health](const std::string& name, bool serving) {
    health->SetServingStatus(name, serving);
  });
  for (const std::shared_ptr<ServedModel>& m : server->models_->models()) {
    health->SetServingStatus(m->name(), true);
  }
  // A device that can no longer be trusted takes the whole server out of
  // service: its probes fail and an orchestrator replaces it, rather than
  // it answering from a broken GPU.
  server->models_->SetDeviceFailureHandler(
      [health](const std::string& name, const absl::Status& why) {
        LogError(absl::StrCat("health: NOT_SERVING (model '", name, "': ",
                              why.message(), ")"));
        health->SetServingStatus(name, false);
        health->SetServingStatus("", false);
      });
  server->watchdog_ = std::make_unique<HangWatchdog>(
      [repository = server->models_.get()] { return repository->models(); },
      options.model_hang_limit);
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
  // New requests are refused from here on; only then do health and the log
  // say so, so that either is a true witness of it (tests wait on both).
  models_->StartDraining();
  // NOT_SERVING for every service name, and frozen there.
  grpc_->GetHealthCheckService()->Shutdown();
  LogInfo("shutting down: refusing new requests, answering queued ones");
  const auto start = std::chrono::steady_clock::now();
  // Live streams stop taking input; their queued windows are answered while
  // the models still run.
  streams_->Shutdown(grace);
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
