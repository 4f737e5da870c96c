#include "server/streams/stream_service.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/strings/str_cat.h"
#include "server/clip_validation.h"
#include "server/grpc_status.h"
#include "server/inference_task.h"
#include "server/postprocess.h"
#include "server/served_model.h"
#include "server/streams/window_buffer.h"
#include "video/rgb_resizer.h"
#include "video/stream_decoder.h"

namespace clipserve::server {
namespace {

using v1::StreamEvent;
using v1::StreamOpen;
using v1::StreamRequest;
using v1::StreamResponse;

constexpr int kDefaultTopK = 5;
// Pushed raw frames without timestamps are numbered this far apart (25 fps).
constexpr int64_t kRawFrameStepUs = 40000;
// Bounds on what a StreamOpen may ask for.
constexpr int kMaxWindowFrames = 512;
constexpr int kMaxFrameStep = 1000;
constexpr double kMaxTargetFps = 1000;
// An encoded stream that gives no frame from this many bytes, or this many
// damaged packets, cannot be decoded at all.
constexpr size_t kUndecodableBytes = 8 << 20;
constexpr int64_t kUndecodablePackets = 64;
constexpr std::chrono::milliseconds kMaxBackoff{8000};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char* InputName(StreamOpen::Input input) {
  switch (input) {
    case StreamOpen::H264: return "h264";
    case StreamOpen::HEVC: return "hevc";
    case StreamOpen::MPEGTS: return "mpegts";
    case StreamOpen::FMP4: return "fmp4";
    default: return "";
  }
}

}  // namespace

class StreamCall;

// One window in the model's queue; owned by its stream, reused.
class WindowTask final : public InferenceTask {
 public:
  enum class State { kFree, kQueued, kRunning };  // the stream's mu_

  WindowTask(StreamCall* stream, size_t bytes) : stream_(stream), frames_(bytes) {}

  uint8_t* frames() { return frames_.data(); }

  bool IsCancelled() const override;
  void Batched() override;
  void Complete(absl::Span<const float> logits, int64_t num_classes,
                const ExecutionStats& stats) override;
  void Fail(const absl::Status& status) override;

  // Where the window lies, set before it is queued (or, while kQueued,
  // when a fresher window replaces it, under the stream's mu_).
  WindowBuffer::Window window;
  // The model version it was queued into (alive until it is answered).
  ServedModel* model = nullptr;
  int64_t arrival_ns = 0;
  int64_t decode_us = 0;
  State state = State::kFree;

 private:
  StreamCall* const stream_;
  std::vector<uint8_t> frames_;
};

// One ClassifyStream call: the reactor gRPC drives, and the worker thread
// that runs the stream (see stream_service.h). Deleted when both gRPC
// (OnDone) and the worker are done with it.
class StreamCall final
    : public grpc::ServerBidiReactor<StreamRequest, StreamResponse>,
      public video::StreamDecoder::Sink {
 public:
  explicit StreamCall(StreamService* service) : service_(service) {}

  // Refused at once (no worker).
  void Refuse(const absl::Status& status) {
    ended_code_ = status.code();
    Finish(ToGrpcStatus(status));
  }

  void StartWorker() {
    refs_ = 2;  // gRPC's and the worker's
    std::thread([this, service = service_] {
      Work();  // ends with this call deleted or left to gRPC's OnDone
      service->WorkerExited();
    }).detach();
  }

  // From Shutdown(): end with UNAVAILABLE once queued windows are answered.
  void Drain() {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_status_.ok()) stop_status_ = absl::UnavailableError("server is shutting down");
    stop_.store(true, std::memory_order_relaxed);
    wake_.notify_all();
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
    if (ok) {
      have_input_ = true;
      input_arrival_ns_ = NowNs();
    } else {
      input_ended_ = true;
    }
    // A pulled stream stops at the client's half-close (or any message).
    if (pulling_) stop_.store(true, std::memory_order_relaxed);
    wake_.notify_all();
  }

