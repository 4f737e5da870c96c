#include "batching/fake_clock.h"

#include <algorithm>

namespace clipserve::batching {

// Lock order: a waiter's own mutex, then mu_. Advance() never holds mu_ while
// it takes a waiter's mutex.

FakeClock::FakeClock() : now_(TimePoint() + std::chrono::hours(1)) {}

TimePoint FakeClock::Now() const {
  std::lock_guard<std::mutex> l(mu_);
  return now_;
}

void FakeClock::WaitUntil(std::condition_variable& cv,
                          std::unique_lock<std::mutex>& lock,
                          TimePoint deadline) {
  Waiter self{&cv, lock.mutex(), deadline};
  {
    std::lock_guard<std::mutex> l(mu_);
    if (deadline <= now_) return;
    waiters_.push_back(&self);
    changed_.notify_all();
  }
  // `lock` stays held from the check above until wait() releases it, and
  // Advance() takes that same mutex before notifying: no wake-up is lost.
  cv.wait(lock);
  std::lock_guard<std::mutex> l(mu_);
  // Absent when Advance() already removed it.
  auto it = std::find(waiters_.begin(), waiters_.end(), &self);
  if (it != waiters_.end()) {
    waiters_.erase(it);
    changed_.notify_all();
  }
}

void FakeClock::Advance(Duration d) {
  // Copies, not Waiter pointers: a woken waiter's Waiter dies with its frame.
  std::vector<std::pair<std::condition_variable*, std::mutex*>> due;
  {
    std::lock_guard<std::mutex> l(mu_);
    now_ += d;
    auto is_due = [&](const Waiter* w) { return w->deadline <= now_; };
    for (const Waiter* w : waiters_) {
      if (is_due(w)) due.emplace_back(w->cv, w->mu);
    }
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), is_due),
                   waiters_.end());
    changed_.notify_all();
  }
  for (auto& [cv, mu] : due) {
    std::lock_guard<std::mutex> l(*mu);
    cv->notify_all();
  }
}

void FakeClock::BlockUntilWaiters(int n) const {
  std::unique_lock<std::mutex> l(mu_);
  changed_.wait(l, [&] { return static_cast<int>(waiters_.size()) >= n; });
}

int FakeClock::waiters() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<int>(waiters_.size());
}

}  // namespace clipserve::batching
