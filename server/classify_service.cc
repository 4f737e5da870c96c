#include "server/classify_service.h"

#include <chrono>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/call_accounting.h"
#include "server/clip_validation.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/postprocess.h"
#include "video/decode.h"

namespace clipserve::server {
namespace {

constexpr int kDefaultTopK = 5;

int64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now() - start)
      .count();
}

// One Classify call: its own reactor, and the task the model batches.
// Deletes itself when gRPC is done with it.
class ClassifyCall final : public grpc::ServerUnaryReactor, public InferenceTask {
 public:
  ClassifyCall(const v1::ClassifyRequest* request, v1::ClassifyResponse* response,
               ModelMetrics* unknown_model)
      : request_(request), response_(response), accounting_(unknown_model) {}

  // Completes the call at once (before or instead of queueing).
  void FinishNow(const absl::Status& status) {
    Done(status.code());
    Finish(ToGrpcStatus(status));
  }

  void Fail(const absl::Status& status) override { FinishNow(status); }

  void Complete(absl::Span<const float> logits, int64_t num_classes,
                const ExecutionStats& stats) override {
    const std::vector<std::string>& labels = model_->labels();
    const int k = request_->top_k() > 0 ? request_->top_k() : kDefaultTopK;
    // Per-thread scratch: no allocation per request once warm.
    thread_local std::vector<ScoredClass> top;
    TopKSoftmax(logits.subspan(0, num_classes), k, &top);
    response_->set_model_name(model_->name());
    response_->set_model_version(model_->version());
    auto* classes = response_->mutable_classes();
    classes->Reserve(static_cast<int>(top.size()));
    for (const ScoredClass& c : top) {
      v1::Classification* out = classes->Add();
      out->set_class_index(c.index);
      out->set_probability(c.probability);
      if (!labels.empty()) out->set_label(labels[c.index]);
    }
    if (request_->return_logits()) {
      response_->mutable_logits()->Add(logits.begin(),
                                       logits.begin() + num_classes);
    }
    v1::Timings* t = response_->mutable_timings();
    t->set_queue_us(stats.queue_us);
    t->set_compute_us(stats.compute_us);
    t->set_batch_size(stats.batch_size);
    t->set_decode_us(decode_us_);
    accounting_.Executed(stats);
    Done(absl::StatusCode::kOk);
    Finish(grpc::Status::OK);
  }

  // From now on the call counts under `model`.
  void set_model(std::shared_ptr<ServedModel> model) {
    model_ = std::move(model);
    accounting_.BindModel(model_.get());
  }

  // Decodes the request's video into a clip and queues it; runs on a decode
  // thread. Completes the call on any error.
  void DecodeAndEnqueue(const video::Sampling& sampling,
                        const video::Geometry& geometry,
                        const video::Limits& limits,
                        const video::DecodeOptions& options,
                        const video::UriPolicy& uri_policy, Metrics* metrics) {
    if (absl::Status ended = CallEnded("waited for a decoder"); !ended.ok()) {
      Fail(ended);
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    absl::string_view bytes = request_->video().data();
    absl::StatusOr<std::string> read;
    if (!request_->video().uri().empty()) {
      read = video::ReadVideoUri(request_->video().uri(), uri_policy, limits,
                                 deadline());
      if (!read.ok()) {
        Fail(read.status());
        return;
      }
      bytes = *read;
    }
    // Decoding stops within a packet of the call's end (a call cancelled or
    // expired as the decoder took it up: the check above saw it too early).
    video::DecodeOptions interruptible = options;
    interruptible.interrupt = [this] { return CallEnded("was decoded"); };
    absl::StatusOr<video::Clip> clip =
        video::DecodeClip(bytes, sampling, geometry, limits, interruptible);
    decode_us_ = MicrosSince(start);
    // A decode stopped by the call's end (DecodeClip's own errors are never
    // CANCELLED or DEADLINE_EXCEEDED) says nothing of what decoding costs.
    const absl::StatusCode code = clip.status().code();
    if (code != absl::StatusCode::kCancelled &&
        code != absl::StatusCode::kDeadlineExceeded) {
      accounting_.metrics().decode_duration().Observe(decode_us_ * 1e-6);
    }
    if (!clip.ok()) {
      Fail(clip.status());
      return;
    }
    if (!clip->decode_fallback.empty()) {
      metrics->decode_gpu_fallbacks().Increment();
      static std::once_flag logged;
      std::call_once(logged, [&clip] {
        LogWarning(absl::StrCat("--decode-device cuda: decoding on the CPU (",
                                clip->decode_fallback,
                                "); clipserve_decode_gpu_fallbacks_total "
                                "counts each video"));
      });
    }
    v1::SourceVideo* source = response_->mutable_video();
    source->set_width(static_cast<int32_t>(clip->source_width));
    source->set_height(static_cast<int32_t>(clip->source_height));
    source->set_fps(clip->source_fps);
    source->set_frames(clip->source_frames);
    source->set_declared_frames(clip->declared_frames);
    source->mutable_frame_indices()->Add(clip->frame_indices.begin(),
                                         clip->frame_indices.end());
    frames_ = std::move(clip->frames);
    runtime::ClipView view;
    view.dtype = runtime::ClipDType::kUInt8;
    view.shape = {model_->spec().input.channels, clip->frames_count,
                  clip->height, clip->width};
    view.data = frames_.data();
    set_clip(view, ClipBatchKey(view));
    if (absl::Status s = model_->Enqueue(this); !s.ok()) Fail(s);
  }

  void OnCancel() override { OnCallCancelled(); }
  void OnDone() override { delete this; }

 private:
  // CANCELLED or DEADLINE_EXCEEDED once the call was cancelled or its
  // deadline passed ("... while the video <doing>"), else OK.
  absl::Status CallEnded(absl::string_view doing) const {
    if (IsCancelled()) {
      return absl::CancelledError(
          absl::StrCat("request cancelled while its video ", doing));
    }
    if (std::chrono::steady_clock::now() >= deadline()) {
      return absl::DeadlineExceededError(
          absl::StrCat("deadline exceeded while the video ", doing));
    }
    return absl::OkStatus();
  }

  // Records the answer in the metrics (once: every path finishes once).
  void Done(absl::StatusCode code) { accounting_.Answered(code); }

  const v1::ClassifyRequest* const request_;
  v1::ClassifyResponse* const response_;
  // Held until the call is gone: a replaced version answers what it took.
  std::shared_ptr<ServedModel> model_;
  CallAccounting accounting_;
  // A decoded video's frames, which clip() views.
  std::string frames_;
  int64_t decode_us_ = 0;
};


}  // namespace

