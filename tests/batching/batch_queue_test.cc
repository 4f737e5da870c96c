#include "batching/batch_queue.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "batching/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/batching/test_task.h"

namespace clipserve::batching {
namespace {

using ::clipserve::batching::testing::CompleteAll;
using ::clipserve::batching::testing::TasksOf;
using ::clipserve::batching::testing::ExpectStressOutcome;
using ::clipserve::batching::testing::MakeStressTask;
using ::clipserve::batching::testing::StressPlan;
using ::clipserve::batching::testing::TestTask;
using ::std::chrono::hours;
using ::std::chrono::microseconds;
using ::std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr BatchKey kA = 7;
constexpr BatchKey kB = 3;  // smaller than kA: order must not follow keys

// Calls queue.NextBatch() once, on its own thread.
class Consumer {
 public:
  explicit Consumer(BatchQueue& queue)
      : queue_(queue),
        result_(std::async(std::launch::async,
                           [&queue] { return queue.NextBatch(); })) {}

  bool returned() const {
    return result_.wait_for(std::chrono::seconds(0)) ==
           std::future_status::ready;
  }

  // What NextBatch() returned. A NextBatch() still blocked after 10 s is a
  // failure; the queue is then closed so that the test ends.
  std::optional<Batch> Get() {
    if (result_.wait_for(std::chrono::seconds(10)) !=
        std::future_status::ready) {
      ADD_FAILURE() << "NextBatch() did not return";
      queue_.Close();
    }
    return result_.get();
  }

 private:
  BatchQueue& queue_;
  std::future<std::optional<Batch>> result_;
};

// NextBatch(), expected to return without waiting on `clock` (time stands
// still, so no delay can pass). Fails the test if it goes to sleep instead.
std::optional<Batch> NextBatchAtOnce(BatchQueue& queue, FakeClock& clock) {
  Consumer consumer(queue);
  while (!consumer.returned() && clock.waiters() == 0) {
    std::this_thread::sleep_for(microseconds(100));
  }
  if (!consumer.returned()) {
    ADD_FAILURE() << "NextBatch() waited instead of firing at once";
    queue.Close();
  }
  return consumer.Get();
}

class BatchQueueTest : public ::testing::Test {
 protected:
  BatchQueueOptions Options(int max_batch_size, Duration delay) {
    BatchQueueOptions o;
    o.max_batch_size = max_batch_size;
    o.max_queue_delay = delay;
    o.clock = &clock_;
    return o;
  }

  FakeClock clock_;
};

TEST_F(BatchQueueTest, FiresAtMaxBatchSizeAtOnce) {
  BatchQueue queue(Options(4, hours(1)));
  std::vector<std::unique_ptr<TestTask>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(std::make_unique<TestTask>(kA));
    ASSERT_TRUE(queue.Enqueue(tasks.back().get()).ok());
  }
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->key, kA);
  EXPECT_EQ(batch->size, 4);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(tasks[0].get(), tasks[1].get(),
                                           tasks[2].get(), tasks[3].get()));
  EXPECT_EQ(batch->formed_time, clock_.Now());
  EXPECT_EQ(batch->entries[0].enqueue_time, clock_.Now());
  EXPECT_EQ(queue.queued(), 1u);
  CompleteAll(*batch);
  queue.Close();
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(tasks[4].get()));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, FiresAtPreferredSizeAtOnce) {
  BatchQueueOptions options = Options(8, hours(1));
  options.preferred_batch_sizes = {3};
  BatchQueue queue(options);
  TestTask t1(kA), t2(kA), t3(kA);
  ASSERT_TRUE(queue.Enqueue(&t1).ok());
  ASSERT_TRUE(queue.Enqueue(&t2).ok());
  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);  // two tasks: not ready
  EXPECT_FALSE(consumer.returned());
  ASSERT_TRUE(queue.Enqueue(&t3).ok());  // reaches 3: ready without time
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 3);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2, &t3));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, PreferredSizeCapsTheBatchAtTheLargestReached) {
  BatchQueueOptions options = Options(8, hours(1));
  options.preferred_batch_sizes = {4, 2};
  BatchQueue queue(options);
  std::vector<std::unique_ptr<TestTask>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(std::make_unique<TestTask>(kA));
    ASSERT_TRUE(queue.Enqueue(tasks.back().get()).ok());
  }
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 4);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(tasks[0].get(), tasks[1].get(),
                                           tasks[2].get(), tasks[3].get()));
  CompleteAll(*batch);

  // One left: below every preferred size, so it waits.
  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  tasks.push_back(std::make_unique<TestTask>(kA));
  ASSERT_TRUE(queue.Enqueue(tasks.back().get()).ok());  // 2: preferred
  batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(tasks[4].get(), tasks[5].get()));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, WaitsMaxQueueDelayThenFiresPartialBatch) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(4, delay));
  TestTask t1(kA), t2(kA);
  const TimePoint start = clock_.Now();
  ASSERT_TRUE(queue.Enqueue(&t1).ok());
  ASSERT_TRUE(queue.Enqueue(&t2).ok());

  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  clock_.Advance(delay - microseconds(1));
  // Not woken: still asleep, no batch.
  EXPECT_EQ(clock_.waiters(), 1);
  EXPECT_FALSE(consumer.returned());

  clock_.Advance(microseconds(1));
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 2);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2));
  EXPECT_EQ(batch->formed_time, start + delay);
  EXPECT_EQ(batch->entries[0].enqueue_time, start);
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, ConsumerWaitingOnEmptyQueueTakesLaterTaskAfterDelay) {
  const Duration delay = milliseconds(5);
  BatchQueue queue(Options(4, delay));
  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);  // nothing queued: waits for a notification
  TestTask t1(kA);
  ASSERT_TRUE(queue.Enqueue(&t1).ok());
  // Whether the consumer wakes to re-plan before or after this, the batch
  // comes once the delay has passed.
  clock_.Advance(delay);
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, ZeroDelayFiresAtOnceWithWhateverIsQueued) {
  BatchQueue queue(Options(8, Duration::zero()));
  TestTask t1(kA), t2(kA), t3(kA);
  ASSERT_TRUE(queue.Enqueue(&t1).ok());
  ASSERT_TRUE(queue.Enqueue(&t2).ok());
  ASSERT_TRUE(queue.Enqueue(&t3).ok());
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 3);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2, &t3));
  CompleteAll(*batch);

  // A consumer asleep on the empty queue wakes for the next task.
  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  TestTask t4(kA);
  ASSERT_TRUE(queue.Enqueue(&t4).ok());
  batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t4));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, DifferentKeysFormSeparateBatches) {
  BatchQueue queue(Options(4, Duration::zero()));
  TestTask a1(kA), b1(kB), a2(kA), b2(kB);
  for (TestTask* t : {&a1, &b1, &a2, &b2}) ASSERT_TRUE(queue.Enqueue(t).ok());
  std::optional<Batch> first = NextBatchAtOnce(queue, clock_);
  std::optional<Batch> second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(first->key, kA);  // a1 arrived first
  EXPECT_THAT(TasksOf(*first), ElementsAre(&a1, &a2));
  EXPECT_EQ(second->key, kB);
  EXPECT_THAT(TasksOf(*second), ElementsAre(&b1, &b2));
  EXPECT_EQ(queue.queued(), 0u);
  CompleteAll(*first);
  CompleteAll(*second);
}