  void OnWriteDone(bool ok) override {
    const StreamResponse* next = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      spare_.push_back(std::move(writes_.front()));
      writes_.pop_front();
      if (!ok) {
        broken_ = true;
        while (!writes_.empty()) {
          spare_.push_back(std::move(writes_.front()));
          writes_.pop_front();
        }
        drop_event_ = damage_event_ = answers_event_ = nullptr;
      }
      if (answers_dropped_ > 0 && !broken_ &&
          writes_.size() < options().max_pending_answers / 2) {
        // The client reads again: say how many answers it lost.
        AnswersDroppedLocked();
      }
      if (writes_.empty()) {
        writing_ = false;
        wake_.notify_all();
      } else {
        next = StartingLocked();
      }
    }
    if (next != nullptr) StartWrite(next);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    client_gone_.store(true, std::memory_order_relaxed);
    if (stop_status_.ok()) stop_status_ = absl::CancelledError("the client cancelled the stream");
    stop_.store(true, std::memory_order_relaxed);
    wake_.notify_all();
  }

  // Counts the stream's end here, where gRPC has already told OnCancel if
  // the client cancelled: a cancelled stream whose read failed first (gRPC
  // does not order the two) counts as CANCELLED, not as a half-close (OK).
  void OnDone() override {
    service_->metrics_.CountEnded(client_gone() ? absl::StatusCode::kCancelled
                                                : ended_code_);
    Unref();
  }

  // Sink: frames decoded (worker, or the container decoder's thread while
  // the worker waits in Push()).
  uint8_t* Place(const video::StreamDecoder::FrameInfo& info) override;
  void Written(const video::StreamDecoder::FrameInfo& info) override;
  // The version to queue the next window into: model_, or, once the
  // lifecycle retired it, the version Find() gives now for the name and
  // version the client asked, if it takes the same windows (a
  // MODEL_CHANGED event either way); nullptr while none does.
  ServedModel* CurrentModel();

  // From the batching threads.
  bool client_gone() const { return client_gone_.load(std::memory_order_relaxed); }
  void WindowBatched(WindowTask* task) {
    std::lock_guard<std::mutex> lock(mu_);
    task->state = WindowTask::State::kRunning;
    if (queued_ == task) queued_ = nullptr;
  }
  void WindowDone(WindowTask* task, absl::Span<const float> logits,
                  int64_t num_classes, const ExecutionStats& stats);
  void WindowFailed(WindowTask* task, const absl::Status& status);

 private:
  void Unref() {
    bool last;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  // ---- the worker
  void Work();
  absl::Status Serve();
  absl::Status Open(const StreamOpen& open);
  absl::Status Push();
  absl::Status Pull(const StreamOpen& open);
  absl::Status Process(const StreamRequest& message, int64_t arrival_ns);
  // An encoded stream that gave no frame.
  absl::Status Undecodable() const {
    return absl::InvalidArgumentError(absl::StrCat(
        "could not decode video: no frame in the stream's first ", encoded_bytes_,
        " bytes (", decoder_->corrupt_packets(), " damaged packets); is it ",
        InputName(input_), "?"));
  }
  // The next message into `message` (OK), OUT_OF_RANGE at the end of input,
  // DEADLINE_EXCEEDED after the idle timeout, or why the stream stopped.
  absl::Status NextMessage(StreamRequest* message, int64_t* arrival_ns);
  void StartReading();
  absl::Status StopStatus() {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_status_.ok() ? absl::OkStatus() : stop_status_;
  }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }
  bool Sampled(int64_t t_us);
  void EmitWindow(int64_t arrival_ns);
  // Reports frames lost to damage since the last report.
  void ReportDamage(int64_t lost_total);
  void Send(std::unique_ptr<StreamResponse> response);
  // One event of its own (count 1), not merged with others of its kind.
  void SendEvent(StreamEvent::Kind kind, absl::string_view message) {
    StreamResponse* ignored = nullptr;
    const StreamResponse* start = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      start = EventLocked(kind, 1, message, &ignored);
    }
    if (start != nullptr) StartWrite(start);
  }

  // ---- writes (mu_ held)
  std::unique_ptr<StreamResponse> SpareLocked() {
    if (spare_.empty()) return std::make_unique<StreamResponse>();
    std::unique_ptr<StreamResponse> r = std::move(spare_.back());
    spare_.pop_back();
    r->Clear();
    return r;
  }
  // Queues `r`; what to StartWrite() once unlocked, or nullptr.
  const StreamResponse* QueueLocked(std::unique_ptr<StreamResponse> r) {
    if (broken_) {
      spare_.push_back(std::move(r));
      return nullptr;
    }
    writes_.push_back(std::move(r));
    if (writing_) return nullptr;
    writing_ = true;
    return StartingLocked();
  }
  // writes_.front() starts being written: no more coalescing into it.
  const StreamResponse* StartingLocked() {
    StreamResponse* front = writes_.front().get();
    if (front == drop_event_) drop_event_ = nullptr;
    if (front == damage_event_) damage_event_ = nullptr;
    return front;
  }
  // `task` is answered (or dropped): its buffer is free again.
  void ReleaseLocked(WindowTask* task) {
    task->state = WindowTask::State::kFree;
    --inflight_;
    wake_.notify_all();
  }
  // Reports the answers dropped since the last report, if any.
  const StreamResponse* AnswersDroppedLocked() {
    if (answers_dropped_ == 0) return nullptr;
    const int64_t n = answers_dropped_;
    answers_dropped_ = 0;
    return EventLocked(StreamEvent::ANSWERS_DROPPED, n,
                       "answers dropped: the client did not read them",
                       &answers_event_);
  }
  // Counts one more in the unsent event of `kind` (coalescing), or queues
  // a new one.
  const StreamResponse* EventLocked(StreamEvent::Kind kind, int64_t count,
                                    absl::string_view message,
                                    StreamResponse** pending) {
    if (*pending != nullptr) {
      StreamEvent* e = (*pending)->mutable_event();
      e->set_count(e->count() + count);
      return nullptr;
    }
    std::unique_ptr<StreamResponse> r = SpareLocked();
    StreamEvent* e = r->mutable_event();
    e->set_kind(kind);
    e->set_count(count);
    e->set_message(std::string(message));
    StreamResponse* raw = r.get();
    const StreamResponse* start = QueueLocked(std::move(r));
    if (!broken_ && start != raw) *pending = raw;
    return start;
  }

  StreamService* const service_;
  const StreamOptions& options() const { return service_->options_; }

  // The version serving the stream: set by Open(), then replaced by
  // CurrentModel() when the lifecycle retires it (worker and decoder
  // threads, one at a time).
  std::shared_ptr<ServedModel> model_;
  // Set by Open() before any window, then read-only.
  std::string model_name_;
  std::string model_version_;  // as the client asked: empty, number or label
  runtime::ModelSpec spec_;
  StreamModelMetrics* metrics_ = nullptr;
  StreamOpen::Input input_ = StreamOpen::INPUT_UNSPECIFIED;
  int64_t window_frames_ = 0;
  int64_t crop_height_ = 0;
  int64_t crop_width_ = 0;
  int frame_step_ = 1;
  int64_t sample_period_us_ = 0;  // target_fps's, or 0
  int top_k_ = kDefaultTopK;
  uint32_t level_ = 0;
  bool every_window_ = false;
  runtime::ClipView view_;  // a window's shape (data set per task)
  batching::BatchKey key_ = 0;

  // The worker's (and its decoder thread's, while the worker waits).
  std::unique_ptr<WindowBuffer> windows_;
  std::unique_ptr<video::StreamDecoder> decoder_;
  std::unique_ptr<video::RgbResizer> resizer_;
  size_t window_bytes_ = 0;
  int64_t start_ns_ = 0;
  int64_t chunk_arrival_ns_ = 0;
  int64_t placed_time_us_ = 0;
  int64_t placed_arrival_ns_ = 0;
  int64_t offered_ = 0;          // frames offered to sampling
  int64_t next_sample_us_ = std::numeric_limits<int64_t>::min();
  int64_t next_index_ = 0;       // the next decoded frame's number
  int64_t frames_decoded_ = 0;
  int64_t raw_frames_ = 0;
  size_t encoded_bytes_ = 0;
  int64_t lost_reported_ = 0;    // frames lost to damage, reported
  int64_t lost_base_ = 0;        // of earlier (reconnected) sources
  bool opened_ = false;

  std::mutex mu_;
  std::condition_variable wake_;
  int refs_ = 1;
  // Input (OnReadDone -> worker).
  StreamRequest read_;
  bool reading_ = false;
  bool have_input_ = false;
  bool input_ended_ = false;
  bool pulling_ = false;
  int64_t input_arrival_ns_ = 0;
  std::atomic<bool> stop_{false};  // also read by a LiveSource
  absl::Status stop_status_;       // why stopped (OK: input ended)
  // The code the stream ends with; set before Finish(), counted in OnDone.
  absl::StatusCode ended_code_ = absl::StatusCode::kOk;
  // Output.
  std::deque<std::unique_ptr<StreamResponse>> writes_;
  std::vector<std::unique_ptr<StreamResponse>> spare_;
  StreamResponse* drop_event_ = nullptr;    // unsent WINDOWS_DROPPED
  StreamResponse* damage_event_ = nullptr;  // unsent DECODE_ERRORS_SKIPPED
  StreamResponse* answers_event_ = nullptr;  // unsent ANSWERS_DROPPED
  int64_t answers_dropped_ = 0;             // not yet reported
  bool writing_ = false;
  bool broken_ = false;
  // Windows: buffers made on demand (at most kWindowBuffers), reused.
  std::vector<std::unique_ptr<WindowTask>> tasks_;
  WindowTask* queued_ = nullptr;  // the window queued and not yet batched
  int inflight_ = 0;
  std::atomic<bool> client_gone_{false};
};

