// Test helpers shared by the batching tests.
#ifndef CLIPSERVE_TESTS_BATCHING_TEST_TASK_H_
#define CLIPSERVE_TESTS_BATCHING_TEST_TASK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "batching/batch_queue.h"
#include "batching/task.h"

namespace clipserve::batching::testing {

// A Task that records how, and how many times, it was completed: by Fail()
// from the queue, or by Complete() from whoever received it in a batch.
class TestTask : public Task {
 public:
  explicit TestTask(BatchKey key, int size = 1,
                    TimePoint deadline = TimePoint::max())
      : key_(key), size_(size), deadline_(deadline) {}

  int size() const override { return size_; }
  BatchKey key() const override { return key_; }
  uint32_t priority() const override { return priority_; }
  TimePoint deadline() const override { return deadline_; }
  bool IsCancelled() const override { return cancelled_.load(); }

  void Fail(const absl::Status& status) override { Finish(status); }
  void Complete() { Finish(absl::OkStatus()); }
  void Cancel() { cancelled_.store(true); }
  // Before it is enqueued (default 0, the most urgent). Returns *this.
  TestTask& set_priority(uint32_t priority) {
    priority_ = priority;
    return *this;
  }

  // Times Fail() or Complete() was called; exactly 1 once done.
  int completions() const { return completions_.load(); }
  // The status it was completed with (UNKNOWN before).
  absl::Status status() const {
    std::lock_guard<std::mutex> l(mu_);
    return status_;
  }

 private:
  void Finish(const absl::Status& status) {
    {
      std::lock_guard<std::mutex> l(mu_);
      status_ = status;
    }
    completions_.fetch_add(1);
  }

  const BatchKey key_;
  const int size_;
  const TimePoint deadline_;
  uint32_t priority_ = 0;
  std::atomic<bool> cancelled_{false};
  std::atomic<int> completions_{0};
  mutable std::mutex mu_;
  absl::Status status_ = absl::UnknownError("not completed");
};

inline TestTask* AsTestTask(Task* task) { return static_cast<TestTask*>(task); }

// The tasks of `batch`, in batch order.
inline std::vector<Task*> TasksOf(const Batch& batch) {
  std::vector<Task*> tasks;
  for (const Batch::Entry& e : batch.entries) tasks.push_back(e.task);
  return tasks;
}

// Completes every task of `batch` with OK, as a processor would.
inline void CompleteAll(const Batch& batch) {
  for (const Batch::Entry& e : batch.entries) AsTestTask(e.task)->Complete();
}

// What a stress test planned for one task, and whether Enqueue took it.
struct StressPlan {
  bool expired = false;        // deadline before it is enqueued
  bool cancel_before = false;  // cancelled before it is enqueued
  bool cancel_after = false;   // cancelled racing with the batcher
  bool accepted = false;
};

// A random task for a stress test: key 0..2, size 1..3; 5 % already
// expired, 5 % cancelled before it is enqueued, 5 % to be cancelled while
// the batcher may hold it. Records the plan in *plan.
inline std::unique_ptr<TestTask> MakeStressTask(std::mt19937& rng, StressPlan* plan) {
  const int roll = static_cast<int>(rng() % 100);
  plan->expired = roll < 5;
  plan->cancel_before = roll >= 5 && roll < 10;
  plan->cancel_after = roll >= 10 && roll < 15;
  const TimePoint deadline = plan->expired
                                 ? Clock::Real()->Now() - std::chrono::milliseconds(1)
                                 : TimePoint::max();
  const BatchKey key = rng() % 3;
  const int size = 1 + static_cast<int>(rng() % 3);
  return std::make_unique<TestTask>(key, size, deadline);
}

// Whether Enqueue's refusal `st` of a task planned as `plan` is one the
// contract allows: a full queue, or a task cancelled before it was queued.
inline bool AllowedRefusal(const StressPlan& plan, const absl::Status& st) {
  return st.code() == absl::StatusCode::kResourceExhausted ||
         (plan.cancel_before && st.code() == absl::StatusCode::kCancelled);
}

// Checks that every accepted task completed exactly once with the status its
// plan implies, and that refused ones never completed; `processed` tasks
// were completed OK by the consumers. Returns how many were accepted.
inline int ExpectStressOutcome(const std::vector<StressPlan>& plans,
                               const std::vector<std::unique_ptr<TestTask>>& tasks,
                               int processed) {
  int accepted = 0, failed = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    const StressPlan& plan = plans[i];
    const TestTask& t = *tasks[i];
    EXPECT_FALSE(plan.cancel_before && plan.accepted)
        << "task " << i << " was queued though cancelled";
    if (!plan.accepted) {
      EXPECT_EQ(t.completions(), 0) << "task " << i;
      continue;
    }
    ++accepted;
    EXPECT_EQ(t.completions(), 1) << "task " << i;
    const absl::StatusCode code = t.status().code();
    if (code != absl::StatusCode::kOk) ++failed;
    if (plan.expired) {
      EXPECT_EQ(code, absl::StatusCode::kDeadlineExceeded) << "task " << i;
    } else if (plan.cancel_after) {
      EXPECT_TRUE(code == absl::StatusCode::kOk ||
                  code == absl::StatusCode::kCancelled)
          << "task " << i << ": " << t.status();
    } else {
      EXPECT_EQ(code, absl::StatusCode::kOk) << "task " << i;
    }
  }
  EXPECT_EQ(processed + failed, accepted);
  EXPECT_GT(accepted, 0);
  return accepted;
}

}  // namespace clipserve::batching::testing

#endif  // CLIPSERVE_TESTS_BATCHING_TEST_TASK_H_
