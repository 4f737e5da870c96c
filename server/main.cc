// clipserve: the inference server binary.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/allocator.h"
#include "runtime/device.h"
#include "server/gpu_metrics.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/lifecycle/model_repository.h"
#include "server/server.h"

namespace {

using clipserve::server::LogError;
using clipserve::server::LogInfo;
using clipserve::server::LogWarning;

constexpr const char* kUsage = R"(Usage: clipserve [flags]

Serves video action recognition models over gRPC with dynamic batching.

Flags:
  --model-repository DIR  Model repository: DIR/<model>/config.pbtxt and
                          DIR/<model>/<version>/ with the weights. Without
                          it the built-in 'i3d' (Inception-I3D, 400 classes,
                          16 x 224 x 224) is served with UNTRAINED weights.
  --model-control-mode M  none (default): the repository is read once at
                          start. poll: it is read again every
                          --repository-poll-seconds; new, changed and
                          removed models and versions are loaded and
                          unloaded without downtime. explicit: only
                          --load-model models at start, then the
                          repository RPCs load and unload (docs/lifecycle.md).
  --repository-poll-seconds S
                          poll mode: seconds between reads (default 5; a
                          change is loaded once it has stayed the same for
                          one whole interval).
  --load-model NAME       explicit mode: load NAME at start (repeatable).
  --admin-token-file FILE Opens the repository RPCs (index, load, unload)
                          to calls carrying "authorization: Bearer <token>",
                          the token being FILE's content (16+ characters).
  --repository-api-open   Opens the repository RPCs to every caller, with no
                          token (local use only). Without either flag they
                          are refused (PERMISSION_DENIED).
  --grpc-port N           gRPC port (default 8001; 0 picks a free port).
  --grpc-address HOST     Address to listen on (default 0.0.0.0).
  --grpc-use-ssl          Serve gRPC over TLS (needs the two flags below).
  --grpc-server-cert FILE PEM certificate (chain) of the server.
  --grpc-server-key FILE  PEM private key of the server.
  --grpc-ssl-client-ca FILE
                          Mutual TLS: require client certificates signed by
                          this PEM CA. The metrics port stays plain HTTP.
  --grpc-max-connection-age S
                          Send a client connection GOAWAY S seconds after it
                          opened (gRPC adds up to 10% jitter): its client
                          reconnects and re-resolves the name, so clients
                          that connected before a scale-out reach the new
                          replicas (default 120; 0: never).
  --grpc-max-connection-age-grace S
                          How long calls still open on an aged connection
                          may go on before it is closed (default 0: no
                          limit, so live streams are never cut).
  --grpc-keepalive-time S Ping a connection that has been quiet for S
                          seconds (default 60; 0: never).
  --grpc-keepalive-timeout S
                          Close a connection whose ping is not answered
                          within S seconds (default 20).
  --grpc-keepalive-min-ping-interval S
                          Client pings less than S seconds apart are
                          strikes; after two, the next ping gets GOAWAY
                          too_many_pings (default 10; 0: any rate). Keep it
                          at or below the keepalive time clients use.
  --grpc-keepalive-permit-without-calls BOOL
                          Accept client pings, and send the server's own, on
                          connections with no call open (default true).
  --grpc-max-concurrent-streams N
                          Calls open at once on one connection; a client's
                          further calls wait until one ends (default 1000;
                          0: no limit).
  --metrics-port N        Port of the Prometheus endpoint, /metrics
                          (default 8002; 0 picks a free port).
  --allow-metrics BOOL    Serve metrics at all (default true).
  --allow-tf32 BOOL       Let fp32 matrix products and convolutions on GPUs
                          of the Ampere generation and newer use TF32 tensor
                          cores (default true; no effect on the CPU).
  --latency-buckets LIST  Upper bounds in seconds of the duration histograms
                          (default 0.0005,0.001,...,10,30).
  --gpu-metrics-interval-ms N
                          How often GPUs are sampled through NVML (default
                          1000).
  --nvml-library PATH     NVML to dlopen (default libnvidia-ml.so.1).
  --max-request-bytes N   Largest request accepted (default: derived from the
                          largest model input).
  --decode-device D       cpu (default) or cuda: decode videos with NVDEC
                          through FFmpeg's cuda hwaccel where a GPU and the
                          driver's libnvcuvid are there, else on the CPU (one
                          warning, and clipserve_decode_gpu_fallbacks_total).
  --decode-threads N      Threads decoding encoded videos (default: one per
                          core).
  --video-uri-prefix P    Lets requests name their video by URI (uri instead
                          of data) under P: file:///DIR/, http://HOST/... or
                          https://HOST/..., ending in /. Repeat the flag for
                          more. Default: none (every video comes as bytes).
  --video-uri-timeout-seconds S
                          The longest reading one video by URI may take,
                          whatever the request's deadline (default 30).
  --decode-queue-size N   Videos that may wait for a decoder before requests
                          get RESOURCE_EXHAUSTED (default 64).
  --video-max-bytes N     Largest encoded video accepted (default 64 MiB).
  --video-max-side N      Largest width or height a video may declare
                          (default 4096).
  --video-max-frames N    Most frames a video may have (default 10000).
  --video-max-seconds S   Longest video accepted (default 600).
  --video-decode-timeout-seconds S
                          The longest decoding one video may take (fractions
                          allowed); past it the request gets INVALID_ARGUMENT
                          and the decoder is free again (default 60).
  --max-streams N         Live streams (ClassifyStream) open at once; more
                          get RESOURCE_EXHAUSTED (default 64).
  --stream-idle-timeout-seconds S
                          A pushed stream with no message for S seconds ends
                          with DEADLINE_EXCEEDED (default 30).
  --stream-source-prefix P
                          Lets streams name a source the server pulls
                          (source_url) under P: rtsp://HOST/..., rtsps://,
                          http(s)://HOST/..., file:///DIR/ (ending in /) or
                          udp://HOST:PORT. Repeat for more. Default: none
                          (streams are pushed by their clients).
  --stream-source-timeout-seconds S
                          A pulled source with no data for S seconds is lost
                          and reconnected (default 5).
  --model-hang-seconds S  A batch still running after S seconds (fractions
                          allowed) makes its model unready and the server
                          NOT_SERVING, for its orchestrator to restart it
                          (default 300; 0: never).
  --drain-timeout-seconds S
                          On SIGTERM/SIGINT, how long open calls may take to
                          finish once every queued request is answered
                          (default 30).
  --help                  Show this text.