TEST_F(BatchQueueTest, ReadyKeysGoInArrivalOrderOfTheirOldestTask) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(2, delay));
  // Both keys become ready by the delay; B's oldest task is older.
  TestTask b1(kB), a1(kA);
  ASSERT_TRUE(queue.Enqueue(&b1).ok());
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(queue.Enqueue(&a1).ok());
  clock_.Advance(milliseconds(20));
  std::optional<Batch> first = NextBatchAtOnce(queue, clock_);
  std::optional<Batch> second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_THAT(TasksOf(*first), ElementsAre(&b1));
  EXPECT_THAT(TasksOf(*second), ElementsAre(&a1));
  CompleteAll(*first);
  CompleteAll(*second);

  // Both ready by size, at the same time point: arrival order still decides.
  TestTask a2(kA), b2(kB), a3(kA), b3(kB);
  for (TestTask* t : {&a2, &b2, &b3, &a3}) ASSERT_TRUE(queue.Enqueue(t).ok());
  first = NextBatchAtOnce(queue, clock_);
  second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_THAT(TasksOf(*first), ElementsAre(&a2, &a3));
  EXPECT_THAT(TasksOf(*second), ElementsAre(&b2, &b3));
  CompleteAll(*first);
  CompleteAll(*second);
}

TEST_F(BatchQueueTest, FullKeyDoesNotStarveOlderPartialKey) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(2, delay));
  const TimePoint start = clock_.Now();
  TestTask old_task(kB);
  ASSERT_TRUE(queue.Enqueue(&old_task).ok());
  std::vector<std::unique_ptr<TestTask>> refills;
  for (int round = 0;; ++round) {
    ASSERT_LT(round, 20) << "the partial key starved";
    // Key A is refilled to a full batch every round.
    for (int i = 0; i < 2; ++i) {
      refills.push_back(std::make_unique<TestTask>(kA));
      ASSERT_TRUE(queue.Enqueue(refills.back().get()).ok());
    }
    std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
    ASSERT_TRUE(batch.has_value());
    CompleteAll(*batch);
    if (clock_.Now() - start < delay) {
      EXPECT_EQ(batch->key, kA) << "round " << round;
    } else {
      // Its delay has passed and its task is older than A's: it goes first.
      EXPECT_EQ(batch->key, kB) << "round " << round;
      EXPECT_EQ(round, 10);
      break;
    }
    clock_.Advance(milliseconds(1));
  }
  queue.Close();
  while (std::optional<Batch> batch = NextBatchAtOnce(queue, clock_)) {
    CompleteAll(*batch);
  }
}

