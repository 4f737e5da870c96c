#include "server/kserve_service.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/call_accounting.h"
#include "server/clip_validation.h"
#include "server/grpc_status.h"
#include "server/kserve_tensors.h"
#include "server/stream_ledger.h"

namespace clipserve::server {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

constexpr const char* kServerName = "clipserve";
// Triton's names of the protocol extensions served here.
constexpr const char* kExtensions[] = {"model_configuration", "statistics",
                                       "model_repository"};

kserve::ModelIo IoOf(const ServedModel& m) {
  kserve::ModelIo io;
  io.model_name = m.name();
  io.input_name = m.config().input(0).name();
  io.logits_name = m.config().output(0).name();
  io.spec = m.spec();
  io.max_batch_size = m.config().max_batch_size();
  return io;
}

// One ModelInfer request, unary or on a stream: checks it, queues it, and
// answers it exactly once through Answer().
class InferCall : public InferenceTask {
 public:
  explicit InferCall(ModelMetrics* unknown_model) : accounting_(unknown_model) {}

  // Checks `request` and queues the call. On error nothing was queued and the
  // caller answers with the status returned. `request` and `response` must
  // stay valid until the call is answered.
  absl::Status Start(const KServeService& service,
                     const ModelInferRequest* request,
                     ModelInferResponse* response,
                     batching::TimePoint call_deadline) {
    request_ = request;
    response_ = response;
    absl::StatusOr<std::shared_ptr<ServedModel>> model =
        service.models().Find(request->model_name(), request->model_version());
    if (!model.ok()) return model.status();
    model_ = *model;
    accounting_.BindModel(model_.get());
    if (service.models().draining()) {
      return absl::UnavailableError("server is shutting down");
    }
    io_ = IoOf(*model_);
    if (absl::Status s = kserve::ParseInferRequest(*request, io_, &parsed_);
        !s.ok()) {
      return s;
    }
    absl::StatusOr<uint32_t> level = model_->PriorityLevel(parsed_.priority);
    if (!level.ok()) return level.status();
    set_priority(*level);
    // The `timeout` parameter is the client's too: the earlier one wins.
    if (parsed_.timeout_us > 0) {
      call_deadline = std::min(call_deadline,
                               std::chrono::steady_clock::now() +
                                   std::chrono::microseconds(parsed_.timeout_us));
    }
    set_deadline(model_->Deadline(call_deadline));
    set_clip(parsed_.clip, ClipKey());
    absl::Status s = model_->Enqueue(this);
    // Triton's clients retry UNAVAILABLE; a full queue is that, for them.
    if (absl::IsResourceExhausted(s)) {
      return absl::UnavailableError(s.message());
    }
    return s;
  }

  void Complete(absl::Span<const float> logits, int64_t num_classes,
                const ExecutionStats& stats) override {
    response_->set_model_name(model_->name());
    response_->set_model_version(model_->version());
    kserve::FillInferResponse(*request_, parsed_, io_, logits, num_classes,
                              stats, response_);
    accounting_.Executed(stats);
    Answer(absl::OkStatus());
  }

  void Fail(const absl::Status& status) override { Answer(status); }

  // Records and sends the answer; the call may be gone when it returns.
  void Answer(const absl::Status& status) {
    accounting_.Answered(status.code());
    Send(status);
  }

 protected:
  virtual void Send(const absl::Status& status) = 0;

 private:
  batching::BatchKey ClipKey() const { return ClipBatchKey(parsed_.clip); }

  const ModelInferRequest* request_ = nullptr;
  ModelInferResponse* response_ = nullptr;
  // Held until the call is gone: a replaced version answers what it took.
  std::shared_ptr<ServedModel> model_;
  kserve::ModelIo io_;
  kserve::ParsedInfer parsed_;
  CallAccounting accounting_;
};

// ModelInfer: the call is its own reactor.
class UnaryInferCall final : public grpc::ServerUnaryReactor, public InferCall {
 public:
  using InferCall::InferCall;

  void OnCancel() override { OnCallCancelled(); }
  void OnDone() override { delete this; }

