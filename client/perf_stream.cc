#include "client/perf_stream.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "client/clips.h"
#include "client/perf.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"

namespace clipserve::client {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Counts the streams that have ended.
class Countdown {
 public:
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_;
    cv_.notify_all();
  }
  // true when `n` have ended by `until`.
  bool WaitUntil(int n, Clock::time_point until) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, until, [&] { return done_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
};

// One camera: its call, its writes as the pacer makes frames due, its
// answers. Writes and reads end on gRPC's threads; mu_ guards what both
// they and the pacer touch. A hold keeps the call open while frames may
// still be written, so no Start* follows OnDone.
class StreamCall final : public grpc::ClientBidiReactor<v1::StreamRequest, v1::StreamResponse> {
 public:
  StreamCall(v1::VideoClassifier::Stub* stub, const StreamRunOptions& options, int index,
             v1::StreamRequest open, int64_t total_frames, Countdown* ended)
      : stub_(stub),
        index_(index),
        streams_(options.streams),
        fps_(options.fps),
        units_(options.units),
        open_(std::move(open)),
        total_(units_ != nullptr ? total_frames : 0),
        ended_(ended) {
    send_time_.resize(static_cast<size_t>(total_));
    stats_.latency_us.reserve(static_cast<size_t>(total_frames) + 16);
    if (units_ != nullptr) stats_.client_latency_us.reserve(static_cast<size_t>(total_) + 16);
  }

  void Begin(Clock::time_point start) {
    start_ = start;
    stub_->async()->ClassifyStream(&context_, this);
    if (total_ > 0) AddHold();  // released when the writing ends
    StartRead(&response_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = true;
    }
    StartWrite(&open_);
    StartCall();
  }

  // Frame `frame` is due (frames come in order).
  void FrameDue(int64_t frame) {
    std::unique_lock<std::mutex> lock(mu_);
    if (released_) return;
    due_ = frame + 1;
    if (!writing_) WriteNext(lock);
  }

  // Cancels the call unless it has ended.
  void Cancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
      stats_.unfinished = true;
    }
    context_.TryCancel();
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      Release(lock);
      return;
    }
    if (next_ < due_) {
      WriteNext(lock);
    } else if (next_ == total_ && total_ > 0 && !closing_) {
      closing_ = true;
      lock.unlock();
      StartWritesDone();
    }
  }

  void OnWritesDoneDone(bool) override {
    std::unique_lock<std::mutex> lock(mu_);
    Release(lock);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the call is ending; OnDone says how
    const Clock::time_point now = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      Record(now);
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.code = StatusCodeName(status.error_code());
      stats_.message = status.error_message();
      stats_.frames_sent = next_;
      done_ = true;
    }
    ended_->Done();  // the runner may destroy this now
  }

  // After OnDone only.
  StreamStats TakeStats() { return std::move(stats_); }

 private:
  // Starts the next frame's write; needs mu_ (released around StartWrite).
  void WriteNext(std::unique_lock<std::mutex>& lock) {
    const int64_t frame = next_++;
    const Clock::time_point now = Clock::now();
    send_time_[static_cast<size_t>(frame)] = now;
    stats_.max_send_lag_us =
        std::max(stats_.max_send_lag_us,
                 Micros(now - start_) -
                     static_cast<double>(FrameDueUs(index_, streams_, frame, fps_)));
    writing_ = true;
    const v1::StreamRequest* unit =
        &(*units_)[static_cast<size_t>(frame % static_cast<int64_t>(units_->size()))];
    lock.unlock();
    StartWrite(unit);
    lock.lock();
  }

  // The writing is over: no Start* follows.
  void Release(std::unique_lock<std::mutex>& lock) {
    if (released_ || total_ == 0) return;
    released_ = true;
    lock.unlock();
    RemoveHold();
    lock.lock();
  }

  void Record(Clock::time_point now) {
    switch (response_.message_case()) {
      case v1::StreamResponse::kStarted:
        stats_.window_frames = response_.started().window_frames();
        stats_.stride_frames = response_.started().stride_frames();
        break;
      case v1::StreamResponse::kWindow: {
        const v1::WindowResult& w = response_.window();
        ++stats_.windows;
        stats_.latency_us.push_back(static_cast<double>(w.latency_us()));
        const v1::Timings& t = w.timings();
        stats_.decode_us_sum += static_cast<double>(t.decode_us());
        stats_.queue_us_sum += static_cast<double>(t.queue_us());
        stats_.compute_us_sum += static_cast<double>(t.compute_us());
        stats_.batch_sum += t.batch_size();
        if (w.last_frame() >= 0 && w.last_frame() < next_) {
          stats_.client_latency_us.push_back(
              Micros(now - send_time_[static_cast<size_t>(w.last_frame())]));
        }
        break;
      }
      case v1::StreamResponse::kEvent: {
        const v1::StreamEvent& e = response_.event();
        stats_.events[v1::StreamEvent::Kind_Name(e.kind())] += e.count();
        if (e.kind() == v1::StreamEvent::WINDOWS_DROPPED) stats_.dropped += e.count();
        break;
      }
      default:
        break;
    }
  }

  v1::VideoClassifier::Stub* const stub_;
  const int index_;
  const int streams_;
  const double fps_;
  const std::vector<v1::StreamRequest>* const units_;
  const v1::StreamRequest open_;
  const int64_t total_;  // frames to push (0: pull)
  Countdown* const ended_;
  grpc::ClientContext context_;
  v1::StreamResponse response_;  // the read in flight
  Clock::time_point start_;

  std::mutex mu_;
  std::vector<Clock::time_point> send_time_;  // by frame, once written
  int64_t next_ = 0;    // frames written (or being written)
  int64_t due_ = 0;     // frames due
  bool writing_ = false;
  bool done_ = false;   // OnDone ran
  bool closing_ = false;
  bool released_ = false;
  StreamStats stats_;
};