TEST_F(BatchQueueTest, MultiSlotTaskCountsItsSlotsAndIsNeverSplit) {
  BatchQueue queue(Options(4, hours(1)));
  TestTask three(kA, 3), one(kA, 1);
  ASSERT_TRUE(queue.Enqueue(&three).ok());
  ASSERT_TRUE(queue.Enqueue(&one).ok());  // 3 + 1 = 4 slots: full
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 4);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&three, &one));
  CompleteAll(*batch);

  // 3 + 2 slots: ready (over max), but the 2 does not fit next to the 3 and
  // is not split: it stays for the next batch.
  TestTask three_b(kA, 3), two(kA, 2);
  ASSERT_TRUE(queue.Enqueue(&three_b).ok());
  ASSERT_TRUE(queue.Enqueue(&two).ok());
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 3);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&three_b));
  EXPECT_EQ(queue.queued(), 1u);
  CompleteAll(*batch);

  TestTask two_b(kA, 2);
  ASSERT_TRUE(queue.Enqueue(&two_b).ok());  // 2 + 2: full
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 4);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&two, &two_b));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, TaskLargerThanMaxBatchSizeIsInvalidArgument) {
  BatchQueue queue(Options(4, hours(1)));
  TestTask big(kA, 5);
  absl::Status s = queue.Enqueue(&big);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("5 clips exceeds max_batch_size 4"));
  TestTask empty(kA, 0);
  EXPECT_EQ(queue.Enqueue(&empty).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue.queued(), 0u);
  // Not queued, so not completed: the caller still owns that.
  EXPECT_EQ(big.completions(), 0);
  EXPECT_EQ(empty.completions(), 0);
}

TEST_F(BatchQueueTest, FullQueueIsResourceExhaustedNamingTheLimit) {
  BatchQueueOptions options = Options(8, hours(1));
  options.max_queue_size = 3;
  BatchQueue queue(options);
  TestTask t1(kA), t2(kB), t3(kA, 2), t4(kA);
  ASSERT_TRUE(queue.Enqueue(&t1).ok());
  ASSERT_TRUE(queue.Enqueue(&t2).ok());
  ASSERT_TRUE(queue.Enqueue(&t3).ok());  // limit counts tasks, not slots
  absl::Status s = queue.Enqueue(&t4);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("max_queue_size 3"));
  EXPECT_EQ(queue.queued(), 3u);
  EXPECT_EQ(t4.completions(), 0);
  queue.Close();
  while (std::optional<Batch> batch = NextBatchAtOnce(queue, clock_)) {
    CompleteAll(*batch);
  }
  for (TestTask* t : {&t1, &t2, &t3}) EXPECT_EQ(t->completions(), 1);
}

TEST_F(BatchQueueTest, PurgingExpiredAndCancelledTasksFreesRoom) {
  BatchQueueOptions options = Options(8, hours(1));
  options.max_queue_size = 2;
  BatchQueue queue(options);
  TestTask expiring(kA, 1, clock_.Now() + milliseconds(5));
  TestTask live(kA);
  ASSERT_TRUE(queue.Enqueue(&expiring).ok());
  ASSERT_TRUE(queue.Enqueue(&live).ok());
  TestTask t3(kA);
  EXPECT_EQ(queue.Enqueue(&t3).code(), absl::StatusCode::kResourceExhausted);

  clock_.Advance(milliseconds(5));
  ASSERT_TRUE(queue.Enqueue(&t3).ok());  // the expired task made room
  EXPECT_EQ(expiring.completions(), 1);
  EXPECT_EQ(expiring.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(queue.queued(), 2u);

  TestTask t4(kB);
  live.Cancel();
  ASSERT_TRUE(queue.Enqueue(&t4).ok());  // the cancelled one made room
  EXPECT_EQ(live.completions(), 1);
  EXPECT_EQ(live.status().code(), absl::StatusCode::kCancelled);

  queue.Close();
  while (std::optional<Batch> batch = NextBatchAtOnce(queue, clock_)) {
    CompleteAll(*batch);
  }
  EXPECT_EQ(t3.completions(), 1);
  EXPECT_EQ(t4.completions(), 1);
}

TEST_F(BatchQueueTest, ExpiredTaskIsFailedAndTakesNoSlot) {
  BatchQueue queue(Options(3, milliseconds(20)));
  TestTask t1(kA);
  TestTask expiring(kA, 1, clock_.Now() + microseconds(12300));
  TestTask t2(kA), t3(kA);
  for (TestTask* t : {&t1, &expiring, &t2}) ASSERT_TRUE(queue.Enqueue(t).ok());
  clock_.Advance(microseconds(12300));
  ASSERT_TRUE(queue.Enqueue(&t3).ok());
  // Four queued, one dead: the three live ones make a full batch.
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 3);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2, &t3));
  CompleteAll(*batch);
  EXPECT_EQ(expiring.completions(), 1);
  EXPECT_EQ(expiring.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(expiring.status().message(),
            "deadline exceeded after waiting 12.3 ms in the queue");
  EXPECT_EQ(queue.queued(), 0u);
}

