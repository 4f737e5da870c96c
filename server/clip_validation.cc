#include "server/clip_validation.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clipserve::server {
namespace {

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

std::string SizeString(int64_t d) { return d < 0 ? "any" : absl::StrCat(d); }

}  // namespace

bool ClipFitsModel(const runtime::ClipShape& shape, const runtime::ModelSpec& spec) {
  auto fits = [](int64_t got, int64_t want) { return want < 0 || got == want; };
  return shape.channels == spec.input.channels &&
         fits(shape.frames, spec.input.frames) &&
         fits(shape.height, spec.input.height) && fits(shape.width, spec.input.width);
}

absl::Status ClipMisfitError(const runtime::ClipShape& shape,
                             const runtime::ModelSpec& spec,
                             absl::string_view model_name, absl::string_view what,
                             absl::string_view layout_note) {
  const runtime::ClipShape& want = spec.input;
  if (shape.channels != want.channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", shape.channels, " channels; model '", model_name,
        "' takes ", want.channels, " (", layout_note, ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what, " is ", shape.frames, " x ", shape.height, " x ", shape.width,
      " (T x H x W); model '", model_name, "' takes ", SizeString(want.frames),
      " x ", SizeString(want.height), " x ", SizeString(want.width)));
}

absl::StatusOr<runtime::ClipView> ValidateClip(const v1::Tensor& tensor,
                                               const runtime::ModelSpec& spec,
                                               const std::string& model_name) {
  runtime::ClipView clip;
  const bool uint8 = tensor.dtype() == v1::UINT8;
  if (uint8) {
    clip.dtype = runtime::ClipDType::kUInt8;
  } else if (tensor.dtype() == v1::FP32) {
    clip.dtype = runtime::ClipDType::kFloat32;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("clip.dtype must be UINT8 or FP32, got ",
                     v1::DataType_Name(tensor.dtype())));
  }
  const auto& shape = tensor.shape();
  const char* layout = uint8 ? "[T, H, W, 3]" : "[3, T, H, W]";
  if (shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clip.shape must be ", layout, " for ", v1::DataType_Name(tensor.dtype()),
        ", got ", ShapeString(shape)));
  }
  for (int64_t d : shape) {
    if (d <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clip is empty or negative: shape ", ShapeString(shape)));
    }
    if (d > kMaxClipDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clip.shape ", ShapeString(shape), " has a dimension over ",
          kMaxClipDim));
    }
  }
  if (uint8) {
    clip.shape = {shape[3], shape[0], shape[1], shape[2]};
  } else {
    clip.shape = {shape[0], shape[1], shape[2], shape[3]};
  }
  if (!ClipFitsModel(clip.shape, spec)) {
    return ClipMisfitError(
        clip.shape, spec, model_name, "clip",
        absl::StrCat(v1::DataType_Name(tensor.dtype()), " layout is ", layout));
  }
  // Four dimensions below 2^20 and a 4-byte element fit in 128 bits.
  const unsigned __int128 want_bytes =
      static_cast<unsigned __int128>(shape[0]) * shape[1] * shape[2] *
      shape[3] * runtime::ElementSize(clip.dtype);
  if (tensor.data().size() != want_bytes) {
    const bool huge = want_bytes > (static_cast<unsigned __int128>(1) << 62);
    return absl::InvalidArgumentError(absl::StrCat(
        "clip.data has ", tensor.data().size(), " bytes; shape ",
        ShapeString(shape), " of ", v1::DataType_Name(tensor.dtype()), " needs ",
        huge ? std::string("over 2^62")
             : absl::StrCat(static_cast<uint64_t>(want_bytes))));
  }
  clip.data = tensor.data().data();
  return clip;
}

batching::BatchKey ClipBatchKey(const runtime::ClipView& clip) {
  // dtype (1 bit) | T (20 bits) | H (20 bits) | W (20 bits); channels are
  // fixed per model.
  return (static_cast<uint64_t>(clip.dtype == runtime::ClipDType::kFloat32)
          << 60) |
         (static_cast<uint64_t>(clip.shape.frames) << 40) |
         (static_cast<uint64_t>(clip.shape.height) << 20) |
         static_cast<uint64_t>(clip.shape.width);
}

absl::Status PlanVideo(const v1::VideoSampling& s, const runtime::ModelSpec& spec,
                       const std::string& model_name, video::Sampling* sampling,
                       video::Geometry* geometry) {
  if (spec.input.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", model_name, "' takes ", spec.input.channels,
        "-channel clips; encoded video gives RGB frames"));
  }
  if (s.num_frames() < 0 || s.stride() < 0 || s.start_seconds() < 0) {
    return absl::InvalidArgumentError(
        "video.sampling: num_frames, stride and start_seconds must not be negative");
  }
  const int64_t model_frames = spec.input.frames;
  sampling->num_frames = s.num_frames() > 0 ? s.num_frames() : model_frames;
  if (sampling->num_frames <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", model_name,
        "' takes clips of any length: set video.sampling.num_frames"));
  }
  if (model_frames > 0 && sampling->num_frames != model_frames) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video.sampling.num_frames is ", sampling->num_frames, "; model '",
        model_name, "' takes ", model_frames, " frames"));
  }
  if (sampling->num_frames > kMaxClipDim) {
    return absl::InvalidArgumentError("video.sampling.num_frames is too large");
  }
  sampling->mode = s.mode() == v1::VideoSampling::STRIDE
                       ? video::Sampling::Mode::kStride
                       : video::Sampling::Mode::kUniform;
  sampling->start_seconds = s.start_seconds();
  sampling->stride = s.stride() > 0 ? s.stride() : 1;
  sampling->approximate = s.approximate();
  geometry->crop_height =
      spec.input.height > 0 ? spec.input.height : kDefaultCropSide;
  geometry->crop_width = spec.input.width > 0 ? spec.input.width : kDefaultCropSide;
  return absl::OkStatus();
}

}  // namespace clipserve::server