grpc::ServerUnaryReactor* ClassifyService::Classify(
    grpc::CallbackServerContext* context, const v1::ClassifyRequest* request,
    v1::ClassifyResponse* response) {
  auto* call = new ClassifyCall(request, response, metrics_->unknown_model());
  absl::StatusOr<std::shared_ptr<ServedModel>> model =
      models_->Find(request->model_name(), request->model_version());
  if (!model.ok()) {
    call->FinishNow(model.status());
    return call;
  }
  call->set_model(*model);
  if (models_->draining()) {
    call->FinishNow(absl::UnavailableError("server is shutting down"));
    return call;
  }
  call->set_deadline((*model)->Deadline(SteadyDeadline(context->deadline())));
  absl::StatusOr<uint32_t> level = (*model)->PriorityLevel(request->priority());
  if (!level.ok()) {
    call->FinishNow(level.status());
    return call;
  }
  call->set_priority(*level);

  switch (request->input_case()) {
    case v1::ClassifyRequest::kClip: {
      absl::StatusOr<runtime::ClipView> clip =
          ValidateClip(request->clip(), (*model)->spec(), (*model)->name());
      if (!clip.ok()) {
        call->FinishNow(clip.status());
        return call;
      }
      call->set_clip(*clip, ClipBatchKey(*clip));
      if (absl::Status s = (*model)->Enqueue(call); !s.ok()) call->FinishNow(s);
      return call;
    }
    case v1::ClassifyRequest::kVideo: {
      video::Sampling sampling;
      video::Geometry geometry;
      absl::Status s = PlanVideo(request->video().sampling(), (*model)->spec(),
                                 (*model)->name(), &sampling, &geometry);
      const std::string& uri = request->video().uri();
      if (s.ok() && !uri.empty()) {
        s = request->video().data().empty()
                ? video::CheckUri(uri, uri_policy_)
                : absl::InvalidArgumentError(
                      "video: set data or uri, not both");
      }
      if (s.ok()) {
        s = decoders_->Submit([call, sampling, geometry, this] {
          call->DecodeAndEnqueue(sampling, geometry, video_limits_,
                                 decode_options_, uri_policy_, metrics_);
        });
      }
      if (!s.ok()) call->FinishNow(s);
      return call;
    }
    case v1::ClassifyRequest::INPUT_NOT_SET:
      break;
  }
  call->FinishNow(absl::InvalidArgumentError("request has no clip or video"));
  return call;
}

grpc::ServerUnaryReactor* ClassifyService::GetModelMetadata(
    grpc::CallbackServerContext* context, const v1::ModelMetadataRequest* request,
    v1::ModelMetadataResponse* response) {
  absl::StatusOr<std::shared_ptr<ServedModel>> model = models_->Find(request->model_name(), "");
  if (!model.ok()) return FinishUnary(context, model.status());
  const ServedModel& m = **model;
  response->set_model_name(m.name());
  response->set_model_version(m.version());
  response->set_backend(m.config().backend());
  const runtime::ClipShape& in = m.spec().input;
  for (int64_t d : {in.channels, in.frames, in.height, in.width}) {
    response->add_input_shape(d);
  }
  response->set_num_classes(m.spec().num_classes);
  response->set_max_batch_size(m.config().max_batch_size());
  response->set_has_labels(!m.labels().empty());
  response->set_untrained(m.untrained());
  for (const std::string& d : m.devices()) response->add_devices(d);
  return FinishUnary(context, absl::OkStatus());
}

}  // namespace clipserve::server