TEST_F(BatchQueueTest, ExpiredTaskIsAnsweredAtItsDeadlineNotAfterTheDelay) {
  const Duration delay = milliseconds(100);
  BatchQueue queue(Options(4, delay));
  TestTask keeper(kA);
  TestTask expiring(kA, 1, clock_.Now() + milliseconds(20));
  ASSERT_TRUE(queue.Enqueue(&keeper).ok());
  ASSERT_TRUE(queue.Enqueue(&expiring).ok());

  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  clock_.Advance(milliseconds(20));
  // The consumer wakes at the deadline, fails the task, and sleeps again
  // until the delay of the live one.
  clock_.BlockUntilWaiters(1);
  EXPECT_EQ(expiring.completions(), 1);
  EXPECT_EQ(expiring.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(consumer.returned());
  EXPECT_EQ(queue.queued(), 1u);

  clock_.Advance(delay - milliseconds(20));
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&keeper));
  CompleteAll(*batch);
}

// Waits (real time, bounded) for another thread to complete `task`.
bool Completed(const TestTask& task) {
  for (int i = 0; i < 10000 && task.completions() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return task.completions() == 1;
}

TEST_F(BatchQueueTest, ExpiryThreadFailsTasksAtTheirDeadlineWithNoConsumer) {
  // No consumer at all (as when every instance is busy): only the expiry
  // thread answers expired tasks, each at its deadline.
  BatchQueue queue(Options(4, hours(1)));
  TestTask keeper(kA);
  TestTask later(kA, 1, clock_.Now() + milliseconds(100));
  ASSERT_TRUE(queue.Enqueue(&keeper).ok());
  ASSERT_TRUE(queue.Enqueue(&later).ok());
  std::thread expiry([&] { queue.ExpireUntilClosed(); });
  clock_.BlockUntilWaiters(1);  // asleep until `later`'s deadline
  clock_.Advance(milliseconds(99));
  EXPECT_EQ(later.completions(), 0);
  clock_.Advance(milliseconds(1));
  clock_.BlockUntilWaiters(1);  // woke, failed it, asleep again
  EXPECT_EQ(later.completions(), 1);
  EXPECT_EQ(later.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(later.status().message(),
            "deadline exceeded after waiting 100.0 ms in the queue");
  EXPECT_EQ(queue.queued(), 1u);

  // A task with an earlier deadline than the thread sleeps for wakes it.
  TestTask soon(kB, 1, clock_.Now() + milliseconds(5));
  ASSERT_TRUE(queue.Enqueue(&soon).ok());
  clock_.Advance(milliseconds(5));
  ASSERT_TRUE(Completed(soon));
  EXPECT_EQ(soon.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(keeper.completions(), 0);
  EXPECT_EQ(queue.queued(), 1u);

  queue.Close();
  expiry.join();  // returns once closed
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&keeper));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, SweepFailsCancelledTasksAtOnceWhileTheirBatchCannotForm) {
  // A batch of 4 after an hour: nothing will reach these tasks for long.
  BatchQueue queue(Options(4, hours(1)));
  TestTask keeper(kA), gone(kA), other(kB), also_gone(kB);
  for (TestTask* t : {&keeper, &gone, &other, &also_gone}) {
    ASSERT_TRUE(queue.Enqueue(t).ok());
  }
  std::thread expiry([&] { queue.ExpireUntilClosed(); });
  clock_.BlockUntilWaiters(1);
  // Cancelled, but not yet swept: still queued.
  gone.Cancel();
  also_gone.Cancel();
  EXPECT_EQ(queue.queued(), 4u);
  // Asked to, the expiry thread fails the cancelled ones of every key now,
  // with no time passing, and leaves the rest queued.
  queue.SweepCancelled();
  ASSERT_TRUE(Completed(gone));
  ASSERT_TRUE(Completed(also_gone));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(gone.status().message(), "request cancelled before it was computed");
  EXPECT_EQ(also_gone.status().code(), absl::StatusCode::kCancelled);
  clock_.BlockUntilWaiters(1);  // asleep again
  EXPECT_EQ(queue.queued(), 2u);
  EXPECT_EQ(keeper.completions(), 0);
  EXPECT_EQ(other.completions(), 0);

  // The freed slot counts: three more fill key A's batch of 4.
  TestTask a2(kA), a3(kA), a4(kA);
  for (TestTask* t : {&a2, &a3, &a4}) ASSERT_TRUE(queue.Enqueue(t).ok());
  // (The expiry thread sleeps on the clock: NextBatchAtOnce cannot tell.)
  std::optional<Batch> batch = Consumer(queue).Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&keeper, &a2, &a3, &a4));
  CompleteAll(*batch);

  queue.Close();
  expiry.join();
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&other));
  CompleteAll(*batch);
  EXPECT_EQ(gone.completions(), 1);
  EXPECT_EQ(also_gone.completions(), 1);
}

TEST_F(BatchQueueTest, AnAlreadyCancelledTaskIsRefusedNotQueued) {
  BatchQueue queue(Options(4, hours(1)));
  TestTask cancelled(kA);
  cancelled.Cancel();
  const absl::Status s = queue.Enqueue(&cancelled);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(s.message(), "request cancelled before it was queued");
  EXPECT_EQ(queue.queued(), 0u);
  EXPECT_EQ(cancelled.completions(), 0) << "the caller completes a refused task";
}