// A window of a client that is gone is not computed.
bool WindowTask::IsCancelled() const { return stream_->client_gone(); }

void WindowTask::Batched() { stream_->WindowBatched(this); }

void WindowTask::Complete(absl::Span<const float> logits, int64_t num_classes,
                          const ExecutionStats& stats) {
  stream_->WindowDone(this, logits, num_classes, stats);
}

void WindowTask::Fail(const absl::Status& status) { stream_->WindowFailed(this, status); }

void StreamCall::Work() {
  start_ns_ = NowNs();
  absl::Status status = Serve();
  if (status.code() == absl::StatusCode::kOutOfRange) status = absl::OkStatus();
  const StreamResponse* start = nullptr;
  {
    std::unique_lock<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_relaxed);
    // Every window queued is answered (the models run until every stream
    // has ended), then every answer is written unless the client is gone.
    wake_.wait(lock, [this] { return inflight_ == 0; });
    start = AnswersDroppedLocked();
  }
  if (start != nullptr) StartWrite(start);
  {
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait(lock, [this] { return !writing_ || broken_ || client_gone(); });
  }
  decoder_.reset();
  if (opened_) metrics_->active->Decrement();
  ended_code_ = status.code();
  Finish(ToGrpcStatus(status));
  service_->Unregister(this);
  Unref();
}