Serves clipserve.v1.VideoClassifier, grpc.health.v1.Health (service "" and
one per model name) and gRPC server reflection. SIGTERM or SIGINT drains:
health turns NOT_SERVING, new requests get UNAVAILABLE, queued requests are
answered, then the process exits 0. A second signal exits at once.
)";

struct Flags {
  std::string model_repository;
  clipserve::server::RepositoryOptions repository;
  std::string admin_token_file;
  bool repository_api_open = false;
  std::string grpc_address = "0.0.0.0";
  int grpc_port = 8001;
  int metrics_port = 8002;
  bool allow_metrics = true;
  bool allow_tf32 = true;
  bool use_ssl = false;
  std::string server_cert, server_key, client_ca;
  std::vector<double> latency_buckets =
      clipserve::server::DefaultDurationBuckets();
  std::chrono::milliseconds model_hang_limit = std::chrono::seconds(300);
  int gpu_metrics_interval_ms = 1000;
  std::string nvml_library = "libnvidia-ml.so.1";
  size_t max_request_bytes = 0;
  int drain_timeout_seconds = 30;
  int decode_threads = 0;
  size_t decode_queue_size = 64;
  clipserve::video::Limits video_limits;
  clipserve::video::DecodeOptions decode_options;
  clipserve::video::UriPolicy video_uri_policy;
  clipserve::server::StreamOptions streams;
  clipserve::server::ServerOptions::ConnectionOptions connection;
};

// "::1" -> "[::1]", for host:port strings.
std::string BracketIfIpv6(const std::string& host) {
  return host.find(':') != std::string::npos && host.front() != '['
             ? absl::StrCat("[", host, "]")
             : host;
}

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "clipserve: %s\n\n%s", message.c_str(), kUsage);
  std::exit(64);
}

template <typename T>
T ParseNumber(const std::string& flag, const std::string& value, T lo, T hi) {
  T out{};
  if (!absl::SimpleAtoi(value, &out) || out < lo || out > hi) {
    UsageError(absl::StrCat(flag, " must be a number in ", lo, "..", hi,
                            ", got \"", value, "\""));
  }
  return out;
}