TEST_F(BatchQueueTest, CancelledTaskIsFailedAndTakesNoSlot) {
  BatchQueue queue(Options(8, Duration::zero()));
  TestTask t1(kA), cancelled(kA), t2(kA);
  TestTask past(kA, 1, clock_.Now());  // deadline reached already
  for (TestTask* t : {&t1, &cancelled, &past, &t2}) {
    ASSERT_TRUE(queue.Enqueue(t).ok());
  }
  cancelled.Cancel();
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 2);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2));
  CompleteAll(*batch);
  EXPECT_EQ(cancelled.completions(), 1);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(past.completions(), 1);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(BatchQueueTest, DeadTasksDoNotMakeABatchReady) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(4, delay));
  TestTask t1(kA), cancelled(kA), t2(kA), t3(kA);
  for (TestTask* t : {&t1, &cancelled, &t2}) ASSERT_TRUE(queue.Enqueue(t).ok());
  cancelled.Cancel();
  ASSERT_TRUE(queue.Enqueue(&t3).ok());  // 4 queued, but 3 live: not full

  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  EXPECT_FALSE(consumer.returned());
  // Failed when the batcher reached it, before it went to sleep.
  EXPECT_EQ(cancelled.completions(), 1);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(queue.queued(), 3u);

  clock_.Advance(delay);
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&t1, &t2, &t3));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, BatchOfOnlyDeadTasksIsNeverReturned) {
  BatchQueue queue(Options(4, Duration::zero()));
  TestTask c1(kA), c2(kA), live(kA);
  ASSERT_TRUE(queue.Enqueue(&c1).ok());
  ASSERT_TRUE(queue.Enqueue(&c2).ok());
  c1.Cancel();
  c2.Cancel();
  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);  // dropped both, then slept on the empty queue
  EXPECT_EQ(c1.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(c2.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(queue.queued(), 0u);
  ASSERT_TRUE(queue.Enqueue(&live).ok());
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&live));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, CloseRejectsNewTasksWithUnavailable) {
  BatchQueue queue(Options(4, hours(1)));
  EXPECT_FALSE(queue.closed());
  queue.Close();
  queue.Close();  // idempotent
  EXPECT_TRUE(queue.closed());
  TestTask t(kA);
  absl::Status s = queue.Enqueue(&t);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("shutting down"));
  EXPECT_EQ(t.completions(), 0);
}

TEST_F(BatchQueueTest, CloseDrainsQueuedTasksAtOnceInFullBatches) {
  BatchQueue queue(Options(2, hours(1)));
  TestTask a1(kA), a2(kA), a3(kA), b1(kB);
  for (TestTask* t : {&a1, &b1, &a2, &a3}) ASSERT_TRUE(queue.Enqueue(t).ok());
  queue.Close();
  std::vector<std::vector<Task*>> batches;
  while (std::optional<Batch> batch = NextBatchAtOnce(queue, clock_)) {
    batches.push_back(TasksOf(*batch));
    CompleteAll(*batch);
  }
  EXPECT_THAT(batches, ElementsAre(ElementsAre(&a1, &a2), ElementsAre(&b1),
                                   ElementsAre(&a3)));
  EXPECT_FALSE(NextBatchAtOnce(queue, clock_).has_value());
}

TEST_F(BatchQueueTest, CloseWakesEveryBlockedConsumer) {
  BatchQueue queue(Options(4, hours(1)));
  TestTask t(kA);
  ASSERT_TRUE(queue.Enqueue(&t).ok());
  Consumer c1(queue), c2(queue);
  clock_.BlockUntilWaiters(2);
  queue.Close();
  std::optional<Batch> b1 = c1.Get();
  std::optional<Batch> b2 = c2.Get();
  // One gets the queued task, the other learns the queue is done.
  ASSERT_NE(b1.has_value(), b2.has_value());
  const Batch& batch = b1.has_value() ? *b1 : *b2;
  EXPECT_THAT(TasksOf(batch), ElementsAre(&t));
  CompleteAll(batch);
}

TEST_F(BatchQueueTest, DestructorFailsLeftoversWithUnavailable) {
  auto queue = std::make_unique<BatchQueue>(Options(4, hours(1)));
  TestTask t1(kA), t2(kB);
  ASSERT_TRUE(queue->Enqueue(&t1).ok());
  ASSERT_TRUE(queue->Enqueue(&t2).ok());
  queue.reset();
  for (TestTask* t : {&t1, &t2}) {
    EXPECT_EQ(t->completions(), 1);
    EXPECT_EQ(t->status().code(), absl::StatusCode::kUnavailable);
  }
}