absl::Status StreamCall::Serve() {
  StreamRequest first;
  int64_t arrival = 0;
  absl::Status s = NextMessage(&first, &arrival);
  if (s.code() == absl::StatusCode::kOutOfRange) {
    return absl::InvalidArgumentError("the stream ended before its open message");
  }
  if (!s.ok()) return s;
  if (!first.has_open()) {
    return absl::InvalidArgumentError("a stream's first message must be open");
  }
  if (s = Open(first.open()); !s.ok()) return s;
  if (!first.open().source_url().empty()) return Pull(first.open());
  return Push();
}

absl::Status StreamCall::Open(const StreamOpen& open) {
  absl::StatusOr<std::shared_ptr<ServedModel>> found =
      service_->models_->Find(open.model_name(), open.model_version());
  if (!found.ok()) return found.status();
  if (service_->models_->draining()) {
    return absl::UnavailableError("server is shutting down");
  }
  model_ = *found;
  model_name_ = model_->name();
  model_version_ = open.model_version();
  spec_ = model_->spec();
  const runtime::ModelSpec& spec = spec_;
  const std::string& name = model_->name();
  if (open.source_url().empty() == (open.input() == StreamOpen::INPUT_UNSPECIFIED)) {
    return absl::InvalidArgumentError(
        "open: set exactly one of input (what the client pushes) and source_url");
  }
  if (!open.source_url().empty()) {
    if (absl::Status s = video::CheckSourceUrl(open.source_url(), options().source_policy);
        !s.ok()) {
      return s;
    }
  }
  if (spec.input.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", name, "' takes ", spec.input.channels,
        "-channel clips; streams give RGB frames"));
  }
  if (open.window_frames() < 0 || open.stride_frames() < 0 || open.frame_step() < 0 ||
      open.target_fps() < 0 || open.top_k() < 0) {
    return absl::InvalidArgumentError(
        "open: window_frames, stride_frames, frame_step, target_fps and top_k "
        "must not be negative");
  }
  window_frames_ = open.window_frames() > 0 ? open.window_frames() : spec.input.frames;
  if (window_frames_ <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", name, "' takes clips of any length: set open.window_frames"));
  }
  if (spec.input.frames > 0 && window_frames_ != spec.input.frames) {
    return absl::InvalidArgumentError(absl::StrCat(
        "open.window_frames is ", window_frames_, "; model '", name, "' takes ",
        spec.input.frames, " frames"));
  }
  if (window_frames_ > kMaxWindowFrames || open.stride_frames() > kMaxClipDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "open: window_frames is at most ", kMaxWindowFrames,
        " and stride_frames at most ", kMaxClipDim));
  }
  if (open.frame_step() > kMaxFrameStep || open.target_fps() > kMaxTargetFps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "open: frame_step is at most ", kMaxFrameStep, " and target_fps at most ",
        kMaxTargetFps));
  }
  if (open.frame_step() > 1 && open.target_fps() > 0) {
    return absl::InvalidArgumentError("open: set frame_step or target_fps, not both");
  }
  absl::StatusOr<uint32_t> level = model_->PriorityLevel(open.priority());
  if (!level.ok()) return level.status();
  level_ = *level;
  const int64_t stride = open.stride_frames() > 0 ? open.stride_frames() : window_frames_;
  frame_step_ = std::max(1, open.frame_step());
  sample_period_us_ =
      open.target_fps() > 0 ? static_cast<int64_t>(1e6 / open.target_fps()) : 0;
  top_k_ = open.top_k() > 0 ? open.top_k() : kDefaultTopK;
  every_window_ = open.every_window();
  input_ = open.input();

  video::Geometry geometry;
  geometry.crop_height = crop_height_ =
      spec.input.height > 0 ? spec.input.height : kDefaultCropSide;
  geometry.crop_width = crop_width_ =
      spec.input.width > 0 ? spec.input.width : kDefaultCropSide;
  if (input_ == StreamOpen::RAW_RGB) {
    absl::StatusOr<std::unique_ptr<video::RgbResizer>> r =
        video::RgbResizer::Create(geometry, options().limits);
    if (!r.ok()) return r.status();
    resizer_ = std::move(*r);
  } else if (open.source_url().empty()) {
    video::StreamDecoder::Options d;
    d.format = InputName(input_);
    if (d.format.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("open: unknown input ", static_cast<int>(input_)));
    }
    d.geometry = geometry;
    d.limits = options().limits;
    d.threads = options().decode_threads;
    d.whole_access_units = open.whole_access_units();
    absl::StatusOr<std::unique_ptr<video::StreamDecoder>> dec =
        video::StreamDecoder::Create(d);
    if (!dec.ok()) return dec.status();
    decoder_ = std::move(*dec);
  }

  const size_t frame_bytes = static_cast<size_t>(crop_height_ * crop_width_ * 3);
  windows_ = std::make_unique<WindowBuffer>(
      WindowBuffer::Options{window_frames_, stride, frame_bytes});
  view_.dtype = runtime::ClipDType::kUInt8;
  view_.shape = {3, window_frames_, crop_height_, crop_width_};
  view_.count = 1;
  key_ = ClipBatchKey(view_);
  window_bytes_ = static_cast<size_t>(window_frames_) * frame_bytes;
  tasks_.reserve(StreamService::kWindowBuffers);

  metrics_ = service_->metrics_.ForModel(model_->name(), model_->version());
  metrics_->active->Increment();
  opened_ = true;
  auto started = std::make_unique<StreamResponse>();
  v1::StreamStarted* s = started->mutable_started();
  s->set_model_name(model_->name());
  s->set_model_version(model_->version());
  s->set_window_frames(static_cast<int32_t>(window_frames_));
  s->set_stride_frames(static_cast<int32_t>(stride));
  s->set_crop_height(static_cast<int32_t>(crop_height_));
  s->set_crop_width(static_cast<int32_t>(crop_width_));
  Send(std::move(started));
  return absl::OkStatus();
}

