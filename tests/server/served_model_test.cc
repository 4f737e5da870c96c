// ServedModel with a stand-in Backend: lanes per instance, where the time of
// a batch is reported, and what happens when an instance's device becomes
// unusable. (The real backends' side of these is in tests/runtime.)
#include "server/served_model.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "clipserve/config.pb.h"
#include "server/metrics.h"
#include "server/lifecycle/hang_watchdog.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

constexpr int64_t kClasses = 3;

runtime::ModelSpec Spec() {
  runtime::ModelSpec spec;
  spec.input = runtime::ClipShape{3, 1, 2, 2};
  spec.num_classes = kClasses;
  return spec;
}

// Answers every clip with logits {i, i, i} for run i, reports CUDA-like
// timings, and can be told to wait until `lanes` runs are inside at once,
// or to fail as a poisoned device does.
class FakeBackend : public runtime::Backend {
 public:
  explicit FakeBackend(int lanes) : lanes_(lanes) {}

  const runtime::ModelSpec& spec() const override { return spec_; }
  std::string device() const override { return "cuda:7"; }
  int max_concurrent_runs() const override { return lanes_; }
  absl::Status health() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return health_;
  }

  absl::Status Run(absl::Span<const runtime::ClipView> clips,
                   std::vector<float>* logits,
                   runtime::RunTimings* timings) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!health_.ok()) return health_;
    if (poison_next_) {
      health_ = absl::UnavailableError("cuda:7 is unusable after a device error");
      return absl::InternalError("illegal memory access");
    }
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    changed_.notify_all();
    if (hold_) {
      changed_.wait_for(lock, std::chrono::seconds(30), [this] { return !hold_; });
    }
    if (wait_for_all_lanes_) {
      changed_.wait_for(lock, std::chrono::seconds(10),
                        [this] { return max_inside_ >= lanes_; });
    }
    int64_t rows = 0;
    for (const auto& c : clips) rows += c.count;
    logits->assign(static_cast<size_t>(rows * kClasses), 1.0f);
    timings->device_copies = true;
    timings->batch = rows;
    timings->upload_us = 2000;
    timings->compute_us = 5000;
    timings->download_us = 1000;
    --inside_;
    return absl::OkStatus();
  }

  void WaitForAllLanes() {
    std::lock_guard<std::mutex> lock(mu_);
    wait_for_all_lanes_ = true;
  }
  // Runs wait inside Run() until Release() (a batch that hangs).
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    changed_.notify_all();
  }
  void WaitUntilInside() {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, std::chrono::seconds(30), [this] { return inside_ > 0; });
  }
  void PoisonNext() {
    std::lock_guard<std::mutex> lock(mu_);
    poison_next_ = true;
  }
  int max_inside() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_inside_;
  }

 private:
  const int lanes_;
  const runtime::ModelSpec spec_ = Spec();
  mutable std::mutex mu_;
  std::condition_variable changed_;
  int inside_ = 0, max_inside_ = 0;
  bool wait_for_all_lanes_ = false, poison_next_ = false, hold_ = false;
  absl::Status health_;
};

class Task : public InferenceTask {
 public:
  explicit Task(const std::vector<uint8_t>& clip) {
    runtime::ClipView v;
    v.shape = Spec().input;
    v.data = clip.data();
    set_clip(v, 1);
  }
  void Complete(absl::Span<const float> logits, int64_t,
                const ExecutionStats& stats) override {
    done_.set_value({absl::OkStatus(), static_cast<int>(logits.size()), stats});
  }
  void Fail(const absl::Status& status) override {
    done_.set_value({status, 0, {}});
  }
  struct Result {
    absl::Status status;
    int logits = 0;
    ExecutionStats stats;
  };
  std::future<Result> result() { return done_.get_future(); }

 private:
  std::promise<Result> done_;
};

config::ModelConfig Config() {
  absl::StatusOr<config::ModelConfig> c = ParseModelConfig(R"pb(
    name: "fake" backend: "torchscript" max_batch_size: 1
    input { name: "clip" data_type: TYPE_FP32 dims: [ 3, 1, 2, 2 ] }
    output { name: "logits" data_type: TYPE_FP32 dims: [ 3 ] }
  )pb", "fake");
  EXPECT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(ValidateModelConfig(&*c, "fake", "fake").ok());
  return *c;
}