TEST_F(BatchQueueTest, UrgentTaskOvertakesLessUrgentTasksOfItsKey) {
  BatchQueue queue(Options(4, hours(1)));
  TestTask low1(kA), low2(kA), urgent(kA), mid(kA);
  low1.set_priority(2);
  low2.set_priority(2);
  urgent.set_priority(0);
  mid.set_priority(1);
  const TimePoint start = clock_.Now();
  for (TestTask* t : {&low1, &low2, &urgent, &mid}) {
    ASSERT_TRUE(queue.Enqueue(t).ok());
    clock_.Advance(milliseconds(1));
  }
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 4);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&urgent, &mid, &low1, &low2));
  // Each entry keeps its own arrival time.
  EXPECT_EQ(batch->entries[0].enqueue_time, start + milliseconds(2));
  EXPECT_EQ(batch->entries[1].enqueue_time, start + milliseconds(3));
  EXPECT_EQ(batch->entries[2].enqueue_time, start);
  EXPECT_EQ(batch->entries[3].enqueue_time, start + milliseconds(1));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, EqualPrioritiesKeepArrivalOrder) {
  BatchQueue queue(Options(6, hours(1)));
  TestTask a(kA), b(kA), c(kA), d(kA), e(kA), f(kA);
  for (TestTask* t : {&a, &c, &e}) t->set_priority(1);
  for (TestTask* t : {&b, &d, &f}) t->set_priority(0);
  for (TestTask* t : {&a, &b, &c, &d, &e, &f}) {
    ASSERT_TRUE(queue.Enqueue(t).ok());
  }
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&b, &d, &f, &a, &c, &e));
  CompleteAll(*batch);

  // One priority throughout, not the most urgent: plain arrival order.
  std::vector<std::unique_ptr<TestTask>> tasks;
  for (int i = 0; i < 6; ++i) {
    tasks.push_back(std::make_unique<TestTask>(kA));
    tasks.back()->set_priority(7);
    ASSERT_TRUE(queue.Enqueue(tasks.back().get()).ok());
  }
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch),
              ElementsAre(tasks[0].get(), tasks[1].get(), tasks[2].get(),
                          tasks[3].get(), tasks[4].get(), tasks[5].get()));
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, DelayCountsFromTheOldestTaskNotFromTheUrgentFront) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(4, delay));
  const TimePoint start = clock_.Now();
  TestTask old_task(kA), urgent(kA);
  old_task.set_priority(5);
  urgent.set_priority(0);
  ASSERT_TRUE(queue.Enqueue(&old_task).ok());
  clock_.Advance(milliseconds(6));
  ASSERT_TRUE(queue.Enqueue(&urgent).ok());  // in front, but newer

  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  clock_.Advance(milliseconds(4) - microseconds(1));
  EXPECT_EQ(clock_.waiters(), 1);
  EXPECT_FALSE(consumer.returned());
  clock_.Advance(microseconds(1));  // old_task has waited the delay
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&urgent, &old_task));
  EXPECT_EQ(batch->formed_time, start + delay);
  CompleteAll(*batch);

  // The oldest live task may itself be one that overtook, and not be the
  // front: here the task it overtook is cancelled, so the delay counts from
  // y, queued behind a newer, more urgent z.
  const TimePoint t0 = clock_.Now();
  TestTask x(kA), y(kA), z(kA), w(kA);
  x.set_priority(5);
  y.set_priority(1);
  z.set_priority(0);
  w.set_priority(5);
  ASSERT_TRUE(queue.Enqueue(&x).ok());
  clock_.Advance(milliseconds(2));
  ASSERT_TRUE(queue.Enqueue(&y).ok());  // overtakes x
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(queue.Enqueue(&z).ok());  // overtakes y and x
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(queue.Enqueue(&w).ok());  // behind x
  x.Cancel();
  Consumer consumer2(queue);
  clock_.BlockUntilWaiters(1);
  EXPECT_EQ(x.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(queue.queued(), 3u);
  clock_.Advance(milliseconds(8) - microseconds(1));  // y's delay, almost
  EXPECT_EQ(clock_.waiters(), 1);
  EXPECT_FALSE(consumer2.returned());
  clock_.Advance(microseconds(1));
  batch = consumer2.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&z, &y, &w));
  EXPECT_EQ(batch->formed_time, t0 + milliseconds(2) + delay);
  CompleteAll(*batch);
}

TEST_F(BatchQueueTest, MoreUrgentReadyKeyGoesFirst) {
  BatchQueue queue(Options(2, Duration::zero()));  // every key ready at once
  TestTask b1(kB), b2(kB), a1(kA), a2(kA);
  b1.set_priority(1);
  b2.set_priority(1);
  a1.set_priority(3);
  a2.set_priority(0);
  // B's tasks arrived first, but A holds the most urgent task.
  for (TestTask* t : {&b1, &b2, &a1, &a2}) ASSERT_TRUE(queue.Enqueue(t).ok());
  std::optional<Batch> first = NextBatchAtOnce(queue, clock_);
  std::optional<Batch> second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->key, kA);
  EXPECT_THAT(TasksOf(*first), ElementsAre(&a2, &a1));
  EXPECT_THAT(TasksOf(*second), ElementsAre(&b1, &b2));
  CompleteAll(*first);
  CompleteAll(*second);

  // Equally urgent keys: the one whose most urgent task arrived first goes
  // first, even if the other holds an older, less urgent task (else a key
  // with a waiting low-priority task would starve others at the top level).
  TestTask a_low(kA), b_top(kB), a_top(kA);
  a_low.set_priority(5);
  b_top.set_priority(0);
  a_top.set_priority(0);
  for (TestTask* t : {&a_low, &b_top, &a_top}) {
    ASSERT_TRUE(queue.Enqueue(t).ok());
  }
  first = NextBatchAtOnce(queue, clock_);
  second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_THAT(TasksOf(*first), ElementsAre(&b_top));
  EXPECT_THAT(TasksOf(*second), ElementsAre(&a_top, &a_low));
  CompleteAll(*first);
  CompleteAll(*second);
}