void StreamCall::StartReading() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (reading_ || have_input_ || input_ended_) return;
    reading_ = true;
  }
  StartRead(&read_);
}

absl::Status StreamCall::NextMessage(StreamRequest* message, int64_t* arrival_ns) {
  StartReading();
  std::unique_lock<std::mutex> lock(mu_);
  const bool input = wake_.wait_for(lock, options().idle_timeout, [this] {
    return have_input_ || input_ended_ || stopped();
  });
  if (stopped()) return stop_status_.ok() ? absl::CancelledError("stream stopped") : stop_status_;
  if (!input) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no input for ", options().idle_timeout.count() / 1000.0,
        " s (--stream-idle-timeout-seconds)"));
  }
  if (!have_input_) return absl::OutOfRangeError("end of input");
  message->Swap(&read_);
  *arrival_ns = input_arrival_ns_;
  have_input_ = false;
  return absl::OkStatus();
}

absl::Status StreamCall::Push() {
  StreamRequest message;
  for (;;) {
    int64_t arrival = 0;
    absl::Status s = NextMessage(&message, &arrival);
    if (s.code() == absl::StatusCode::kOutOfRange) {
      if (decoder_ == nullptr) return absl::OkStatus();
      chunk_arrival_ns_ = NowNs();
      s = decoder_->Finish(this);
      ReportDamage(decoder_->dropped_frames());
      if (s.ok() && frames_decoded_ == 0 && encoded_bytes_ > 0) {
        s = Undecodable();
      }
      return s;
    }
    if (!s.ok()) return s;
    if (s = Process(message, arrival); !s.ok()) return s;
  }
}