void Append(const std::vector<double>& from, std::vector<double>* to) {
  to->insert(to->end(), from.begin(), from.end());
}

}  // namespace

int64_t StreamSummary::failed() const {
  int64_t n = 0;
  for (const auto& [code, count] : ended) {
    if (code != "OK") n += count;
  }
  return n;
}

int64_t FrameDueUs(int stream, int streams, int64_t frame, double fps) {
  const double offset = streams > 0 ? static_cast<double>(stream) / streams : 0;
  return std::llround((static_cast<double>(frame) + offset) * 1e6 / fps);
}

StreamSummary Summarise(const std::vector<const StreamStats*>& stats, double fps) {
  StreamSummary s;
  std::vector<double> latency, client;
  double decode = 0, queue = 0, compute = 0, batch = 0, compute_share_sum = 0;
  for (const StreamStats* st : stats) {
    ++s.streams;
    s.frames_sent += st->frames_sent;
    s.windows += st->windows;
    s.dropped += st->dropped;
    s.max_send_lag_us = std::max(s.max_send_lag_us, st->max_send_lag_us);
    for (const auto& [kind, n] : st->events) s.events[kind] += n;
    ++s.ended[st->code];
    if (st->unfinished) ++s.unfinished;
    Append(st->latency_us, &latency);
    Append(st->client_latency_us, &client);
    decode += st->decode_us_sum;
    queue += st->queue_us_sum;
    compute += st->compute_us_sum;
    batch += st->batch_sum;
    // Each stream's compute against its own window interval.
    if (st->stride_frames > 0) compute_share_sum += st->compute_us_sum / st->stride_frames;
  }
  if (s.windows + s.dropped > 0) {
    s.drop_rate = static_cast<double>(s.dropped) / static_cast<double>(s.windows + s.dropped);
  }
  std::sort(latency.begin(), latency.end());
  std::sort(client.begin(), client.end());
  s.p50_us = Quantile(latency, 0.50);
  s.p99_us = Quantile(latency, 0.99);
  s.max_us = latency.empty() ? 0 : latency.back();
  s.client_count = static_cast<int64_t>(client.size());
  s.client_p50_us = Quantile(client, 0.50);
  s.client_p99_us = Quantile(client, 0.99);
  if (s.windows > 0) {
    const double n = static_cast<double>(s.windows);
    s.mean_decode_us = decode / n;
    s.mean_queue_us = queue / n;
    s.mean_compute_us = compute / n;
    s.mean_batch = batch / n;
    const double frame_us = 1e6 / fps;
    s.decode_share = s.mean_decode_us / frame_us;
    // mean over windows of compute_us / (stride * frame_us)
    s.compute_share = compute_share_sum / n / frame_us;
  }
  return s;
}