// Seconds, fractions allowed, in [lo, hi]; a usage error otherwise.
double ParseSeconds(const std::string& flag, const std::string& value, double lo,
                    double hi) {
  double out = 0;
  if (!absl::SimpleAtod(value, &out) || !(out >= lo && out <= hi)) {
    UsageError(absl::StrCat(flag, " must be seconds in ", lo, "..", hi, ", got \"",
                            value, "\""));
  }
  return out;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--grpc-use-ssl") {  // a switch; --grpc-use-ssl=false also works
      f.use_ssl = true;
      continue;
    }
    if (arg == "--repository-api-open") {  // a switch
      f.repository_api_open = true;
      continue;
    }
    std::string value;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg.rfind("--", 0) == 0) {
      if (i + 1 >= argc) UsageError(absl::StrCat(arg, " needs a value"));
      value = argv[++i];
    }
    if (arg == "--model-repository") {
      f.model_repository = value;
    } else if (arg == "--model-control-mode") {
      absl::StatusOr<clipserve::server::ModelControlMode> mode =
          clipserve::server::ParseModelControlMode(value);
      if (!mode.ok()) UsageError(std::string(mode.status().message()));
      f.repository.mode = *mode;
    } else if (arg == "--repository-poll-seconds") {
      double seconds = 0;
      if (!absl::SimpleAtod(value, &seconds) || seconds < 0.05 || seconds > 86400) {
        UsageError(absl::StrCat("--repository-poll-seconds must be seconds in "
                                "0.05..86400, got \"", value, "\""));
      }
      f.repository.poll_interval =
          std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    } else if (arg == "--load-model") {
      f.repository.startup_models.push_back(value);
    } else if (arg == "--admin-token-file") {
      f.admin_token_file = value;
    } else if (arg == "--grpc-port") {
      f.grpc_port = ParseNumber<int>(arg, value, 0, 65535);
    } else if (arg == "--grpc-address") {
      f.grpc_address = value;
    } else if (arg == "--metrics-port") {
      f.metrics_port = ParseNumber<int>(arg, value, 0, 65535);
    } else if (arg == "--grpc-use-ssl") {
      if (value != "true" && value != "false") {
        UsageError("--grpc-use-ssl must be true or false");
      }
      f.use_ssl = value == "true";
    } else if (arg == "--grpc-server-cert") {
      f.server_cert = value;
    } else if (arg == "--grpc-server-key") {
      f.server_key = value;
    } else if (arg == "--grpc-ssl-client-ca") {
      f.client_ca = value;
    } else if (arg == "--grpc-max-connection-age") {
      // Whole seconds, at most ~23 days (gRPC takes int milliseconds).
      f.connection.max_age =
          std::chrono::seconds(ParseNumber<int>(arg, value, 0, 2000000));
    } else if (arg == "--grpc-max-connection-age-grace") {
      f.connection.max_age_grace =
          std::chrono::seconds(ParseNumber<int>(arg, value, 0, 2000000));
    } else if (arg == "--grpc-keepalive-time") {
      f.connection.keepalive_time =
          std::chrono::seconds(ParseNumber<int>(arg, value, 0, 2000000));
    } else if (arg == "--grpc-keepalive-timeout") {
      f.connection.keepalive_timeout =
          std::chrono::seconds(ParseNumber<int>(arg, value, 1, 2000000));
    } else if (arg == "--grpc-keepalive-min-ping-interval") {
      f.connection.keepalive_min_ping_interval =
          std::chrono::seconds(ParseNumber<int>(arg, value, 0, 2000000));
    } else if (arg == "--grpc-max-concurrent-streams") {
      f.connection.max_concurrent_streams = ParseNumber<int>(arg, value, 0, 1000000);
    } else if (arg == "--grpc-keepalive-permit-without-calls") {
      if (value != "true" && value != "false") {
        UsageError("--grpc-keepalive-permit-without-calls must be true or false");
      }
      f.connection.keepalive_permit_without_calls = value == "true";
    } else if (arg == "--allow-metrics") {
      if (value != "true" && value != "false") {
        UsageError("--allow-metrics must be true or false");
      }
      f.allow_metrics = value == "true";
    } else if (arg == "--allow-tf32") {
      if (value != "true" && value != "false") {
        UsageError("--allow-tf32 must be true or false");
      }
      f.allow_tf32 = value == "true";
    } else if (arg == "--latency-buckets") {
      f.latency_buckets.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        double b = 0;
        if (!absl::SimpleAtod(part, &b) || b <= 0 ||
            (!f.latency_buckets.empty() && b <= f.latency_buckets.back())) {
          UsageError(absl::StrCat("--latency-buckets must be increasing positive "
                                  "seconds, got \"", value, "\""));
        }
        f.latency_buckets.push_back(b);
      }
    } else if (arg == "--gpu-metrics-interval-ms") {
      f.gpu_metrics_interval_ms = ParseNumber<int>(arg, value, 10, 3600000);
    } else if (arg == "--nvml-library") {
      f.nvml_library = value;
    } else if (arg == "--max-request-bytes") {
      f.max_request_bytes =
          ParseNumber<size_t>(arg, value, 1024, size_t{2} << 30);
    } else if (arg == "--decode-threads") {
      f.decode_threads = ParseNumber<int>(arg, value, 1, 1024);
    } else if (arg == "--decode-device") {
      if (value != "cpu" && value != "cuda") {
        UsageError("--decode-device must be cpu or cuda");
      }
      f.decode_options.device = value;
    } else if (arg == "--video-uri-timeout-seconds") {
      f.video_uri_policy.read_timeout =
          std::chrono::seconds(ParseNumber<int>(arg, value, 1, 86400));
    } else if (arg == "--video-uri-prefix") {
      if (absl::Status s = clipserve::video::ValidateUriPrefix(value); !s.ok()) {
        UsageError(std::string(s.message()));
      }
      f.video_uri_policy.allowed_prefixes.push_back(value);
    } else if (arg == "--decode-queue-size") {
      f.decode_queue_size = ParseNumber<size_t>(arg, value, 1, 1 << 20);
    } else if (arg == "--video-max-bytes") {
      f.video_limits.max_bytes =
          ParseNumber<size_t>(arg, value, 1024, size_t{2} << 30);
    } else if (arg == "--video-max-side") {
      const int64_t side = ParseNumber<int64_t>(arg, value, 16, 65536);
      f.video_limits.max_width = side;
      f.video_limits.max_height = side;
    } else if (arg == "--video-max-frames") {
      f.video_limits.max_frames = ParseNumber<int64_t>(arg, value, 1, 10000000);
    } else if (arg == "--video-max-seconds") {
      f.video_limits.max_seconds = ParseNumber<int>(arg, value, 1, 86400);
    } else if (arg == "--video-decode-timeout-seconds") {
      f.video_limits.max_decode_seconds = ParseSeconds(arg, value, 1e-6, 86400);
    } else if (arg == "--max-streams") {
      f.streams.max_streams = ParseNumber<int>(arg, value, 0, 100000);
    } else if (arg == "--stream-idle-timeout-seconds") {
      f.streams.idle_timeout =
          std::chrono::milliseconds(1000 * ParseNumber<int64_t>(arg, value, 1, 86400));
    } else if (arg == "--stream-source-timeout-seconds") {
      f.streams.source_io_timeout =
          std::chrono::milliseconds(1000 * ParseNumber<int64_t>(arg, value, 1, 3600));
    } else if (arg == "--stream-source-prefix") {
      if (absl::Status s = clipserve::video::ValidateSourcePrefix(value); !s.ok()) {
        UsageError(std::string(s.message()));
      }
      f.streams.source_policy.allowed_prefixes.push_back(value);
    } else if (arg == "--model-hang-seconds") {
      double seconds = 0;
      if (!absl::SimpleAtod(value, &seconds) || !(seconds == 0 || seconds >= 0.05) ||
          seconds > 86400) {
        UsageError(absl::StrCat("--model-hang-seconds must be 0 or seconds in "
                                "0.05..86400, got \"", value, "\""));
      }
      f.model_hang_limit =
          std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    } else if (arg == "--drain-timeout-seconds") {
      f.drain_timeout_seconds = ParseNumber<int>(arg, value, 0, 86400);
    } else {
      UsageError(absl::StrCat("unknown flag ", arg));
    }
  }
  using clipserve::server::ModelControlMode;
  if (f.model_repository.empty() && f.repository.mode != ModelControlMode::kNone) {
    UsageError("--model-control-mode poll or explicit needs --model-repository");
  }
  if (!f.repository.startup_models.empty() &&
      f.repository.mode != ModelControlMode::kExplicit) {
    UsageError("--load-model needs --model-control-mode explicit");
  }
  if (f.repository_api_open && !f.admin_token_file.empty()) {
    UsageError("--repository-api-open and --admin-token-file exclude each other");
  }
  f.repository.root = f.model_repository;
  if (f.use_ssl && (f.server_cert.empty() || f.server_key.empty())) {
    UsageError("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key");
  }
  if (!f.use_ssl && (!f.server_cert.empty() || !f.server_key.empty() ||
                     !f.client_ca.empty())) {
    UsageError("TLS files given without --grpc-use-ssl");
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);

  // Signals are taken by sigwait() below; block them before any thread starts
  // so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  LogInfo(absl::StrCat("clipserve starting: model repository ",
                       flags.model_repository.empty() ? "(built-in)"
                                                      : flags.model_repository,
                       ", gRPC ", flags.grpc_address, ":", flags.grpc_port));
  clipserve::runtime::KeepTensorMemoryInProcess();
  clipserve::runtime::SetCudaTf32(flags.allow_tf32);
  auto metrics =
      std::make_shared<clipserve::server::Metrics>(flags.latency_buckets);
  auto models = flags.model_repository.empty()
                    ? clipserve::server::ModelRepository::Builtin(metrics.get())
                    : clipserve::server::ModelRepository::Open(
                          flags.repository, metrics.get());
  if (!models.ok()) {
    LogError(absl::StrCat("cannot load models: ", models.status().message()));
    return 1;
  }

  clipserve::server::ServerOptions options;
  if (flags.repository_api_open) {
    options.admin = clipserve::server::AdminAuth::Open();
    LogWarning("--repository-api-open: anyone who reaches the gRPC port may "
               "load and unload models");
  } else if (!flags.admin_token_file.empty()) {
    absl::StatusOr<clipserve::server::AdminAuth> admin =
        clipserve::server::AdminAuth::FromTokenFile(flags.admin_token_file);
    if (!admin.ok()) {
      LogError(std::string(admin.status().message()));
      return 1;
    }
    options.admin = *std::move(admin);
  }
  options.grpc_address =
      absl::StrCat(BracketIfIpv6(flags.grpc_address), ":", flags.grpc_port);
  options.max_request_bytes = flags.max_request_bytes;
  options.video_limits = flags.video_limits;
  options.decode_options = flags.decode_options;
  options.video_uri_policy = flags.video_uri_policy;
  options.streams = flags.streams;
  options.connection = flags.connection;
  options.model_hang_limit = flags.model_hang_limit;
  options.streams.limits = flags.video_limits;
  if (flags.use_ssl) {
    options.tls_cert_file = flags.server_cert;
    options.tls_key_file = flags.server_key;
    options.tls_client_ca_file = flags.client_ca;
  }
  options.decode_threads = flags.decode_threads;
  options.decode_queue_size = flags.decode_queue_size;
  options.metrics_address =
      flags.allow_metrics
          ? absl::StrCat(BracketIfIpv6(flags.grpc_address), ":", flags.metrics_port)
          : "";
  // Sampled for as long as the process runs; nullptr without NVML.
  std::unique_ptr<clipserve::server::GpuMetrics> gpus;
  if (flags.allow_metrics) {
    gpus = clipserve::server::GpuMetrics::Start(
        metrics->registry(),
        std::chrono::milliseconds(flags.gpu_metrics_interval_ms),
        flags.nvml_library);
  }
  auto server =
      clipserve::server::Server::Start(*std::move(models), metrics, options);
  if (!server.ok()) {
    LogError(std::string(server.status().message()));
    return 1;
  }
  if ((*server)->metrics_port() != 0) {
    LogInfo(absl::StrCat("serving metrics on port ", (*server)->metrics_port(),
                         " (/metrics)"));
  } else {
    LogInfo("metrics off (--allow-metrics false): no /metrics endpoint");
  }
  // Tests and scripts read the port from this line.
  LogInfo(absl::StrCat("serving gRPC on port ", (*server)->port(), " (",
                       !flags.use_ssl            ? "plaintext"
                       : flags.client_ca.empty() ? "TLS"
                                                 : "mutual TLS",
                       ", max request ", (*server)->max_request_bytes(),
                       " bytes)"));

  int sig = 0;
  sigwait(&signals, &sig);
  LogInfo(absl::StrCat("received ", strsignal(sig), ": draining"));
  // A second signal while draining ends the process at once.
  std::thread([signals]() mutable {
    int again = 0;
    sigwait(&signals, &again);
    LogError(absl::StrCat("received ", strsignal(again),
                          " again: exiting without draining"));
    std::_Exit(1);
  }).detach();
  (*server)->Shutdown(std::chrono::seconds(flags.drain_timeout_seconds));
  server->reset();
  LogInfo("clipserve stopped");
  return 0;
}
