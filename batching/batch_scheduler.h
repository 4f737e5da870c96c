// BatchScheduler: a BatchQueue plus the instances that execute its batches.
//
// Each instance is one thread that pulls the next ready batch and runs the
// caller's BatchProcessor on it; while every instance is busy the queue keeps
// filling, so the next batch comes out larger. One more thread fails queued
// tasks at their deadlines (BatchQueue::ExpireUntilClosed), so a request
// that cannot start in time is answered then, not when an instance is free.
#ifndef CLIPSERVE_BATCHING_BATCH_SCHEDULER_H_
#define CLIPSERVE_BATCHING_BATCH_SCHEDULER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "batching/batch_queue.h"

namespace clipserve::batching {

struct BatchSchedulerOptions {
  BatchQueueOptions queue;
  // Instances pulling batches concurrently. Must be >= 1.
  int num_instances = 1;
};

// Runs one batch on instance `instance` (in [0, num_instances)). It must
// complete every task in the batch, with a result or an error, before or
// after returning. Called from that instance's thread only.
using BatchProcessor = std::function<void(int instance, Batch batch)>;

class BatchScheduler {
 public:
  static absl::StatusOr<std::unique_ptr<BatchScheduler>> Create(
      BatchSchedulerOptions options, BatchProcessor processor);

  // Drains: same as Shutdown().
  ~BatchScheduler();

  // See BatchQueue::Enqueue.
  absl::Status Enqueue(Task* task) { return queue_.Enqueue(task); }

  // See BatchQueue::SweepCancelled (the scheduler runs its expiry thread).
  void SweepCancelled() { queue_.SweepCancelled(); }

  // Refuses new tasks, runs every queued one, and returns when all instances
  // have finished. Idempotent; must not be called from the processor.
  void Shutdown();

  const BatchQueue& queue() const { return queue_; }

 private:
  BatchScheduler(BatchSchedulerOptions options, BatchProcessor processor);

  BatchQueue queue_;
  BatchProcessor processor_;
  std::vector<std::thread> instances_;
  std::thread expiry_;
  std::once_flag shutdown_once_;
};

}  // namespace clipserve::batching

#endif  // CLIPSERVE_BATCHING_BATCH_SCHEDULER_H_