bool WithinBudget(const StreamSummary& overall, double budget_us) {
  return overall.failed() == 0 && overall.windows > 0 && overall.dropped == 0 &&
         overall.p99_us <= budget_us;
}

StreamSearch FindMaxStreams(const std::function<bool(int)>& trial, int limit) {
  StreamSearch search;
  auto run = [&](int n) {
    const bool ok = trial(n);
    search.trials.emplace_back(n, ok);
    return ok;
  };
  if (limit < 1) return search;
  int good = 0, bad = 0;
  for (int n = 1;; n = std::min(limit, n * 2)) {
    if (!run(n)) {
      bad = n;
      break;
    }
    good = n;
    if (n == limit) break;
  }
  if (bad == 0) {
    search.max_streams = good;
    return search;
  }
  while (bad - good > 1) {
    const int mid = good + (bad - good) / 2;
    (run(mid) ? good : bad) = mid;
  }
  search.max_streams = good;
  return search;
}

StreamRunResult RunStreams(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                           const StreamRunOptions& options) {
  StreamRunResult result;
  result.streams = options.streams;
  result.fps = options.fps;
  result.seconds = options.seconds;
  const bool push = options.units != nullptr && !options.units->empty();
  const int64_t total = push ? std::llround(options.fps * options.seconds) : 0;

  std::vector<std::unique_ptr<v1::VideoClassifier::Stub>> stubs;
  for (const auto& channel : channels) stubs.push_back(v1::VideoClassifier::NewStub(channel));
  v1::StreamRequest open;
  *open.mutable_open() = options.open;
  if (push) {
    open.mutable_open()->set_input(v1::StreamOpen::H264);
    open.mutable_open()->set_whole_access_units(true);  // one per message
  } else {
    open.mutable_open()->set_source_url(options.source_url);
    open.mutable_open()->mutable_source()->set_replay_speed(1);
  }
  Countdown ended;
  std::vector<std::unique_ptr<StreamCall>> calls;
  for (int s = 0; s < options.streams; ++s) {
    calls.push_back(std::make_unique<StreamCall>(stubs[s % stubs.size()].get(), options, s,
                                                 open, total, &ended));
  }

  result.started = std::chrono::system_clock::now();
  const Clock::time_point start = Clock::now();
  const int n = options.streams;
  if (push) {
    // Every stream opens at its first frame's time.
    for (int64_t frame = 0; frame < total; ++frame) {
      for (int s = 0; s < n; ++s) {
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(FrameDueUs(s, n, frame, options.fps)));
        if (frame == 0) calls[s]->Begin(start);
        calls[s]->FrameDue(frame);
      }
    }
  } else {
    for (int s = 0; s < n; ++s) {
      std::this_thread::sleep_until(start +
                                    std::chrono::microseconds(FrameDueUs(s, n, 0, options.fps)));
      calls[s]->Begin(start);
    }
  }
  const Clock::time_point end = start + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(options.seconds));
  if (!ended.WaitUntil(n, end + options.drain)) {
    for (auto& call : calls) call->Cancel();  // harmless on an ended call
    ended.WaitUntil(n, Clock::time_point::max());
  }
  for (auto& call : calls) result.per_stream.push_back(call->TakeStats());
  std::vector<const StreamStats*> all;
  for (const StreamStats& st : result.per_stream) all.push_back(&st);
  result.overall = Summarise(all, options.fps);
  return result;
}

}  // namespace clipserve::client