std::unique_ptr<ServedModel> Serve(std::unique_ptr<FakeBackend> backend,
                                   Metrics* metrics) {
  std::vector<std::unique_ptr<runtime::Backend>> instances;
  instances.push_back(std::move(backend));
  absl::StatusOr<std::unique_ptr<ServedModel>> m =
      ServedModel::Create(Config(), "1", {}, std::move(instances), metrics);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

TEST(ServedModelTest, AnInstanceGetsOneLaneForEachBatchItMayHoldInFlight) {
  Metrics metrics;
  auto backend = std::make_unique<FakeBackend>(2);
  FakeBackend* fake = backend.get();
  fake->WaitForAllLanes();
  std::unique_ptr<ServedModel> model = Serve(std::move(backend), &metrics);
  EXPECT_EQ(model->num_instances(), 1);
  EXPECT_EQ(model->num_lanes(), 2);
  // max_batch_size 1: two requests make two batches, which run at once.
  const std::vector<uint8_t> clip(12, 0);
  Task a(clip), b(clip);
  auto ra = a.result(), rb = b.result();
  ASSERT_TRUE(model->Enqueue(&a).ok());
  ASSERT_TRUE(model->Enqueue(&b).ok());
  const Task::Result x = ra.get(), y = rb.get();
  EXPECT_TRUE(x.status.ok() && y.status.ok());
  EXPECT_EQ(fake->max_inside(), 2);
  // The compute time is the backend's (CUDA events), not a host clock.
  EXPECT_EQ(x.stats.compute_us, 5000);
  // Device copies are timed per batch.
  EXPECT_EQ(model->metrics().upload_duration().Collect().histogram.sample_count, 2u);
  EXPECT_DOUBLE_EQ(model->metrics().upload_duration().Collect().histogram.sample_sum, 0.004);
  EXPECT_DOUBLE_EQ(model->metrics().download_duration().Collect().histogram.sample_sum, 0.002);
}

TEST(ServedModelTest, AnUnusableDeviceMakesTheModelUnhealthyAndTellsTheServerOnce) {
  Metrics metrics;
  auto backend = std::make_unique<FakeBackend>(1);
  FakeBackend* fake = backend.get();
  std::unique_ptr<ServedModel> model = Serve(std::move(backend), &metrics);
  std::vector<absl::Status> told;
  model->SetDeviceFailureHandler([&told](const absl::Status& s) { told.push_back(s); });
  EXPECT_TRUE(model->healthy());
  // The repository reports a version ready when it makes it live.
  EXPECT_EQ(model->metrics().ready().Value(), 0);
  model->GoLive();
  EXPECT_EQ(model->metrics().ready().Value(), 1);

  const std::vector<uint8_t> clip(12, 0);
  fake->PoisonNext();
  Task a(clip);
  auto ra = a.result();
  ASSERT_TRUE(model->Enqueue(&a).ok());
  EXPECT_EQ(ra.get().status.code(), absl::StatusCode::kInternal);
  // Later requests are refused by the instance itself, without running.
  Task b(clip);
  auto rb = b.result();
  ASSERT_TRUE(model->Enqueue(&b).ok());
  const Task::Result second = rb.get();
  EXPECT_EQ(second.status.code(), absl::StatusCode::kUnavailable);

  EXPECT_FALSE(model->healthy());
  EXPECT_EQ(model->metrics().ready().Value(), 0);
  EXPECT_EQ(model->metrics().device_failures().Value(), 1);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(told[0].message().find("cuda:7 is unusable"), std::string::npos);
}

// Holds `fake`'s runs, queues `task` on `model` and returns once its batch
// is inside the instance (a batch that hangs until fake->Release()).
void EnqueueHeld(FakeBackend* fake, ServedModel* model, Task* task) {
  fake->Hold();
  ASSERT_TRUE(model->Enqueue(task).ok());
  fake->WaitUntilInside();
}

// The watchdog's check, with the time given: a batch is hung only once it
// has run longer than the limit, the model is then unhealthy and not ready,
// the hang is counted and the server told once; the batch's request is
// still answered when its run ends.
TEST(ServedModelTest, ABatchRunningPastTheLimitMakesTheModelUnhealthyOnce) {
  Metrics metrics;
  auto backend = std::make_unique<FakeBackend>(1);
  FakeBackend* fake = backend.get();
  std::unique_ptr<ServedModel> model = Serve(std::move(backend), &metrics);
  std::vector<absl::Status> told;
  model->SetDeviceFailureHandler([&told](const absl::Status& s) { told.push_back(s); });
  model->GoLive();
  const auto limit = std::chrono::seconds(5);
  const auto now = std::chrono::steady_clock::now();
  EXPECT_FALSE(model->CheckHung(now + std::chrono::hours(1), limit)) << "idle";

  const std::vector<uint8_t> clip(12, 0);
  Task task(clip);
  auto result = task.result();
  EnqueueHeld(fake, model.get(), &task);
  const auto inside = std::chrono::steady_clock::now();
  EXPECT_FALSE(model->CheckHung(inside + std::chrono::seconds(4), limit));
  EXPECT_TRUE(model->healthy());
  EXPECT_TRUE(told.empty());

  EXPECT_TRUE(model->CheckHung(inside + std::chrono::seconds(6), limit));
  EXPECT_FALSE(model->healthy());
  EXPECT_EQ(model->metrics().ready().Value(), 0);
  EXPECT_EQ(model->metrics().hangs().Value(), 1);
  EXPECT_EQ(model->metrics().device_failures().Value(), 0);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(told[0].message().find("instance on cuda:7 hung: a batch has run for"),
            std::string::npos)
      << told[0].message();
  EXPECT_FALSE(model->CheckHung(inside + std::chrono::seconds(60), limit)) << "once";
  EXPECT_EQ(model->metrics().hangs().Value(), 1);

  fake->Release();
  const Task::Result r = result.get();
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.logits, kClasses);
}

