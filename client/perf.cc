#include "client/perf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "client/clips.h"

namespace clipserve::client {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// One step's calls and bookkeeping. Calls end on gRPC's callback threads;
// everything they touch is guarded by mu_, apart from the progress counters.
class StepRunner {
 public:
  StepRunner(LoadTarget& target, const StepOptions& options)
      : target_(target), options_(options) {}

  StepResult Run();

 private:
  struct Slot {
    std::unique_ptr<CallSlot> call;
    std::optional<grpc::ClientContext> context;  // fresh for each call
    Clock::time_point sent;
    bool in_window = false;
    bool busy = false;
  };

  // Readies `slot` for a call sent now, for an arrival at `arrival` (which
  // places it inside the window or not). Needs mu_.
  void Prepare(Slot* slot, Clock::time_point arrival, Clock::time_point now);
  // Starts the prepared call; without mu_ (its end may run at once).
  void Launch(Slot* slot);
  void OnDone(Slot* slot, const grpc::Status& status);
  Slot* NewSlot();  // needs mu_
  void RunClosedLoop();
  void RunOpenLoop();
  void Drain();
  void ShowProgress();
  StepResult Summarise();

  LoadTarget& target_;
  const StepOptions options_;
  std::chrono::system_clock::time_point started_;
  Clock::time_point start_, window_start_, window_end_;

  std::mutex mu_;
  std::condition_variable idle_;  // outstanding_ fell to 0
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  int outstanding_ = 0;
  bool stopping_ = false;    // the window ended: send nothing more
  bool cancelling_ = false;  // the drain ended: calls still out are cancelled

  // The window's requests (by arrival time).
  int64_t sent_ = 0, ok_ = 0, dropped_ = 0, late_ = 0, unfinished_ = 0;
  int64_t ok_received_ = 0;  // OK responses received inside the window
  std::map<int, int64_t> errors_;  // by gRPC code; named in Summarise()
  std::vector<double> latencies_us_;
  double max_send_lag_us_ = 0;
  int64_t split_count_ = 0;
  double queue_us_ = 0, compute_us_ = 0, decode_us_ = 0, batch_ = 0;
  std::map<int64_t, int64_t> batch_sizes_;

  // Every request of the step, for the progress line.
  std::atomic<int64_t> all_sent_{0}, all_ok_{0}, all_errors_{0};
  std::atomic<bool> finished_{false};
};

StepRunner::Slot* StepRunner::NewSlot() {
  if (!free_.empty()) {
    Slot* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  slots_.push_back(std::make_unique<Slot>());
  slots_.back()->call = target_.NewSlot();
  return slots_.back().get();
}

void StepRunner::Prepare(Slot* slot, Clock::time_point arrival,
                         Clock::time_point now) {
  slot->context.emplace();
  if (options_.timeout.count() > 0) {
    slot->context->set_deadline(std::chrono::system_clock::now() +
                                options_.timeout);
  }
  slot->sent = now;
  slot->in_window = arrival >= window_start_ && arrival < window_end_;
  slot->busy = true;
  ++outstanding_;
  if (slot->in_window) ++sent_;
}

void StepRunner::Launch(Slot* slot) {
  all_sent_.fetch_add(1, std::memory_order_relaxed);
  slot->call->Start(&*slot->context,
                    [this, slot](grpc::Status status) { OnDone(slot, status); });
}

void StepRunner::OnDone(Slot* slot, const grpc::Status& status) {
  const Clock::time_point done = Clock::now();
  (status.ok() ? all_ok_ : all_errors_).fetch_add(1, std::memory_order_relaxed);
  bool again = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --outstanding_;
    if (status.ok() && done >= window_start_ && done < window_end_) ++ok_received_;
    if (slot->in_window) {
      if (done >= window_end_) ++late_;
      if (cancelling_ && status.error_code() == grpc::StatusCode::CANCELLED) {
        ++unfinished_;
      } else if (status.ok()) {
        ++ok_;
        latencies_us_.push_back(Micros(done - slot->sent));
        const ServerSplit split = slot->call->Split();
        if (split.present) {
          ++split_count_;
          queue_us_ += split.queue_us;
          compute_us_ += split.compute_us;
          decode_us_ += split.decode_us;
          batch_ += split.batch_size;
          ++batch_sizes_[split.batch_size];
        }
      } else {
        ++errors_[status.error_code()];
      }
    }
    // Closed loop: the slot's next call follows at once, until the window ends.
    if (options_.mode == LoadMode::kConcurrency && !stopping_ &&
        done < window_end_) {
      Prepare(slot, done, done);
      again = true;
    } else {
      slot->busy = false;
      free_.push_back(slot);
      if (outstanding_ == 0) idle_.notify_all();
    }
  }
  if (again) Launch(slot);
}

void StepRunner::RunClosedLoop() {
  std::vector<Slot*> first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Clock::time_point now = Clock::now();
    for (int i = 0; i < options_.concurrency; ++i) {
      first.push_back(NewSlot());
      Prepare(first.back(), now, now);
    }
  }
  for (Slot* slot : first) Launch(slot);
  std::this_thread::sleep_until(window_end_);
}