 private:
  void Send(const absl::Status& status) override {
    Finish(ToGrpcStatus(status));
  }
};

class StreamInferCall;

// ModelStreamInfer: reads requests as they come, queues each as its own
// call, and writes the answers one at a time as they complete. While
// StreamLedger::kMaxUnwrittenAnswers answers wait to be written (a client
// that does not read them), it reads no more requests: HTTP/2 flow control
// then holds the client's writes back, and the server's memory for the
// stream stays bounded. It finishes once the client has half-closed and
// every answer is written (or dropped, once a write failed), and is deleted
// when gRPC is done with it and no call still refers to it. The bookkeeping
// is the ledger's (server/stream_ledger.h); this class only acts on it.
class InferStream final
    : public grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse> {
 public:
  using Ledger = StreamLedger<std::unique_ptr<ModelStreamInferResponse>>;

  InferStream(const KServeService* service, grpc::CallbackServerContext* context)
      : service_(service), call_deadline_(SteadyDeadline(context->deadline())) {
    NextRead();
  }

  bool cancelled() const { return cancelled_.load(); }

  // Queues `answer` for writing; called once per request read, by the call
  // that holds the reference the read took (Unref() after).
  void Deliver(std::unique_ptr<ModelStreamInferResponse> answer) {
    Do(ledger_.Delivered(std::move(answer)));
  }

  void OnReadDone(bool ok) override;

  void OnWriteDone(bool ok) override { Do(ledger_.WriteDone(ok)); }

  // Every request of the stream is cancelled with it: those queued are swept
  // out now (which models hold them is not tracked; a sweep of a queue
  // holding none of them costs a scan), those not yet queued are refused.
  void OnCancel() override {
    cancelled_.store(true);
    for (const std::shared_ptr<ServedModel>& m : service_->models().models()) {
      m->SweepCancelled();
    }
  }

  void OnDone() override { Unref(); }

  // Drops the reference of gRPC (OnDone) or of a call that delivered.
  void Unref() {
    if (ledger_.Release()) delete this;
  }

 private:
  void NextRead() {
    read_ = std::make_unique<ModelInferRequest>();
    StartRead(read_.get());
  }

  void Do(const Ledger::Next& next) {
    if (next.read) NextRead();
    if (next.write != nullptr) StartWrite(next.write->get());
    if (next.finish) Finish(grpc::Status::OK);
  }

  const KServeService* const service_;
  const batching::TimePoint call_deadline_;
  // The outstanding read's request: written by whoever starts the read (the
  // constructor, or the event the ledger told to read), then taken by
  // OnReadDone before it reports the read to the ledger.
  std::unique_ptr<ModelInferRequest> read_;
  std::atomic<bool> cancelled_{false};
  Ledger ledger_;
};

// One request read from a stream. Owns the request and its answer until the
// answer is handed to the stream.
class StreamInferCall final : public InferCall {
 public:
  StreamInferCall(InferStream* stream, std::unique_ptr<ModelInferRequest> request,
                  ModelMetrics* unknown_model)
      : InferCall(unknown_model),
        stream_(stream),
        request_(std::move(request)),
        answer_(std::make_unique<ModelStreamInferResponse>()) {}

  const ModelInferRequest* request() const { return request_.get(); }
  ModelInferResponse* response() { return answer_->mutable_infer_response(); }

  bool IsCancelled() const override {
    return InferCall::IsCancelled() || stream_->cancelled();
  }

 private:
  void Send(const absl::Status& status) override {
    if (!status.ok()) {
      ModelInferResponse* r = answer_->mutable_infer_response();
      r->Clear();
      r->set_id(request_->id());
      r->set_model_name(request_->model_name());
      r->set_model_version(request_->model_version());
      answer_->set_error_message(absl::StrCat(
          absl::StatusCodeToString(status.code()), ": ", status.message()));
    }
    InferStream* stream = stream_;
    std::unique_ptr<ModelStreamInferResponse> answer = std::move(answer_);
    delete this;
    stream->Deliver(std::move(answer));
    stream->Unref();
  }

  InferStream* const stream_;
  const std::unique_ptr<ModelInferRequest> request_;
  std::unique_ptr<ModelStreamInferResponse> answer_;
};

void InferStream::OnReadDone(bool ok) {
  if (!ok) {
    Do(ledger_.ReadsDone());
    return;
  }
  // Take the request before telling the ledger: once it says to pause, a
  // WriteDone on another thread may resume reading into a new read_.
  std::unique_ptr<ModelInferRequest> request = std::move(read_);
  const Ledger::Next next = ledger_.RequestRead();  // the call's reference
  auto* call = new StreamInferCall(this, std::move(request),
                                   service_->metrics()->unknown_model());
  // Read the next request before this one can complete (and perhaps finish
  // nothing: the ledger already counts it), unless the client is not reading
  // its answers: then a WriteDone resumes reading once they drain.
  Do(next);
  if (absl::Status s =
          call->Start(*service_, call->request(), call->response(), call_deadline_);
      !s.ok()) {
    call->Answer(s);
  }
}

}  // namespace

