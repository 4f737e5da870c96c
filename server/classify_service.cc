#include "server/classify_service.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/clip_validation.h"
#include "server/grpc_status.h"
#include "server/postprocess.h"

namespace clipserve::server {
namespace {

constexpr int kDefaultTopK = 5;

// The steady-clock time at which a call with gRPC deadline `deadline` ends.
batching::TimePoint SteadyDeadline(std::chrono::system_clock::time_point deadline) {
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return batching::TimePoint::max();
  }
  const auto left = deadline - std::chrono::system_clock::now();
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<batching::Duration>(left);
}

// One Classify call: its own reactor, and the task the model batches.
// Deletes itself when gRPC is done with it.
class ClassifyCall final : public grpc::ServerUnaryReactor, public InferenceTask {
 public:
  ClassifyCall(const v1::ClassifyRequest* request, v1::ClassifyResponse* response)
      : request_(request), response_(response) {}

  // Completes the call at once (before or instead of queueing).
  void FinishNow(const absl::Status& status) { Finish(ToGrpcStatus(status)); }

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
    Finish(grpc::Status::OK);
  }

  void set_model(const ServedModel* model) { model_ = model; }

  void OnCancel() override { MarkCancelled(); }
  void OnDone() override { delete this; }

 private:
  const v1::ClassifyRequest* const request_;
  v1::ClassifyResponse* const response_;
  const ServedModel* model_ = nullptr;
};

}  // namespace

grpc::ServerUnaryReactor* ClassifyService::Classify(
    grpc::CallbackServerContext* context, const v1::ClassifyRequest* request,
    v1::ClassifyResponse* response) {
  auto* call = new ClassifyCall(request, response);
  if (draining_.load(std::memory_order_acquire)) {
    call->FinishNow(absl::UnavailableError("server is shutting down"));
    return call;
  }
  absl::StatusOr<ServedModel*> model =
      models_->Find(request->model_name(), request->model_version());
  if (!model.ok()) {
    call->FinishNow(model.status());
    return call;
  }
  call->set_model(*model);
  if (!request->has_clip()) {
    call->FinishNow(absl::InvalidArgumentError("request has no clip"));
    return call;
  }
  absl::StatusOr<runtime::ClipView> clip =
      ValidateClip(request->clip(), (*model)->spec(), (*model)->name());
  if (!clip.ok()) {
    call->FinishNow(clip.status());
    return call;
  }
  call->set_clip(*clip, ClipBatchKey(*clip));

  batching::TimePoint deadline = SteadyDeadline(context->deadline());
  if (deadline == batching::TimePoint::max() &&
      (*model)->default_timeout() > batching::Duration::zero()) {
    deadline = std::chrono::steady_clock::now() + (*model)->default_timeout();
  }
  call->set_deadline(deadline);
  if (absl::Status s = (*model)->Enqueue(call); !s.ok()) {
    call->FinishNow(s);
  }
  return call;
}

}  // namespace clipserve::server
