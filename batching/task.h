// The unit of work the batcher queues: one request, as the batcher sees it.
#ifndef CLIPSERVE_BATCHING_TASK_H_
#define CLIPSERVE_BATCHING_TASK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "batching/clock.h"

namespace clipserve::batching {

// Tasks with equal keys may share a batch; the caller decides what the key
// encodes (for clipserve: dtype and clip shape).
using BatchKey = uint64_t;

// Implemented by the caller. The queue does not own tasks: a task must stay
// alive until it is completed, either by the queue through Fail() or by
// whoever received it in a Batch. Every enqueued task is completed exactly
// once.
class Task {
 public:
  virtual ~Task() = default;

  // Batch slots the task occupies (a request carrying several clips counts
  // each). Must be >= 1 and must not change while queued.
  virtual int size() const { return 1; }

  // Compatibility class; must not change while queued.
  virtual BatchKey key() const = 0;

  // Scheduling level: a lower value is more urgent; 0 (the default) is the
  // most urgent. The server maps protocol priorities onto it; the queue treats
  // it as an opaque level (rules in batch_queue.h). Must not change while
  // queued.
  virtual uint32_t priority() const { return 0; }

  // The task is dropped, with DEADLINE_EXCEEDED, instead of being batched once
  // Clock::Now() >= deadline(). TimePoint::max() means no deadline.
  virtual TimePoint deadline() const { return TimePoint::max(); }

  // A cancelled task is dropped, with CANCELLED, instead of being batched
  // (and refused by Enqueue). Once true it stays true. Called under the
  // queue's lock: must be cheap and must not call back into the queue.
  virtual bool IsCancelled() const { return false; }

  // Completes the task with an error. Called at most once, without the queue's
  // lock held; the task may be destroyed from inside.
  virtual void Fail(const absl::Status& status) = 0;
};

}  // namespace clipserve::batching

#endif  // CLIPSERVE_BATCHING_TASK_H_
