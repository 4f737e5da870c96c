#include "batching/batch_scheduler.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/batching/test_task.h"

namespace clipserve::batching {
namespace {

using ::clipserve::batching::testing::CompleteAll;
using ::clipserve::batching::testing::ExpectStressOutcome;
using ::clipserve::batching::testing::MakeStressTask;
using ::clipserve::batching::testing::StressPlan;
using ::clipserve::batching::testing::TestTask;
using ::std::chrono::hours;
using ::std::chrono::microseconds;
using ::std::chrono::milliseconds;
using ::testing::HasSubstr;

BatchProcessor CompletingProcessor() {
  return [](int, Batch batch) { CompleteAll(batch); };
}

TEST(BatchSchedulerTest, CreateRejectsBadOptions) {
  BatchSchedulerOptions options;
  options.num_instances = 0;
  auto s = BatchScheduler::Create(options, CompletingProcessor());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("num_instances must be >= 1"));

  options.num_instances = 1;
  s = BatchScheduler::Create(options, nullptr);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("processor"));

  options.queue.max_batch_size = 0;
  s = BatchScheduler::Create(options, CompletingProcessor());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("max_batch_size"));

  options.queue.max_batch_size = 4;
  EXPECT_TRUE(BatchScheduler::Create(options, CompletingProcessor()).ok());
}

TEST(BatchSchedulerTest, RunsEveryTaskThroughTheProcessor) {
  BatchSchedulerOptions options;
  options.queue.max_batch_size = 4;
  options.num_instances = 2;
  std::atomic<int> batches{0};
  auto scheduler = BatchScheduler::Create(options, [&](int instance, Batch b) {
    EXPECT_GE(instance, 0);
    EXPECT_LT(instance, 2);
    EXPECT_LE(b.size, 4);
    ++batches;
    CompleteAll(b);
  });
  ASSERT_TRUE(scheduler.ok());
  std::vector<std::unique_ptr<TestTask>> tasks;
  for (int i = 0; i < 100; ++i) {
    tasks.push_back(std::make_unique<TestTask>(i % 2));
    ASSERT_TRUE((*scheduler)->Enqueue(tasks.back().get()).ok());
  }
  (*scheduler)->Shutdown();
  for (auto& t : tasks) {
    EXPECT_EQ(t->completions(), 1);
    EXPECT_TRUE(t->status().ok());
  }
  EXPECT_GE(batches.load(), 25);
}

TEST(BatchSchedulerTest, ShutdownRunsQueuedTasksWithoutWaitingForTheDelay) {
  BatchSchedulerOptions options;
  options.queue.max_batch_size = 8;
  options.queue.max_queue_delay = hours(1);  // real clock
  auto scheduler = BatchScheduler::Create(options, CompletingProcessor());
  ASSERT_TRUE(scheduler.ok());
  std::vector<std::unique_ptr<TestTask>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(std::make_unique<TestTask>(1));
    ASSERT_TRUE((*scheduler)->Enqueue(tasks.back().get()).ok());
  }
  (*scheduler)->Shutdown();
  (*scheduler)->Shutdown();  // idempotent
  for (auto& t : tasks) EXPECT_EQ(t->completions(), 1);
  TestTask late(1);
  EXPECT_EQ((*scheduler)->Enqueue(&late).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*scheduler)->queue().closed());
}

// Records each batch and holds its instance until the test releases it.
class GatedProcessor {
 public:
  void Process(int instance, Batch batch) {
    std::unique_lock<std::mutex> l(mu_);
    const int index = static_cast<int>(sizes_.size());
    sizes_.push_back(batch.size);
    instances_.push_back(instance);
    cv_.notify_all();
    cv_.wait(l, [&] { return released_ > index; });
    l.unlock();
    CompleteAll(batch);
  }
  // Waits until `n` batches have entered Process().
  void AwaitEntered(int n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return static_cast<int>(sizes_.size()) >= n; });
  }
  // Lets the first `n` batches finish.
  void Release(int n) {
    std::lock_guard<std::mutex> l(mu_);
    released_ = n;
    cv_.notify_all();
  }
  std::vector<int> sizes() {
    std::lock_guard<std::mutex> l(mu_);
    return sizes_;
  }
  std::vector<int> instances() {
    std::lock_guard<std::mutex> l(mu_);
    return instances_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> sizes_;
  std::vector<int> instances_;
  int released_ = 0;
};