absl::Status StreamCall::Process(const StreamRequest& message, int64_t arrival_ns) {
  chunk_arrival_ns_ = arrival_ns;
  switch (message.message_case()) {
    case StreamRequest::kFrame: {
      if (resizer_ == nullptr) {
        return absl::InvalidArgumentError(
            "this stream takes encoded data (its open.input), not frames");
      }
      const v1::RawFrame& f = message.frame();
      video::StreamDecoder::FrameInfo info;
      info.index = raw_frames_++;
      info.time_us = f.pts_us() != 0 ? f.pts_us() : info.index * kRawFrameStepUs;
      info.pts = info.time_us;
      info.arrival_ns = arrival_ns;
      uint8_t* out = Place(info);
      if (out == nullptr) return absl::OkStatus();
      if (absl::Status s = resizer_->Resize(f.rgb(), f.width(), f.height(), info.index, out);
          !s.ok()) {
        return s;
      }
      Written(info);
      return absl::OkStatus();
    }
    case StreamRequest::kData: {
      if (decoder_ == nullptr) {
        return absl::InvalidArgumentError(
            "this stream takes raw frames (open.input RAW_RGB), not data");
      }
      const std::string& data = message.data();
      if (data.size() > options().limits.max_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "a data message has ", data.size(), " bytes; at most ",
            options().limits.max_bytes));
      }
      encoded_bytes_ += data.size();
      absl::Status s = decoder_->Push(data, this);
      ReportDamage(decoder_->dropped_frames());
      if (s.ok() && frames_decoded_ == 0 &&
          (encoded_bytes_ > kUndecodableBytes ||
           decoder_->corrupt_packets() > kUndecodablePackets)) {
        s = Undecodable();
      }
      return s;
    }
    case StreamRequest::kOpen:
      return absl::InvalidArgumentError("open may only be a stream's first message");
    case StreamRequest::MESSAGE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("a stream message holds no frame or data");
}

absl::Status StreamCall::Pull(const StreamOpen& open) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pulling_ = true;
  }
  StartReading();  // to see the client's half-close
  video::LiveSource::Options o;
  o.url = open.source_url();
  o.rtsp_tcp = open.source().rtsp_tcp();
  o.replay_speed = open.source().replay_speed() == 0 ? 1 : open.source().replay_speed();
  o.geometry.crop_height = crop_height_;
  o.geometry.crop_width = crop_width_;
  o.limits = options().limits;
  o.threads = options().decode_threads;
  o.io_timeout = options().source_io_timeout;
  const int max_reconnects =
      open.source().max_reconnects() == 0 ? 5 : open.source().max_reconnects();
  int attempts = 0;
  bool connected = false;
  std::chrono::milliseconds backoff = options().reconnect_backoff;
  for (;;) {
    absl::StatusOr<std::unique_ptr<video::LiveSource>> source =
        video::LiveSource::Open(o, options().source_policy, &stop_);
    absl::Status s;
    if (source.ok()) {
      if (connected) {
        metrics_->reconnects->Increment();
        SendEvent(StreamEvent::SOURCE_RECONNECTED, absl::StrCat("reconnected to ", o.url));
      }
      connected = true;
      attempts = 0;
      backoff = options().reconnect_backoff;
      s = (*source)->Run(this, next_index_);
      ReportDamage(lost_base_ + (*source)->dropped_frames());
      lost_base_ += (*source)->dropped_frames();
      if (s.ok() && !stopped()) return absl::OkStatus();  // the source ended
    } else {
      s = source.status();
    }
    if (stopped()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (have_input_) {
        return absl::InvalidArgumentError(
            "a stream with a source_url takes no messages after its open");
      }
      return stop_status_;  // OK at the client's half-close
    }
    if (s.code() != absl::StatusCode::kUnavailable) return s;
    if (max_reconnects >= 0 && attempts >= max_reconnects) {
      return absl::UnavailableError(absl::StrCat(
          s.message(), " (gave up after ", attempts, " reconnect attempts)"));
    }
    ++attempts;
    SendEvent(StreamEvent::SOURCE_LOST, s.message());
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, backoff, [this] { return stopped(); });
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

bool StreamCall::Sampled(int64_t t_us) {
  if (sample_period_us_ > 0) {
    if (next_sample_us_ != std::numeric_limits<int64_t>::min() && t_us < next_sample_us_) {
      return false;
    }
    next_sample_us_ = next_sample_us_ == std::numeric_limits<int64_t>::min()
                          ? t_us + sample_period_us_
                          : next_sample_us_ + sample_period_us_;
    // After a gap, sampling starts again from this frame.
    if (next_sample_us_ <= t_us) next_sample_us_ = t_us + sample_period_us_;
    return true;
  }
  return offered_++ % frame_step_ == 0;
}

uint8_t* StreamCall::Place(const video::StreamDecoder::FrameInfo& info) {
  metrics_->frames->Increment();
  ++frames_decoded_;
  next_index_ = info.index + 1;
  const int64_t arrival = info.arrival_ns != 0 ? info.arrival_ns : chunk_arrival_ns_;
  // Annex B carries no timestamps: the frame's arrival since the stream
  // opened stands in.
  const int64_t t_us = info.time_us >= 0 ? info.time_us : (arrival - start_ns_) / 1000;
  if (!Sampled(t_us)) return nullptr;
  if (!windows_->Wants()) {
    windows_->Skip();
    return nullptr;
  }
  placed_time_us_ = t_us;
  placed_arrival_ns_ = arrival;
  return windows_->Next();
}

