#include "server/decode_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace clipserve::server {

DecodePool::DecodePool(int threads, size_t max_pending,
                       std::function<void(size_t)> on_waiting)
    : max_pending_(max_pending), on_waiting_(std::move(on_waiting)) {
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
}

DecodePool::~DecodePool() { Shutdown(); }

absl::Status DecodePool::Submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      return absl::UnavailableError("server is shutting down");
    }
    if (jobs_.size() >= max_pending_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "decode queue full: ", jobs_.size(), " videos wait for ",
          workers_.size(), " decoder thread(s) (--decode-queue-size ",
          max_pending_, ")"));
    }
    jobs_.push_back(std::move(job));
    if (on_waiting_) on_waiting_(jobs_.size());
  }
  cv_.notify_one();
  return absl::OkStatus();
}

void DecodePool::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void DecodePool::Work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return closed_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // closed and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (on_waiting_) on_waiting_(jobs_.size());
    }
    job();
  }
}

}  // namespace clipserve::server
