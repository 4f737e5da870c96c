#include "client/clips.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <random>

#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"

namespace clipserve::client {

v1::Tensor RandomClip(v1::DataType dtype, int64_t frames, int64_t height,
                      int64_t width, uint64_t seed) {
  v1::Tensor t;
  t.set_dtype(dtype);
  std::mt19937_64 rng(seed);
  const int64_t n = frames * height * width * 3;
  std::string* data = t.mutable_data();
  if (dtype == v1::FP32) {
    for (int64_t d : {int64_t{3}, frames, height, width}) t.add_shape(d);
    data->resize(n * sizeof(float));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int64_t i = 0; i < n; ++i) {
      const float v = u(rng);
      std::memcpy(data->data() + i * sizeof(float), &v, sizeof(float));
    }
  } else {
    for (int64_t d : {frames, height, width, int64_t{3}}) t.add_shape(d);
    data->resize(n);
    for (int64_t i = 0; i < n; i += 8) {
      const uint64_t bits = rng();
      std::memcpy(data->data() + i, &bits, std::min<int64_t>(8, n - i));
    }
  }
  return t;
}

absl::StatusOr<v1::Tensor> ClipFromNpy(const NpyArray& array) {
  v1::Tensor t;
  if (array.descr == "|u1" || array.descr == "<u1") {
    t.set_dtype(v1::UINT8);
  } else if (array.descr == "<f4") {
    t.set_dtype(v1::FP32);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "clip dtype must be uint8 (|u1) or little-endian float32 (<f4), got ",
        array.descr));
  }
  if (array.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clip must have 4 dimensions (uint8 [T, H, W, 3] or float32 "
        "[3, T, H, W]), got (",
        absl::StrJoin(array.shape, ", "), ")"));
  }
  for (int64_t d : array.shape) t.add_shape(d);
  t.set_data(array.data);
  return t;
}

grpc::Status FetchModelMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& model,
                                v1::ModelMetadataResponse* metadata) {
  auto stub = v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelMetadataRequest request;
  request.set_model_name(model);
  return stub->GetModelMetadata(&context, request, metadata);
}

int64_t ModelDim(const v1::ModelMetadataResponse& metadata, int index,
                 int64_t fallback) {
  return metadata.input_shape_size() == 4 && metadata.input_shape(index) > 0
             ? metadata.input_shape(index)
             : fallback;
}

std::string StatusCodeName(int code) {
  // gRPC and absl share the canonical codes and their names.
  return code >= 0 && code <= 16
             ? absl::StatusCodeToString(static_cast<absl::StatusCode>(code))
             : "UNKNOWN";
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace clipserve::client
