// Fuzz entry point for the clipserve API: the bytes are a serialised
// ClassifyRequest, checked against a model as Classify does before it
// queues a clip or hands a video to a decoder: a clip tensor is validated
// into a view (which must lie exactly on the request's bytes), a video's
// sampling planned. Anything else is INVALID_ARGUMENT. Both a fixed-shape
// model and one of any size.
#include <cstdint>
#include <cstdlib>

#include "server/clip_validation.h"
#include "tests/fuzz/request_fuzz.h"

namespace {

using namespace clipserve;

void Check(const v1::ClassifyRequest& request, const runtime::ModelSpec& spec) {
  if (request.has_clip()) {
    absl::StatusOr<runtime::ClipView> clip =
        server::ValidateClip(request.clip(), spec, "fuzz");
    if (!clip.ok()) {
      if (clip.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
      return;
    }
    fuzz::CheckClipView(*clip, spec, request.clip().data().data(),
                        request.clip().data().size());
    (void)server::ClipBatchKey(*clip);
  } else if (request.has_video()) {
    video::Sampling sampling;
    video::Geometry geometry;
    absl::Status status = server::PlanVideo(request.video().sampling(), spec,
                                            "fuzz", &sampling, &geometry);
    if (!status.ok()) {
      if (status.code() != absl::StatusCode::kInvalidArgument) std::abort();
      return;
    }
    if (sampling.num_frames <= 0 || sampling.stride <= 0 ||
        geometry.crop_height <= 0 || geometry.crop_width <= 0 ||
        (spec.input.frames > 0 && sampling.num_frames != spec.input.frames)) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::ClassifyRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  Check(request, fuzz::FixedSpec());
  Check(request, fuzz::FreeSpec());
  return 0;
}