TEST_F(BatchQueueTest, MoreUrgentKeyReadyBySizeGoesBeforeOlderKeyReadyByDelay) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(2, delay));
  TestTask b1(kB), a1(kA), a2(kA);
  b1.set_priority(1);
  ASSERT_TRUE(queue.Enqueue(&b1).ok());
  clock_.Advance(delay);  // B ready by the delay
  for (TestTask* t : {&a1, &a2}) ASSERT_TRUE(queue.Enqueue(t).ok());  // full
  std::optional<Batch> first = NextBatchAtOnce(queue, clock_);
  std::optional<Batch> second = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_THAT(TasksOf(*first), ElementsAre(&a1, &a2));
  EXPECT_THAT(TasksOf(*second), ElementsAre(&b1));
  CompleteAll(*first);
  CompleteAll(*second);
}

TEST_F(BatchQueueTest, FullBatchTakesUrgentTasksFirstAndLeavesTheRest) {
  BatchQueue queue(Options(3, hours(1)));
  TestTask low1(kA), low2(kA), urgent1(kA), urgent2(kA);
  low1.set_priority(1);
  low2.set_priority(1);
  ASSERT_TRUE(queue.Enqueue(&low1).ok());
  ASSERT_TRUE(queue.Enqueue(&low2).ok());
  ASSERT_TRUE(queue.Enqueue(&urgent1).ok());
  ASSERT_TRUE(queue.Enqueue(&urgent2).ok());  // 4 slots: full
  std::optional<Batch> batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->size, 3);
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&urgent1, &urgent2, &low1));
  EXPECT_EQ(queue.queued(), 1u);
  CompleteAll(*batch);

  // A multi-slot urgent task goes first; the less urgent one left behind
  // does not fit next to it and waits for the next batch.
  TestTask low3(kA), urgent3(kA, 3);
  low3.set_priority(1);
  ASSERT_TRUE(queue.Enqueue(&low3).ok());
  ASSERT_TRUE(queue.Enqueue(&urgent3).ok());
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&urgent3));
  EXPECT_EQ(queue.queued(), 2u);
  CompleteAll(*batch);

  queue.Close();
  batch = NextBatchAtOnce(queue, clock_);
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&low2, &low3));
  CompleteAll(*batch);
  EXPECT_FALSE(NextBatchAtOnce(queue, clock_).has_value());
}

TEST_F(BatchQueueTest, DeadTasksAmongPrioritiesAreFailedAndTakeNoSlot) {
  const Duration delay = milliseconds(10);
  BatchQueue queue(Options(4, delay));
  const TimePoint start = clock_.Now();
  // The oldest task expires behind urgent ones: it must not start the delay.
  TestTask old_task(kA, 1, start + milliseconds(5));
  TestTask mid(kA), urgent(kA), doomed(kA);
  old_task.set_priority(3);
  mid.set_priority(3);
  ASSERT_TRUE(queue.Enqueue(&old_task).ok());
  clock_.Advance(milliseconds(2));
  ASSERT_TRUE(queue.Enqueue(&mid).ok());
  clock_.Advance(milliseconds(2));
  ASSERT_TRUE(queue.Enqueue(&urgent).ok());
  ASSERT_TRUE(queue.Enqueue(&doomed).ok());
  doomed.Cancel();

  Consumer consumer(queue);
  clock_.BlockUntilWaiters(1);
  clock_.Advance(milliseconds(1));  // old_task's deadline
  clock_.BlockUntilWaiters(1);      // failed it, asleep again
  EXPECT_EQ(old_task.completions(), 1);
  EXPECT_EQ(old_task.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(consumer.returned());
  // Now mid is the oldest: ready 10 ms after it arrived, not after old_task.
  clock_.Advance(milliseconds(7) - microseconds(1));
  EXPECT_EQ(clock_.waiters(), 1);
  EXPECT_FALSE(consumer.returned());
  clock_.Advance(microseconds(1));
  std::optional<Batch> batch = consumer.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&urgent, &mid));
  EXPECT_EQ(batch->formed_time, start + milliseconds(2) + delay);
  CompleteAll(*batch);
  EXPECT_EQ(doomed.completions(), 1);
  EXPECT_EQ(doomed.status().code(), absl::StatusCode::kCancelled);

  // Dead urgent tasks in front neither count towards a full batch nor take
  // its slots: the two live, less urgent tasks fill it.
  BatchQueue queue2(Options(2, hours(1)));
  TestTask low1(kA), low2(kA), cancelled(kA);
  TestTask past(kA, 1, clock_.Now());  // deadline reached already
  low1.set_priority(1);
  low2.set_priority(1);
  for (TestTask* t : {&low1, &cancelled, &past}) {
    ASSERT_TRUE(queue2.Enqueue(t).ok());
  }
  cancelled.Cancel();
  Consumer consumer2(queue2);
  clock_.BlockUntilWaiters(1);  // one live task: not ready
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(queue2.Enqueue(&low2).ok());
  batch = consumer2.Get();
  ASSERT_TRUE(batch.has_value());
  EXPECT_THAT(TasksOf(*batch), ElementsAre(&low1, &low2));
  CompleteAll(*batch);
  for (TestTask* t : {&cancelled, &past}) EXPECT_EQ(t->completions(), 1);
}