// The watchdog's own thread finds a batch that runs past its limit (here
// 50 ms) and tells the server once; a watchdog with limit 0 starts no
// thread and finds nothing.
TEST(HangWatchdogTest, ItsThreadFindsAHungBatchAndTellsOnce) {
  Metrics metrics;
  auto backend = std::make_unique<FakeBackend>(1);
  FakeBackend* fake = backend.get();
  std::shared_ptr<ServedModel> model = Serve(std::move(backend), &metrics);
  std::mutex mu;
  std::condition_variable changed;
  int told = 0;
  model->SetDeviceFailureHandler([&](const absl::Status&) {
    std::lock_guard<std::mutex> lock(mu);
    ++told;
    changed.notify_all();
  });
  model->GoLive();
  const std::vector<uint8_t> clip(12, 0);
  Task task(clip);
  auto result = task.result();
  EnqueueHeld(fake, model.get(), &task);
  const auto list = [model] { return std::vector<std::shared_ptr<ServedModel>>{model}; };
  {
    // Off (limit 0): 200 ms beside the hung batch, nothing told.
    HangWatchdog off(list, std::chrono::milliseconds(0));
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_FALSE(changed.wait_for(lock, std::chrono::milliseconds(200), [&] { return told > 0; }));
    EXPECT_TRUE(model->healthy());
  }
  {
    HangWatchdog watchdog(list, std::chrono::milliseconds(50));
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(30), [&] { return told > 0; }));
    // Several more periods (12.5 ms each): still told only once.
    changed.wait_for(lock, std::chrono::milliseconds(200), [&] { return told > 1; });
    EXPECT_EQ(told, 1);
  }
  EXPECT_FALSE(model->healthy());
  EXPECT_EQ(model->metrics().hangs().Value(), 1);
  fake->Release();
  EXPECT_TRUE(result.get().status.ok());
}

// A task that counts how often, and how, it was answered (from a lane, the
// expiry thread or the caller), for the races below.
class CountingTask : public InferenceTask {
 public:
  CountingTask(const std::vector<uint8_t>& clip, std::atomic<int>* answered)
      : answered_(answered) {
    runtime::ClipView v;
    v.shape = Spec().input;
    v.data = clip.data();
    set_clip(v, 1);
  }
  void Complete(absl::Span<const float>, int64_t, const ExecutionStats&) override {
    completed_.fetch_add(1);
    answered_->fetch_add(1);
  }
  void Fail(const absl::Status& status) override {
    code_.store(status.code());
    failed_.fetch_add(1);
    answered_->fetch_add(1);
  }
  int answers() const { return completed_.load() + failed_.load(); }
  bool completed() const { return completed_.load() == 1; }
  absl::StatusCode code() const { return code_.load(); }

 private:
  std::atomic<int>* const answered_;
  std::atomic<int> completed_{0}, failed_{0};
  std::atomic<absl::StatusCode> code_{absl::StatusCode::kOk};
};

