// clipserve-client: classifies one clip with a clipserve server.
#include <cstdio>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "client/flags.h"
#include "client/npy.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace {

constexpr const char* kUsage = R"(Usage: clipserve-client [flags] [classify] [CLIP.npy]
       clipserve-client [flags] health [--service NAME]

Sends one clip to a clipserve server and prints the top-k classes and where
the time went. Without CLIP.npy it sends a random clip of --frames x --height
x --width. A .npy clip is uint8 [T, H, W, 3] (RGB frames) or float32
[3, T, H, W] (normalised to [-1, 1]).

Flags:
  --server HOST:PORT   Server address (default localhost:8001).
  --model NAME         Model (default: the server's default model).
  --version V          Model version (default: the loaded one).
  --dtype uint8|fp32   Random clip type (default uint8).
  --frames N --height N --width N
                       Random clip shape (default 16 x 112 x 112).
  --seed N             Random clip seed (default 1).
  --top-k K            Classes to print (default 5).
  --timeout-ms MS      Call deadline (default: none).
  --logits             Also print all logits.
  --service NAME       With health: the service or model to ask about
                       (default "": the server as a whole).

"health" asks grpc.health.v1 and prints SERVING or NOT_SERVING; it exits 0
only when serving.

Exit status: 0 on success, the gRPC status code on a failed call (e.g. 3 for
INVALID_ARGUMENT, 5 for NOT_FOUND), 64 on a usage error.
)";

int PrintError(const grpc::Status& status) {
  std::fprintf(stderr, "error: %s (code %d): %s\n",
               clipserve::client::StatusCodeName(status.error_code()),
               static_cast<int>(status.error_code()),
               status.error_message().c_str());
  return static_cast<int>(status.error_code());
}

int CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return PrintError(status);
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                          response.status())
                          .c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using clipserve::client::FlagReader;
  FlagReader flags(argc, argv, kUsage,
                   {"server", "model", "version", "dtype", "frames", "height",
                    "width", "seed", "top-k", "timeout-ms", "service"},
                   {"logits"});
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(
      flags.String("server", "localhost:8001"),
      grpc::InsecureChannelCredentials(), args);

  std::vector<std::string> files = flags.positional();
  if (!files.empty() && files.front() == "health") {
    if (files.size() > 1) flags.Fail("health takes no file");
    return CheckHealth(channel, flags.String("service", ""));
  }
  if (!files.empty() && files.front() == "classify") files.erase(files.begin());
  if (files.size() > 1) flags.Fail("at most one clip file");

  clipserve::v1::ClassifyRequest request;
  request.set_model_name(flags.String("model", ""));
  request.set_model_version(flags.String("version", ""));
  request.set_top_k(static_cast<int>(flags.Int("top-k", 5, 1, 1 << 20)));
  request.set_return_logits(flags.Has("logits"));
  if (files.empty()) {
    const std::string dtype = flags.String("dtype", "uint8");
    if (dtype != "uint8" && dtype != "fp32") {
      flags.Fail("--dtype must be uint8 or fp32");
    }
    *request.mutable_clip() = clipserve::client::RandomClip(
        dtype == "fp32" ? clipserve::v1::FP32 : clipserve::v1::UINT8,
        flags.Int("frames", 16, 1, 4096), flags.Int("height", 112, 1, 8192),
        flags.Int("width", 112, 1, 8192),
        static_cast<uint64_t>(flags.Int("seed", 1, 0, INT64_MAX)));
  } else {
    auto array = clipserve::client::ReadNpy(files.front());
    if (!array.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(array.status().message()).c_str());
      return 64;
    }
    auto clip = clipserve::client::ClipFromNpy(*array);
    if (!clip.ok()) {
      std::fprintf(stderr, "error: %s: %s\n", files.front().c_str(),
                   std::string(clip.status().message()).c_str());
      return 64;
    }
    *request.mutable_clip() = *std::move(clip);
  }

  auto stub = clipserve::v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  if (flags.Has("timeout-ms")) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(
                             flags.Int("timeout-ms", 0, 1, INT32_MAX)));
  }
  clipserve::v1::ClassifyResponse response;
  const grpc::Status status = stub->Classify(&context, request, &response);
  if (!status.ok()) return PrintError(status);

  std::printf("model %s version %s\n", response.model_name().c_str(),
              response.model_version().c_str());
  int rank = 1;
  for (const auto& c : response.classes()) {
    std::printf("%3d. class %-5d %-40s p=%.4f\n", rank++, c.class_index(),
                c.label().empty() ? "-" : c.label().c_str(), c.probability());
  }
  const auto& t = response.timings();
  std::printf("timings: queue %.3f ms, compute %.3f ms, batch size %d\n",
              t.queue_us() / 1000.0, t.compute_us() / 1000.0, t.batch_size());
  if (request.return_logits()) {
    std::printf("logits:");
    for (float v : response.logits()) std::printf(" %.6g", v);
    std::printf("\n");
  }
  return 0;
}