// Producers with mixed priorities, consumers, real time: every task is
// completed exactly once, and every batch keeps (priority, arrival) order.
TEST(BatchQueueStressTest, MixedPrioritiesCompleteEveryTaskExactlyOnce) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 3;
  constexpr int kTasksPerProducer = 1500;
  constexpr int kMaxBatch = 8;
  constexpr int kTasks = kProducers * kTasksPerProducer;

  std::vector<std::unique_ptr<TestTask>> tasks(kTasks);
  std::vector<StressPlan> plans(kTasks);

  BatchQueueOptions options;
  options.max_batch_size = kMaxBatch;
  options.preferred_batch_sizes = {4};
  options.max_queue_delay = microseconds(100);
  options.max_queue_size = 256;
  BatchQueue queue(options);

  std::atomic<int> bad_size{0}, mixed_keys{0}, dead_in_batch{0};
  std::atomic<int> out_of_order{0}, processed{0};
  std::atomic<int> batches{0}, overtaken{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      while (std::optional<Batch> b = queue.NextBatch()) {
        int slots = 0;
        for (size_t i = 0; i < b->entries.size(); ++i) {
          const Batch::Entry& e = b->entries[i];
          slots += e.task->size();
          if (e.task->key() != b->key) ++mixed_keys;
          if (e.task->deadline() <= b->formed_time) ++dead_in_batch;
          if (i == 0) continue;
          const Batch::Entry& prev = b->entries[i - 1];
          const uint32_t p = e.task->priority(), q = prev.task->priority();
          if (p < q || (p == q && e.enqueue_time < prev.enqueue_time)) {
            ++out_of_order;
          }
          if (p > q && e.enqueue_time < prev.enqueue_time) ++overtaken;
        }
        if (slots != b->size || b->size > kMaxBatch || b->entries.empty()) {
          ++bad_size;
        }
        ++batches;
        processed += static_cast<int>(b->entries.size());
        CompleteAll(*b);
      }
    });
  }

  std::atomic<int> rejected_other{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::mt19937 rng(4321 + p);
      for (int i = p * kTasksPerProducer; i < (p + 1) * kTasksPerProducer;
           ++i) {
        StressPlan& plan = plans[i];
        tasks[i] = MakeStressTask(rng, &plan);
        TestTask* t = tasks[i].get();
        // Producer 0 keeps one priority (the append-only path); the others
        // mix four levels.
        t->set_priority(p == 0 ? 2u : static_cast<uint32_t>(rng() % 4));
        if (plan.cancel_before) t->Cancel();
        const absl::Status st = queue.Enqueue(t);
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
  queue.Close();
  for (std::thread& t : consumers) t.join();

  EXPECT_EQ(bad_size.load(), 0);
  EXPECT_EQ(mixed_keys.load(), 0);
  EXPECT_EQ(dead_in_batch.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_EQ(rejected_other.load(), 0);
  EXPECT_EQ(queue.queued(), 0u);
  const int accepted = ExpectStressOutcome(plans, tasks, processed.load());
  ::testing::Test::RecordProperty("accepted", accepted);
  ::testing::Test::RecordProperty("batches", batches.load());
  // Adjacent entries where a task went before an older, less urgent one.
  ::testing::Test::RecordProperty("overtaken", overtaken.load());
}

TEST(BatchQueueOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(BatchQueue::ValidateOptions(BatchQueueOptions()).ok());
  BatchQueueOptions o;
  o.max_batch_size = 8;
  o.preferred_batch_sizes = {1, 4, 8};
  o.max_queue_delay = milliseconds(5);
  EXPECT_TRUE(BatchQueue::ValidateOptions(o).ok());
}

TEST(BatchQueueOptionsTest, RejectsBadOptionsNamingTheField) {
  struct Case {
    void (*mutate)(BatchQueueOptions&);
    const char* message;
  };
  const Case cases[] = {
      {[](BatchQueueOptions& o) { o.max_batch_size = 0; },
       "max_batch_size must be >= 1, got 0"},
      {[](BatchQueueOptions& o) { o.preferred_batch_sizes = {2, 9}; },
       "preferred_batch_sizes[1] is 9, outside [1, 8]"},
      {[](BatchQueueOptions& o) { o.preferred_batch_sizes = {0}; },
       "preferred_batch_sizes[0] is 0"},
      {[](BatchQueueOptions& o) { o.max_queue_size = 0; }, "max_queue_size"},
      {[](BatchQueueOptions& o) { o.max_queue_delay = microseconds(-5); },
       "max_queue_delay must be >= 0, got -5 us"},
      {[](BatchQueueOptions& o) { o.clock = nullptr; }, "clock"},
  };
  for (const Case& c : cases) {
    BatchQueueOptions o;
    o.max_batch_size = 8;
    c.mutate(o);
    absl::Status s = BatchQueue::ValidateOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace clipserve::batching