// Waits (bounded) until `answered` reaches `n`.
bool WaitForAnswers(const std::atomic<int>& answered, int n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (answered.load() < n && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  return answered.load() >= n;
}

// Clients cancelling (gRPC's OnCancel, on its own threads) while two lanes
// run batches, each cancellation sweeping the queue, some before their task
// is even queued: every task is answered exactly once, either computed or
// CANCELLED, never both and never twice. Under ThreadSanitizer in CI.
TEST(ServedModelRaceTest, CancellationsRacingCompletionsAnswerEachTaskExactlyOnce) {
  Metrics metrics;
  std::unique_ptr<ServedModel> model = Serve(std::make_unique<FakeBackend>(2), &metrics);
  model->GoLive();
  // Fewer than the queue holds (max_queue_size 1024): none is refused.
  constexpr int kTasks = 1000;
  const std::vector<uint8_t> clip(12, 0);
  std::atomic<int> answered{0};
  std::vector<std::unique_ptr<CountingTask>> tasks;
  for (int i = 0; i < kTasks; ++i) {
    tasks.push_back(std::make_unique<CountingTask>(clip, &answered));
  }
  std::atomic<int> enqueued{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kTasks; i += 2) {
        const absl::Status s = model->Enqueue(tasks[i].get());
        if (!s.ok()) {
          // Only a task cancelled before it was queued is refused, and its
          // caller answers it, as the protocols do.
          EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << "task " << i;
          EXPECT_EQ(i % 3, 0) << "task " << i << " was never cancelled";
          tasks[i]->Fail(s);
        }
        enqueued.fetch_add(1);
      }
    });
  }
  // Cancels every third task, as soon as it is queued, racing the lanes.
  threads.emplace_back([&] {
    for (int i = 0; i < kTasks; i += 3) {
      while (enqueued.load() <= i) std::this_thread::yield();
      tasks[i]->OnCallCancelled();
    }
  });
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(WaitForAnswers(answered, kTasks)) << answered.load() << " of " << kTasks;
  model->Shutdown();
  int cancelled = 0;
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(tasks[i]->answers(), 1) << "task " << i;
    if (tasks[i]->completed()) continue;
    EXPECT_EQ(tasks[i]->code(), absl::StatusCode::kCancelled) << "task " << i;
    EXPECT_EQ(i % 3, 0) << "task " << i << " was never cancelled";
    ++cancelled;
  }
  EXPECT_EQ(answered.load(), kTasks);
  EXPECT_LE(cancelled, (kTasks + 2) / 3);
}

// Calls arriving while the server drains: Shutdown() races two threads that
// keep enqueueing until the model refuses them as drained (UNAVAILABLE).
// Every task the model accepted is answered exactly once, computed, by the
// time Shutdown() returns (a drain answers what it took); every task it
// refused (UNAVAILABLE, or RESOURCE_EXHAUSTED while its queue was full) is
// never answered by it.
TEST(ServedModelRaceTest, DrainRacingNewCallsAnswersEveryAcceptedTaskOnce) {
  Metrics metrics;
  std::unique_ptr<ServedModel> model = Serve(std::make_unique<FakeBackend>(2), &metrics);
  model->GoLive();
  // More than can be enqueued before the drain: the callers stop at their
  // first UNAVAILABLE.
  constexpr int kTasks = 100000;
  const std::vector<uint8_t> clip(12, 0);
  std::atomic<int> answered{0};
  std::vector<std::unique_ptr<CountingTask>> tasks;
  tasks.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    tasks.push_back(std::make_unique<CountingTask>(clip, &answered));
  }
  std::vector<std::atomic<bool>> accepted(kTasks);
  std::atomic<int> tried{0}, unavailable{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kTasks; i += 2) {
        const absl::Status s = model->Enqueue(tasks[i].get());
        accepted[i].store(s.ok());
        tried.fetch_add(1);
        if (s.code() == absl::StatusCode::kUnavailable) {
          unavailable.fetch_add(1);
          return;
        }
        if (!s.ok()) {
          EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        }
      }
    });
  }
  // Drains once 500 calls were made, while the rest arrive.
  while (tried.load() < 500) std::this_thread::yield();
  model->Shutdown();
  const int answered_at_drain_end = answered.load();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(unavailable.load(), 2) << "each caller ran into the drain";
  int taken = 0;
  for (int i = 0; i < kTasks; ++i) {
    if (accepted[i].load()) {
      ++taken;
      EXPECT_EQ(tasks[i]->answers(), 1) << "accepted task " << i;
      EXPECT_TRUE(tasks[i]->completed()) << "accepted task " << i;
    } else {
      EXPECT_EQ(tasks[i]->answers(), 0) << "refused or untried task " << i;
    }
  }
  EXPECT_GE(taken, 1);
  EXPECT_EQ(answered.load(), taken);
  EXPECT_EQ(answered_at_drain_end, taken) << "Shutdown() returned before answering all it took";
}

}  // namespace
}  // namespace clipserve::server
