// A Clock for tests: time stands still until the test advances it.
#ifndef CLIPSERVE_BATCHING_FAKE_CLOCK_H_
#define CLIPSERVE_BATCHING_FAKE_CLOCK_H_

#include <condition_variable>
#include <mutex>
#include <vector>

#include "batching/clock.h"

namespace clipserve::batching {

// Thread-safe. Threads blocked in WaitUntil() wake when Advance() moves time to
// or past their deadline (or when their condition variable is notified).
class FakeClock : public Clock {
 public:
  // Starts at an arbitrary fixed time point.
  FakeClock();

  TimePoint Now() const override;
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 TimePoint deadline) override;

  // Moves time forward by `d` and wakes the waiters whose deadline it reaches
  // (it takes each one's mutex to notify it, so call it without holding one).
  // The condition variables and mutexes of those waiters must outlive the
  // call.
  void Advance(Duration d);

  // Blocks until at least `n` threads are inside WaitUntil(). Lets a test wait
  // until the code under test has gone to sleep before advancing time.
  void BlockUntilWaiters(int n) const;

  // Threads asleep inside WaitUntil() now; a thread that Advance() has woken
  // no longer counts, even before it returns.
  int waiters() const;

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mu;
    TimePoint deadline;
  };
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  TimePoint now_;
  std::vector<Waiter*> waiters_;
};

}  // namespace clipserve::batching

#endif  // CLIPSERVE_BATCHING_FAKE_CLOCK_H_