grpc::ServerUnaryReactor* KServeService::ServerLive(
    grpc::CallbackServerContext* context, const inference::ServerLiveRequest*,
    inference::ServerLiveResponse* response) {
  response->set_live(true);
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::ServerReady(
    grpc::CallbackServerContext* context, const inference::ServerReadyRequest*,
    inference::ServerReadyResponse* response) {
  response->set_ready(models_->ready());
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::ModelReady(
    grpc::CallbackServerContext* context,
    const inference::ModelReadyRequest* request,
    inference::ModelReadyResponse* response) {
  absl::StatusOr<bool> ready =
      models_->ModelReady(request->name(), request->version());
  if (ready.ok()) response->set_ready(*ready);
  return FinishUnary(context, ready.status());
}

grpc::ServerUnaryReactor* KServeService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* response) {
  response->set_name(kServerName);
  response->set_version(CLIPSERVE_VERSION);
  for (const char* extension : kExtensions) response->add_extensions(extension);
  return FinishUnary(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::ModelMetadata(
    grpc::CallbackServerContext* context,
    const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  absl::StatusOr<std::shared_ptr<ServedModel>> model =
      models_->Find(request->name(), request->version());
  if (model.ok()) {
    const ServedModel& m = **model;
    response->set_name(m.name());
    for (const std::shared_ptr<ServedModel>& v : models_->models()) {
      if (v->name() == m.name()) response->add_versions(v->version());
    }
    response->set_platform(m.config().backend());
    kserve::FillTensorMetadata(IoOf(m), response);
  }
  return FinishUnary(context, model.status());
}

grpc::ServerUnaryReactor* KServeService::ModelInfer(
    grpc::CallbackServerContext* context, const ModelInferRequest* request,
    ModelInferResponse* response) {
  auto* call = new UnaryInferCall(metrics_->unknown_model());
  if (absl::Status s = call->Start(*this, request, response,
                                   SteadyDeadline(context->deadline()));
      !s.ok()) {
    call->Answer(s);
  }
  return call;
}

grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>*
KServeService::ModelStreamInfer(grpc::CallbackServerContext* context) {
  return new InferStream(this, context);
}

grpc::ServerUnaryReactor* KServeService::ModelConfig(
    grpc::CallbackServerContext* context,
    const inference::ModelConfigRequest* request,
    inference::ModelConfigResponse* response) {
  absl::StatusOr<std::shared_ptr<ServedModel>> model =
      models_->Find(request->name(), request->version());
  if (model.ok()) {
    const ServedModel& m = **model;
    const std::vector<std::string> devices = m.devices();
    kserve::FillModelConfig(m.config(), IoOf(m), !m.labels().empty(), devices,
                            response->mutable_config());
  }
  return FinishUnary(context, model.status());
}

grpc::ServerUnaryReactor* KServeService::ModelStatistics(
    grpc::CallbackServerContext* context,
    const inference::ModelStatisticsRequest* request,
    inference::ModelStatisticsResponse* response) {
  std::vector<std::shared_ptr<ServedModel>> models;
  if (!request->name().empty()) {
    absl::StatusOr<std::shared_ptr<ServedModel>> model =
        models_->Find(request->name(), request->version());
    if (!model.ok()) return FinishUnary(context, model.status());
    models.push_back(*model);
  } else {
    for (std::shared_ptr<ServedModel>& m : models_->models()) {
      if (request->version().empty() || m->version() == request->version()) {
        models.push_back(m);
      }
    }
    if (models.empty() && !request->version().empty()) {
      return FinishUnary(context, absl::NotFoundError(absl::StrCat(
                                      "no model serves version '",
                                      request->version(), "'")));
    }
  }
  for (const std::shared_ptr<ServedModel>& m : models) {
    inference::ModelStatistics* stats = response->add_model_stats();
    stats->set_name(m->name());
    stats->set_version(m->version());
    kserve::FillModelStatistics(m->statistics().Read(), stats);
  }
  return FinishUnary(context, absl::OkStatus());
}

}  // namespace clipserve::server