void StreamCall::Written(const video::StreamDecoder::FrameInfo& info) {
  if (windows_->Commit(placed_time_us_, info.index)) EmitWindow(placed_arrival_ns_);
}

void StreamCall::EmitWindow(int64_t arrival_ns) {
  WindowTask* task = nullptr;
  const StreamResponse* start = nullptr;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!every_window_ && queued_ != nullptr) {
      // Real time: the stream's window still waiting in the model's queue
      // is replaced by this fresher one, in its place in the queue (the
      // batcher reads the bytes only after Batched(), which takes mu_).
      windows_->CopyWindow(queued_->frames());
      queued_->window = windows_->window();
      queued_->arrival_ns = arrival_ns;
      queued_->decode_us = (NowNs() - arrival_ns) / 1000;
      metrics_->window(WindowOutcome::kSuperseded).Increment();
      start = EventLocked(StreamEvent::WINDOWS_DROPPED, 1,
                          "superseded: still queued when the stream's next "
                          "window was ready",
                          &drop_event_);
    } else {
      // every_window: at most kWindowsInFlight windows, then the stream
      // waits for the model (and so reads its input more slowly).
      const size_t limit = every_window_ ? StreamService::kWindowsInFlight
                                         : StreamService::kWindowBuffers;
      for (;;) {
        size_t busy = 0;
        for (auto& t : tasks_) {
          if (t->state != WindowTask::State::kFree) {
            ++busy;
          } else if (task == nullptr) {
            task = t.get();
          }
        }
        if (busy >= limit) task = nullptr;
        if (task == nullptr && busy < limit) {
          tasks_.push_back(std::make_unique<WindowTask>(this, window_bytes_));
          task = tasks_.back().get();
        }
        if (task != nullptr || !every_window_ || stopped()) break;
        wake_.wait(lock);
      }
      if (task == nullptr) {
        metrics_->window(WindowOutcome::kBacklog).Increment();
        start = EventLocked(StreamEvent::WINDOWS_DROPPED, 1,
                            "the model is far behind: every window buffer of "
                            "the stream is in flight",
                            &drop_event_);
      } else {
        task->state = WindowTask::State::kQueued;
        queued_ = task;
        ++inflight_;
      }
    }
  }
  if (start != nullptr) StartWrite(start);
  if (task == nullptr) return;
  // Not in the model's queue yet: nobody else reads the task.
  windows_->CopyWindow(task->frames());
  task->window = windows_->window();
  task->arrival_ns = arrival_ns;
  task->decode_us = (NowNs() - arrival_ns) / 1000;
  runtime::ClipView view = view_;
  view.data = task->frames();
  task->set_clip(view, key_);
  task->set_priority(level_);
  task->model = CurrentModel();
  if (task->model == nullptr) {
    WindowFailed(task, absl::UnavailableError(absl::StrCat(
                           "model '", model_name_, "' version '", model_version_,
                           "' is not served now (unloaded)")));
    return;
  }
  if (absl::Status s = task->model->Enqueue(task); !s.ok()) WindowFailed(task, s);
}

ServedModel* StreamCall::CurrentModel() {
  if (model_ != nullptr && !model_->retired()) return model_.get();
  absl::StatusOr<std::shared_ptr<ServedModel>> next =
      service_->models_->Find(model_name_, model_version_);
  const bool fits = next.ok() && (*next)->spec().input == spec_.input &&
                    (*next)->spec().num_classes == spec_.num_classes;
  const bool was_served = model_ != nullptr;
  // A retired version is let go at once, so that it can be freed.
  model_ = fits ? *std::move(next) : nullptr;
  if (was_served || model_ != nullptr) {
    const std::string what =
        model_ == nullptr
            ? absl::StrCat("no version of model '", model_name_,
                           "' that takes this stream's windows is served: "
                           "windows are dropped until one is")
            : absl::StrCat("now served by model '", model_name_, "' version ",
                           model_->version());
    SendEvent(StreamEvent::MODEL_CHANGED, what);
  }
  return model_.get();
}

