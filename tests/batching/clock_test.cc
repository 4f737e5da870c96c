#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "batching/clock.h"
#include "batching/fake_clock.h"
#include "gtest/gtest.h"

namespace clipserve::batching {
namespace {

using ::std::chrono::microseconds;
using ::std::chrono::milliseconds;

TEST(FakeClockTest, StandsStillUntilAdvanced) {
  FakeClock clock;
  const TimePoint t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(milliseconds(3));
  EXPECT_EQ(clock.Now(), t0 + milliseconds(3));
}

TEST(FakeClockTest, WaitUntilReachedDeadlineReturnsAtOnce) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  clock.WaitUntil(cv, lock, clock.Now());
  clock.WaitUntil(cv, lock, clock.Now() - milliseconds(1));
  EXPECT_EQ(clock.waiters(), 0);
  EXPECT_TRUE(lock.owns_lock());
}

TEST(FakeClockTest, AdvanceWakesWaiterAtItsDeadlineOnly) {
  FakeClock clock;
  const TimePoint deadline = clock.Now() + milliseconds(10);
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};
  std::thread sleeper([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (clock.Now() < deadline) clock.WaitUntil(cv, lock, deadline);
    done = true;
  });
  clock.BlockUntilWaiters(1);
  clock.Advance(milliseconds(10) - microseconds(1));
  EXPECT_EQ(clock.waiters(), 1);  // not woken
  EXPECT_FALSE(done);
  clock.Advance(microseconds(1));
  sleeper.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, NotificationWakesWaiterBeforeItsDeadline) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread sleeper([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) clock.WaitUntil(cv, lock, TimePoint::max());
  });
  clock.BlockUntilWaiters(1);
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  sleeper.join();
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AdvanceWakesEveryDueWaiter) {
  FakeClock clock;
  const TimePoint deadline = clock.Now() + milliseconds(1);
  std::mutex mu;
  std::condition_variable cv;  // shared, as consumers of one queue share it
  std::thread sleepers[3];
  for (std::thread& t : sleepers) {
    t = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (clock.Now() < deadline) clock.WaitUntil(cv, lock, deadline);
    });
  }
  clock.BlockUntilWaiters(3);
  clock.Advance(milliseconds(5));
  for (std::thread& t : sleepers) t.join();
}

TEST(RealClockTest, IsMonotonicAndWaitUntilReturnsByTheDeadline) {
  Clock* clock = Clock::Real();
  ASSERT_NE(clock, nullptr);
  EXPECT_EQ(clock, Clock::Real());
  const TimePoint t0 = clock->Now();
  const TimePoint deadline = t0 + milliseconds(2);
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  // Nobody notifies: only the deadline can end this (spurious wake-ups
  // allowed, hence the loop).
  while (clock->Now() < deadline) clock->WaitUntil(cv, lock, deadline);
  EXPECT_GE(clock->Now(), deadline);
  EXPECT_TRUE(lock.owns_lock());
}

}  // namespace
}  // namespace clipserve::batching
