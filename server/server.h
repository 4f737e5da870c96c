// Server: the gRPC front of a ModelRepository, and its shutdown sequence.
#ifndef CLIPSERVE_SERVER_SERVER_H_
#define CLIPSERVE_SERVER_SERVER_H_

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/server.h>
#include <prometheus/exposer.h>

#include "absl/status/statusor.h"
#include "server/classify_service.h"
#include "server/decode_pool.h"
#include "server/kserve_service.h"
#include "server/lifecycle/admin_auth.h"
#include "server/lifecycle/hang_watchdog.h"
#include "server/lifecycle/model_repository.h"
#include "server/streams/stream_service.h"
#include "video/decode.h"
#include "video/fetch.h"

namespace clipserve::server {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free one (see Server::port()).
  std::string grpc_address = "0.0.0.0:8001";
  // Largest request accepted, in bytes; larger messages get RESOURCE_EXHAUSTED
  // from gRPC. 0: derived from the models and video limit (the largest batch
  // of FP32 clips a model accepts in one request, or video_limits.max_bytes,
  // plus 1 MiB of headroom; 256 MiB when a model accepts clips of any size).
  size_t max_request_bytes = 0;
  // Encoded video: limits, and the threads that decode (0: one per core) with
  // the number of videos that may wait for one.
  video::Limits video_limits;
  // How each video is decoded: device "cuda" uses NVDEC where it can.
  video::DecodeOptions decode_options;
  // Where a request may ask the server to read its video from (empty:
  // nowhere; every video comes as bytes).
  video::UriPolicy video_uri_policy;
  int decode_threads = 0;
  size_t decode_queue_size = 64;
  // Live streams (ClassifyStream); `limits` is set from video_limits.
  StreamOptions streams;
  // TLS for the gRPC port: PEM files. Empty cert: plaintext. With
  // tls_client_ca set, clients must present a certificate signed by it
  // (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Who may call the model repository RPCs (default: nobody).
  AdminAuth admin = AdminAuth::Closed();
  // host:port of the Prometheus endpoint (/metrics); port 0 picks a free one
  // (see Server::metrics_port()); empty: no endpoint.
  std::string metrics_address = "0.0.0.0:8002";
  // How the gRPC port manages client connections (docs/deploy.md,
  // "Connection ageing and keepalive"). The defaults suit pods behind a
  // Kubernetes Service that autoscales.
  struct ConnectionOptions {
    // A connection this old is sent GOAWAY: its client finishes what it has
    // in flight, reconnects and, with a dns:/// target, re-resolves the name,
    // so clients that connected before a scale-out reach the new pods. gRPC
    // adds up to +-10% jitter. 0: connections never age.
    std::chrono::milliseconds max_age = std::chrono::seconds(120);
    // How long calls still open on an aged connection may go on before the
    // connection is closed under them. 0: no limit, so a long ClassifyStream
    // (a camera) is never cut; it keeps its pod until it ends.
    std::chrono::milliseconds max_age_grace{0};
    // The server pings a connection that has been quiet this long, and
    // closes it if the ping goes unanswered for keepalive_timeout (0:
    // gRPC's default, 20 s): dead peers are found, and middleboxes with an
    // idle timeout see traffic. keepalive_time 0: no pings.
    std::chrono::milliseconds keepalive_time = std::chrono::seconds(60);
    std::chrono::milliseconds keepalive_timeout = std::chrono::seconds(20);
    // Keepalive enforcement: a client ping sooner than this after the
    // previous one (with no data between) is a strike; after two strikes the
    // next one gets GOAWAY "too_many_pings". 0: any ping rate.
    std::chrono::milliseconds keepalive_min_ping_interval =
        std::chrono::seconds(10);
    // Whether pings are fine on a connection without calls: client pings
    // there are accepted at the interval above (false: at most one per two
    // hours), and the server's own keepalive pings go out there too.
    bool keepalive_permit_without_calls = true;
    // Calls open at once on one connection (HTTP/2
    // SETTINGS_MAX_CONCURRENT_STREAMS); a client's further calls wait on
    // its side until one ends. 0: gRPC's default (no limit).
    int max_concurrent_streams = 1000;
  } connection;
  // A batch running longer than this makes its model unhealthy and the
  // server NOT_SERVING (server/lifecycle/hang_watchdog.h). 0: not watched.
  std::chrono::milliseconds model_hang_limit = std::chrono::seconds(300);
};

class Server {
 public:
  // Starts serving `models` on clipserve.v1.VideoClassifier and the Open
  // Inference Protocol (and grpc.health.v1, server reflection), and
  // `metrics` (into which the models record) over HTTP.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      std::unique_ptr<ModelRepository> models, std::shared_ptr<Metrics> metrics,
      const ServerOptions& options);

  ~Server();

  // The port actually bound.
  int port() const { return port_; }
  // The metrics port actually bound; 0 without an endpoint.
  int metrics_port() const { return metrics_port_; }
  size_t max_request_bytes() const { return max_request_bytes_; }

  // Graceful shutdown: health turns NOT_SERVING, new requests get
  // UNAVAILABLE, every live stream's queued windows are answered and the
  // stream ends with UNAVAILABLE (waiting at most `grace`), every queued and
  // running request is answered, then gRPC
  // stops (waiting at most `grace` for calls still open). Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  Server() = default;

  // Declared in the order they must outlive each other: the endpoint reads
  // the models' queues, so it goes first.
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<ModelRepository> models_;
  std::unique_ptr<DecodePool> decoders_;
  std::unique_ptr<StreamService> streams_;
  std::unique_ptr<ClassifyService> classify_;
  std::unique_ptr<KServeService> kserve_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // Declared after models_: stops before they go.
  std::unique_ptr<HangWatchdog> watchdog_;
  int port_ = 0;
  int metrics_port_ = 0;
  size_t max_request_bytes_ = 0;
  bool shut_down_ = false;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_SERVER_H_
