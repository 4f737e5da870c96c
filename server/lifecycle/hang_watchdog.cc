#include "server/lifecycle/hang_watchdog.h"

#include <algorithm>
#include <utility>

namespace clipserve::server {

HangWatchdog::HangWatchdog(ModelList models, std::chrono::milliseconds limit)
    : models_(std::move(models)), limit_(limit) {
  if (limit_.count() > 0) thread_ = std::thread([this] { Loop(); });
}

HangWatchdog::~HangWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HangWatchdog::Loop() {
  const std::chrono::milliseconds period = std::clamp<std::chrono::milliseconds>(
      limit_ / 4, std::chrono::milliseconds(10), std::chrono::seconds(1));
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    for (const std::shared_ptr<ServedModel>& model : models_()) {
      model->CheckHung(now, limit_);
    }
    lock.lock();
  }
}

}  // namespace clipserve::server
