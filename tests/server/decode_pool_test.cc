#include "server/decode_pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

namespace clipserve::server {
namespace {

// Holds the pool's only worker until released.
class Gate {
 public:
  void Enter() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

TEST(DecodePoolTest, FullQueueRefusesNamingTheFlagAndShutdownRunsWaitingJobs) {
  DecodePool pool(/*threads=*/1, /*max_pending=*/2);
  Gate gate;
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] { gate.Enter(); ++ran; }).ok());
  gate.WaitEntered();  // the worker is busy; the next two wait
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  bool refused_ran = false;
  const absl::Status full = pool.Submit([&] { refused_ran = true; });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(full.message(),
            "decode queue full: 2 videos wait for 1 decoder thread(s) "
            "(--decode-queue-size 2)");
  gate.Open();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 3);  // the running job and both waiting ones
  EXPECT_FALSE(refused_ran);
  const absl::Status after = pool.Submit([&] { refused_ran = true; });
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(refused_ran);
}

TEST(DecodePoolTest, JobsRunOnSeveralWorkersAtOnce) {
  DecodePool pool(/*threads=*/2, /*max_pending=*/8);
  Gate first, second;
  ASSERT_TRUE(pool.Submit([&] { first.Enter(); }).ok());
  ASSERT_TRUE(pool.Submit([&] { second.Enter(); }).ok());
  // Both are inside at the same time, or this would wait forever (ctest's
  // timeout fails it).
  first.WaitEntered();
  second.WaitEntered();
  first.Open();
  second.Open();
  pool.Shutdown();
}

}  // namespace
}  // namespace clipserve::server