TEST(BatchSchedulerTest, InstancesRunConcurrentlyAndQueueGrowsWhileBusy) {
  BatchSchedulerOptions options;
  options.queue.max_batch_size = 8;  // delay zero: fire with what is queued
  options.num_instances = 2;
  GatedProcessor gate;
  auto scheduler = BatchScheduler::Create(
      options, [&](int i, Batch b) { gate.Process(i, std::move(b)); });
  ASSERT_TRUE(scheduler.ok());
  BatchScheduler& s = **scheduler;
  std::vector<std::unique_ptr<TestTask>> tasks;
  auto enqueue = [&] {
    tasks.push_back(std::make_unique<TestTask>(1));
    ASSERT_TRUE(s.Enqueue(tasks.back().get()).ok());
  };

  enqueue();
  gate.AwaitEntered(1);  // one instance busy with a batch of 1
  enqueue();
  gate.AwaitEntered(2);  // the other one too: both batches in flight at once
  EXPECT_THAT(gate.instances(), ::testing::UnorderedElementsAre(0, 1));

  for (int i = 0; i < 5; ++i) enqueue();
  EXPECT_EQ(s.queue().queued(), 5u);  // nobody free to take them

  gate.Release(1);  // the first instance comes back and takes all five
  gate.AwaitEntered(3);
  EXPECT_THAT(gate.sizes(), ::testing::ElementsAre(1, 1, 5));
  EXPECT_EQ(s.queue().queued(), 0u);

  gate.Release(3);
  s.Shutdown();
  for (auto& t : tasks) EXPECT_EQ(t->completions(), 1);
}

// Many producers, several instances, real time: every task is completed
// exactly once, and no batch breaks the rules.
TEST(BatchSchedulerTest, StressEveryTaskCompletedExactlyOnce) {
  constexpr int kProducers = 8;
  constexpr int kTasksPerProducer = 2000;
  constexpr int kMaxBatch = 8;
  constexpr int kTasks = kProducers * kTasksPerProducer;

  std::vector<std::unique_ptr<TestTask>> tasks(kTasks);
  std::vector<StressPlan> plans(kTasks);

  std::atomic<int> bad_size{0}, mixed_keys{0}, dead_in_batch{0};
  std::atomic<int> batches{0}, processed{0};
  BatchSchedulerOptions options;
  options.queue.max_batch_size = kMaxBatch;
  options.queue.preferred_batch_sizes = {4};
  options.queue.max_queue_delay = microseconds(100);
  options.queue.max_queue_size = 256;
  options.num_instances = 4;
  auto scheduler = BatchScheduler::Create(options, [&](int, Batch b) {
    int slots = 0;
    for (const Batch::Entry& e : b.entries) {
      slots += e.task->size();
      if (e.task->key() != b.key) ++mixed_keys;
      // Past deadlines are set before enqueueing: never batched.
      if (e.task->deadline() <= b.formed_time) ++dead_in_batch;
    }
    if (slots != b.size || b.size > kMaxBatch || b.entries.empty()) {
      ++bad_size;
    }
    ++batches;
    processed += static_cast<int>(b.entries.size());
    CompleteAll(b);
  });
  ASSERT_TRUE(scheduler.ok());
  BatchScheduler& s = **scheduler;

  std::atomic<int> rejected_other{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::mt19937 rng(1234 + p);
      for (int i = p * kTasksPerProducer; i < (p + 1) * kTasksPerProducer;
           ++i) {
        StressPlan& plan = plans[i];
        tasks[i] = MakeStressTask(rng, &plan);
        TestTask* t = tasks[i].get();
        if (plan.cancel_before) t->Cancel();
        const absl::Status st = s.Enqueue(t);
        plan.accepted = st.ok();
        if (!st.ok() && !AllowedRefusal(plan, st)) {
          ++rejected_other;
        }
        if (plan.cancel_after) t->Cancel();
        if (!st.ok()) std::this_thread::yield();
      }
    });
  }
  for (std::thread& t : producers) t.join();
  s.Shutdown();

  EXPECT_EQ(bad_size.load(), 0);
  EXPECT_EQ(mixed_keys.load(), 0);
  EXPECT_EQ(dead_in_batch.load(), 0);
  EXPECT_EQ(rejected_other.load(), 0);
  const int accepted = ExpectStressOutcome(plans, tasks, processed.load());
  ::testing::Test::RecordProperty("accepted", accepted);
  ::testing::Test::RecordProperty("batches", batches.load());
}

}  // namespace
}  // namespace clipserve::batching
