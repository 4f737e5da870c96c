// Time source for the batching library.
//
// Every timing rule of the batcher reads time and sleeps through a Clock, so
// tests can replace real time with a FakeClock (fake_clock.h) and make each
// rule deterministic.
#ifndef CLIPSERVE_BATCHING_CLOCK_H_
#define CLIPSERVE_BATCHING_CLOCK_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace clipserve::batching {

using TimePoint = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual TimePoint Now() const = 0;

  // Blocks on `cv` until it is notified, or until Now() >= deadline, whichever
  // comes first (spurious wake-ups allowed, as with condition_variable).
  // `lock` holds the mutex that the notifier of `cv` also holds.
  // TimePoint::max() waits for a notification only.
  virtual void WaitUntil(std::condition_variable& cv,
                         std::unique_lock<std::mutex>& lock,
                         TimePoint deadline) = 0;

  // The process-wide real clock (std::chrono::steady_clock). Never destroyed.
  static Clock* Real();
};

}  // namespace clipserve::batching

#endif  // CLIPSERVE_BATCHING_CLOCK_H_
