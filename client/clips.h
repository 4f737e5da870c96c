// Building request clips for the command-line tools.
#ifndef CLIPSERVE_CLIENT_CLIPS_H_
#define CLIPSERVE_CLIENT_CLIPS_H_

#include <cstdint>

#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "client/npy.h"
#include "clipserve/v1/video_classifier.pb.h"

namespace clipserve::client {

// A clip of uniformly random values from `seed`: UINT8 frames [T, H, W, 3] in
// 0..255, or FP32 [3, T, H, W] in [-1, 1].
v1::Tensor RandomClip(v1::DataType dtype, int64_t frames, int64_t height,
                      int64_t width, uint64_t seed);

// The clip a .npy array holds: uint8 [T, H, W, 3] or float32 [3, T, H, W].
absl::StatusOr<v1::Tensor> ClipFromNpy(const NpyArray& array);

// The bytes of the file at `path` (a video, a PEM file, ...), or
// INVALID_ARGUMENT "cannot read PATH".
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Asks the server what `model` (empty: the default) takes; 10 s deadline.
grpc::Status FetchModelMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& model,
                                v1::ModelMetadataResponse* metadata);

// The model's input dimension `index` of [C, T, H, W], or `fallback` when it
// takes any size (or the metadata is empty).
int64_t ModelDim(const v1::ModelMetadataResponse& metadata, int index,
                 int64_t fallback);

// "INVALID_ARGUMENT" etc. for a gRPC status code number.
std::string StatusCodeName(int code);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_CLIPS_H_