void StepRunner::RunOpenLoop() {
  PoissonArrivals arrivals(options_.request_rate, options_.seed);
  Clock::time_point arrival = start_;
  for (;;) {
    arrival += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(arrivals.NextGapSeconds()));
    if (arrival >= window_end_) break;
    std::this_thread::sleep_until(arrival);
    const Clock::time_point now = Clock::now();
    const bool in_window = arrival >= window_start_;
    Slot* slot = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (in_window) max_send_lag_us_ = std::max(max_send_lag_us_, Micros(now - arrival));
      if (outstanding_ >= options_.max_outstanding) {
        if (in_window) ++dropped_;
        continue;
      }
      slot = NewSlot();
      Prepare(slot, arrival, now);
    }
    Launch(slot);
  }
  std::this_thread::sleep_until(window_end_);
}

void StepRunner::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  if (idle_.wait_until(lock, window_end_ + options_.drain,
                       [&] { return outstanding_ == 0; })) {
    return;
  }
  cancelling_ = true;
  for (const auto& slot : slots_) {
    if (slot->busy) slot->context->TryCancel();
  }
  // Cancelled calls end promptly; their callbacks need this object.
  idle_.wait(lock, [&] { return outstanding_ == 0; });
}

void StepRunner::ShowProgress() {
  const Clock::duration period = std::chrono::milliseconds(250);
  Clock::time_point last = Clock::now();
  int64_t last_done = 0;
  double rate = 0;
  std::string line;
  while (!finished_.load()) {
    std::this_thread::sleep_for(period);
    if (finished_.load()) break;
    const Clock::time_point now = Clock::now();
    const int64_t ok = all_ok_.load(), errors = all_errors_.load();
    rate = (ok + errors - last_done) / std::chrono::duration<double>(now - last).count();
    last = now;
    last_done = ok + errors;
    const char* phase = now < window_start_ ? "warm-up" : now < window_end_ ? "window" : "drain";
    std::fprintf(stderr, "\r\033[K%s: %s %.1fs  sent %lld  ok %lld  errors %lld  %.1f req/s",
                 options_.progress_label.c_str(), phase,
                 std::chrono::duration<double>(now - start_).count(),
                 static_cast<long long>(all_sent_.load()), static_cast<long long>(ok),
                 static_cast<long long>(errors), rate);
    std::fflush(stderr);
  }
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

StepResult StepRunner::Run() {
  const double window_s = std::chrono::duration<double>(options_.window).count();
  latencies_us_.reserve(
      options_.mode == LoadMode::kRequestRate
          ? static_cast<size_t>(std::min(options_.request_rate * window_s * 1.25 + 64, 1e7))
          : size_t{1} << 16);
  started_ = std::chrono::system_clock::now();
  start_ = Clock::now();
  window_start_ = start_ + options_.warmup;
  window_end_ = window_start_ + options_.window;
  std::thread progress;
  if (options_.progress) progress = std::thread([this] { ShowProgress(); });
  if (options_.mode == LoadMode::kConcurrency) {
    RunClosedLoop();
  } else {
    RunOpenLoop();
  }
  Drain();
  finished_ = true;
  if (progress.joinable()) progress.join();
  return Summarise();
}

StepResult StepRunner::Summarise() {
  std::lock_guard<std::mutex> lock(mu_);
  StepResult r;
  r.mode = options_.mode;
  r.concurrency = options_.mode == LoadMode::kConcurrency ? options_.concurrency : 0;
  r.offered_rate = options_.mode == LoadMode::kRequestRate ? options_.request_rate : 0;
  r.clips_per_request = target_.clips_per_request();
  r.started = started_;
  r.seconds = std::chrono::duration<double>(options_.window).count();
  r.sent = sent_;
  r.ok = ok_;
  for (const auto& [code, n] : errors_) r.errors[StatusCodeName(code)] += n;
  r.dropped = dropped_;
  r.in_flight_at_window_end = late_;
  r.unfinished = unfinished_;
  r.ok_received = ok_received_;
  r.achieved_rate = sent_ / r.seconds;
  r.requests_per_second = ok_received_ / r.seconds;
  r.clips_per_second = r.requests_per_second * r.clips_per_request;
  r.max_send_lag_us = max_send_lag_us_;
  std::vector<double>& all = latencies_us_;
  std::sort(all.begin(), all.end());
  if (!all.empty()) {
    double sum = 0;
    for (double v : all) sum += v;
    r.min_us = all.front();
    r.mean_us = sum / all.size();
    r.max_us = all.back();
  }
  r.p50_us = Quantile(all, 0.50);
  r.p90_us = Quantile(all, 0.90);
  r.p95_us = Quantile(all, 0.95);
  r.p99_us = Quantile(all, 0.99);
  r.split_count = split_count_;
  if (split_count_ > 0) {
    r.mean_queue_us = queue_us_ / split_count_;
    r.mean_compute_us = compute_us_ / split_count_;
    r.mean_decode_us = decode_us_ / split_count_;
    r.mean_batch_size = batch_ / split_count_;
  }
  r.batch_sizes = batch_sizes_;
  return r;
}

}  // namespace

int64_t StepResult::error_count() const {
  int64_t n = 0;
  for (const auto& [code, count] : errors) n += count;
  return n;
}

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

StepResult RunStep(LoadTarget& target, const StepOptions& options) {
  StepRunner runner(target, options);
  return runner.Run();
}

const char* LoadModeName(LoadMode mode) {
  return mode == LoadMode::kConcurrency ? "concurrency" : "request-rate";
}

}  // namespace clipserve::client