void StreamCall::WindowDone(WindowTask* task, absl::Span<const float> logits,
                            int64_t num_classes, const ExecutionStats& stats) {
  thread_local std::vector<ScoredClass> top;
  TopKSoftmax(logits.subspan(0, num_classes), top_k_, &top);
  const std::vector<std::string>& labels = task->model->labels();
  task->model->metrics().queue_duration().Observe(stats.queue_us * 1e-6);
  task->model->metrics().compute_duration().Observe(stats.compute_us * 1e-6);
  const StreamResponse* start = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_ || writes_.size() >= options().max_pending_answers) {
      // The client does not read: the answer goes, counted.
      metrics_->window(WindowOutcome::kAnswerDropped).Increment();
      ++answers_dropped_;
    } else {
      start = AnswersDroppedLocked();
      std::unique_ptr<StreamResponse> r = SpareLocked();
      v1::WindowResult* w = r->mutable_window();
      const WindowBuffer::Window& win = task->window;
      w->set_number(win.number);
      w->set_first_frame(win.first_source_frame);
      w->set_last_frame(win.last_source_frame);
      w->set_first_pts_us(win.first_pts_us);
      w->set_last_pts_us(win.last_pts_us);
      auto* classes = w->mutable_classes();
      for (const ScoredClass& c : top) {
        v1::Classification* out = classes->Add();
        out->set_class_index(c.index);
        out->set_probability(c.probability);
        if (!labels.empty()) out->set_label(labels[c.index]);
      }
      const int64_t latency_ns = NowNs() - task->arrival_ns;
      w->set_latency_us(latency_ns / 1000);
      v1::Timings* t = w->mutable_timings();
      t->set_queue_us(stats.queue_us);
      t->set_compute_us(stats.compute_us);
      t->set_batch_size(stats.batch_size);
      t->set_decode_us(task->decode_us);
      metrics_->latency->Observe(latency_ns * 1e-9);
      metrics_->window(WindowOutcome::kClassified).Increment();
      const StreamResponse* s = QueueLocked(std::move(r));
      if (start == nullptr) start = s;
    }
    ReleaseLocked(task);
  }
  if (start != nullptr) StartWrite(start);
}

void StreamCall::WindowFailed(WindowTask* task, const absl::Status& status) {
  WindowOutcome outcome = WindowOutcome::kFailed;
  std::string why;
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    outcome = WindowOutcome::kQueueFull;
    why = absl::StrCat("the model's queue is full: ", status.message());
  } else {
    why = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
  }
  const StreamResponse* start = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_->window(outcome).Increment();
    start = EventLocked(StreamEvent::WINDOWS_DROPPED, 1, why, &drop_event_);
    if (queued_ == task) queued_ = nullptr;
    ReleaseLocked(task);
  }
  if (start != nullptr) StartWrite(start);
}

void StreamCall::ReportDamage(int64_t lost_total) {
  if (lost_total <= lost_reported_) return;
  const int64_t lost = lost_total - lost_reported_;
  lost_reported_ = lost_total;
  metrics_->frames_lost->Increment(static_cast<double>(lost));
  const StreamResponse* start = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    start = EventLocked(StreamEvent::DECODE_ERRORS_SKIPPED, lost,
                        "damaged input: frames skipped up to the next keyframe",
                        &damage_event_);
  }
  if (start != nullptr) StartWrite(start);
}

void StreamCall::Send(std::unique_ptr<StreamResponse> response) {
  if (response == nullptr) return;
  const StreamResponse* start = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    start = QueueLocked(std::move(response));
  }
  if (start != nullptr) StartWrite(start);
}

StreamService::StreamService(const ModelRepository* models, Metrics* metrics,
                             const StreamOptions& options)
    : models_(models),
      options_(options),
      metrics_(metrics->registry(), metrics->duration_buckets()) {
  // Every model's stream series exist from the start, at zero.
  for (const std::shared_ptr<ServedModel>& m : models->models()) {
    metrics_.ForModel(m->name(), m->version());
  }
}

StreamService::~StreamService() {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  for (StreamCall* s : streams_) s->Drain();
  idle_.wait(lock, [this] { return streams_.empty() && workers_ == 0; });
}

grpc::ServerBidiReactor<StreamRequest, StreamResponse>* StreamService::Start(
    grpc::CallbackServerContext* /*context*/) {
  auto* call = new StreamCall(this);
  if (!Register(call)) {
    bool draining;
    {
      std::lock_guard<std::mutex> lock(mu_);
      draining = draining_;
    }
    call->Refuse(draining || models_->draining()
                     ? absl::UnavailableError("server is shutting down")
                     : absl::ResourceExhaustedError(absl::StrCat(
                           "the server has ", options_.max_streams,
                           " streams open, its limit (--max-streams)")));
    return call;
  }
  call->StartWorker();
  return call;
}

bool StreamService::Register(StreamCall* call) {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_ || models_->draining() ||
      static_cast<int>(streams_.size()) >= options_.max_streams) {
    return false;
  }
  streams_.insert(call);
  ++workers_;
  return true;
}

void StreamService::WorkerExited() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--workers_ == 0) idle_.notify_all();
}

void StreamService::Unregister(StreamCall* call) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(call);
  if (streams_.empty()) idle_.notify_all();
}

void StreamService::Shutdown(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  for (StreamCall* s : streams_) s->Drain();
  idle_.wait_for(lock, grace, [this] { return streams_.empty(); });
}


}  // namespace clipserve::server
