// Checking a request's clip against the model before it is queued.
#ifndef CLIPSERVE_SERVER_CLIP_VALIDATION_H_
#define CLIPSERVE_SERVER_CLIP_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "batching/task.h"
#include "clipserve/v1/video_classifier.pb.h"
#include "runtime/backend.h"
#include "video/decode.h"

namespace clipserve::server {

// Largest T, H or W a clip may have (keeps BatchKey exact).
inline constexpr int64_t kMaxClipDim = (1 << 20) - 1;

// Whether clips of `shape` (channels first) fit a model of `spec`: same
// channels, and T, H, W equal wherever the model fixes them.
bool ClipFitsModel(const runtime::ClipShape& shape, const runtime::ModelSpec& spec);

// Why a clip of `shape` does not fit (call when ClipFitsModel is false, so
// that the message costs nothing on good requests): INVALID_ARGUMENT naming
// `what` (the tensor), the model, and `layout_note`.
absl::Status ClipMisfitError(const runtime::ClipShape& shape,
                                const runtime::ModelSpec& spec,
                                absl::string_view model_name,
                                absl::string_view what,
                                absl::string_view layout_note);

// Views `tensor` as a clip for a model of `spec`, without copying: the view
// points into tensor.data(). INVALID_ARGUMENT, with a message that names the
// problem and the model, when dtype, rank, shape or byte count do not fit.
absl::StatusOr<runtime::ClipView> ValidateClip(const v1::Tensor& tensor,
                                               const runtime::ModelSpec& spec,
                                               const std::string& model_name);

// Clips with equal keys have the same dtype and shape and may share a batch.
batching::BatchKey ClipBatchKey(const runtime::ClipView& clip);

// Crop side of an encoded video's frames where the model leaves it free.
inline constexpr int64_t kDefaultCropSide = 224;

// How to sample and crop an encoded video (`s`, the request's sampling) for
// a model of `spec`: fills `sampling` and `geometry`, or INVALID_ARGUMENT
// naming the field and the model (not RGB, negative values, a frame count
// the model does not take or none for a model of any length).
absl::Status PlanVideo(const v1::VideoSampling& s, const runtime::ModelSpec& spec,
                       const std::string& model_name, video::Sampling* sampling,
                       video::Geometry* geometry);

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_CLIP_VALIDATION_H_
