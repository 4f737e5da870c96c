// BatchQueue: the dynamic batching policy of one model.
//
// Producers Enqueue() tasks; consumers (model instances) call NextBatch(),
// which blocks until a batch is ready and hands it over. The rules, each
// proven in tests/batching:
//
//  * Only tasks with equal keys share a batch. A batch never holds more than
//    max_batch_size slots (Task::size() summed), and a task is never split.
//  * Within a key, tasks leave in (priority, arrival) order, a lower
//    Task::priority() first: a task overtakes the less urgent tasks queued
//    under its key, and tasks of equal priority keep their arrival order.
//    Priority is strict: less urgent tasks wait while more urgent ones keep
//    filling the batches of their key.
//  * A batch of key K is ready when the tasks queued under K fill
//    max_batch_size, or reach one of preferred_batch_sizes, or when the oldest
//    of them by arrival, whatever its priority, has waited max_queue_delay
//    (more urgent tasks queued in front of it do not restart the delay). With
//    a delay of zero, whatever is queued is ready at once.
//  * Among ready keys, the one whose most urgent task is most urgent goes
//    first; between keys equally urgent, the one whose most urgent task
//    arrived first (with a single priority: whose oldest task arrived first).
//    So at equal priority no key starves: each key is ready at the latest
//    max_queue_delay after its oldest task arrived, and then waits only for
//    more urgent tasks, or equally urgent ones that arrived before its own.
//  * A batch takes tasks in that order while they fit, so it takes the most
//    urgent first and, when full, leaves the less urgent for a later batch; a
//    preferred size caps the batch at the largest preferred size that the
//    queued slots reach (when the batch is ready through that size only, not
//    through max_batch_size, the delay or Close; a first task larger than the
//    cap still goes, alone).
//  * A task whose deadline has passed, or which is cancelled, is failed
//    (DEADLINE_EXCEEDED / CANCELLED) when the batcher reaches it, and never
//    takes a batch slot, nor counts towards making a batch ready. With a
//    thread in ExpireUntilClosed(), an expired task is failed at its
//    deadline even while no consumer looks at the queue, and a cancelled one
//    as soon as SweepCancelled() is called, even if no batch of its key will
//    form for a long time (a long delay, or strict priority).
//  * Enqueue fails at once, without queueing, when max_queue_size tasks are
//    queued (RESOURCE_EXHAUSTED, naming the limit), when the task is larger than
//    max_batch_size (INVALID_ARGUMENT), when it is cancelled already
//    (CANCELLED: so a cancellation that SweepCancelled() swept past cannot
//    leave a task behind it), or after Close() (UNAVAILABLE).
//  * After Close(), every queued task is ready at once (the queue drains in
//    full batches), and NextBatch() returns nullopt when none is left.
//  * Destroying the queue fails whatever is still queued with UNAVAILABLE.
//
// Thread-safe. Any number of producers and consumers.
#ifndef CLIPSERVE_BATCHING_BATCH_QUEUE_H_
#define CLIPSERVE_BATCHING_BATCH_QUEUE_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "batching/clock.h"
#include "batching/task.h"

namespace clipserve::batching {

struct BatchQueueOptions {
  // Largest batch, in task slots. Must be >= 1; 1 turns batching off.
  int max_batch_size = 1;

  // Batch sizes to fire at as soon as they are reached. Each in
  // [1, max_batch_size]. Default: none (only max_batch_size and the delay).
  std::vector<int> preferred_batch_sizes;

  // How long the oldest queued task of a key may wait for its batch to fill.
  // Default zero: fire at once with whatever is queued.
  Duration max_queue_delay = Duration::zero();

  // Queued tasks (not slots) beyond which Enqueue fails. Must be >= 1.
  size_t max_queue_size = 1024;

  // Time source; not owned, must outlive the queue. Default: the real clock.
  Clock* clock = Clock::Real();
};

// A batch handed to a consumer, who now must complete every task in it.
struct Batch {
  struct Entry {
    Task* task;
    TimePoint enqueue_time;  // when Enqueue() accepted it
  };
  BatchKey key = 0;
  std::vector<Entry> entries;  // (priority, arrival) order
  int size = 0;                // slots: sum of the tasks' size()
  TimePoint formed_time;       // when NextBatch() took it from the queue
};

class BatchQueue {
 public:
  // Options must be valid (see BatchQueueOptions); ValidateOptions tells.
  explicit BatchQueue(BatchQueueOptions options);
  ~BatchQueue();

  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // OK, or why `options` cannot build a queue.
  static absl::Status ValidateOptions(const BatchQueueOptions& options);

  // Queues `task`. On error the task was not queued, and not completed: the
  // caller still owns its completion.
  absl::Status Enqueue(Task* task);

  // Blocks until a batch is ready and returns it, or returns nullopt once the
  // queue is closed and empty. Tasks dropped for deadline or cancellation on
  // the way are failed before it returns.
  std::optional<Batch> NextBatch();

  // Fails each queued task at its deadline (DEADLINE_EXCEEDED), and the
  // cancelled tasks it meets on the way, also while every consumer is busy
  // running a batch and none is in NextBatch(). Blocks until Close(); for one
  // dedicated thread (BatchScheduler runs it).
  void ExpireUntilClosed();

  // Asks for every cancelled task queued now to be failed (CANCELLED) at
  // once, not when the batcher reaches it, so that it frees its slot and its
  // memory; call it after a queued task's IsCancelled() turned true. Returns
  // at once: the thread in ExpireUntilClosed() does the sweep, in
  // O(tasks queued). Without such a thread it has no effect.
  void SweepCancelled();

  // Stops accepting tasks and makes every queued one ready. Idempotent.
  void Close();

  // Tasks queued now.
  size_t queued() const;
  bool closed() const;

  const BatchQueueOptions& options() const { return options_; }

 private:
  struct Queued {
    Task* task;
    TimePoint enqueue_time;
    uint64_t seq;       // arrival order across all keys
    uint32_t priority;  // task->priority(), read once at Enqueue
    bool overtook;      // inserted in front of a less urgent task
  };
  // Cost of priority. `tasks` is kept sorted by (priority, seq), its front
  // leaving first. A task no more urgent than the back is appended: O(1)
  // amortised and no allocation beyond the deque's own, the only case when
  // every task has the same priority. A more urgent task is inserted after
  // the last one at least as urgent (binary search, then an O(n) shift of the
  // deque) and marked `overtook`.
  // The delay counts from the oldest task, found by OldestIndex(): a scan
  // from the front that stops at the first appended task, since an appended
  // task went behind every task then queued and so is older than any task
  // behind it. With one priority the front is appended: O(1). Otherwise the
  // scan passes only the overtakers in front (bounded by max_queue_size, and
  // the most urgent tasks, the first to leave).
  struct KeyQueue {
    std::deque<Queued> tasks;
    int slots = 0;  // sum of size() over tasks
    // No queued task's deadline is earlier; may be earlier than the true
    // minimum after removals (then refreshed when reached).
    TimePoint earliest_deadline = TimePoint::max();
  };
  // A task taken out for its deadline or cancellation; failed without mu_.
  struct Dropped {
    Task* task;
    bool cancelled;  // else its deadline passed
    Duration waited;
  };
  using DroppedList = std::vector<Dropped>;

  // The key whose batch is ready now, by the rules above, or nullptr. Sets
  // *key, and *cap to the most slots its batch may take; sets *wake to the
  // earliest time a key not ready now becomes ready. Dead tasks that would
  // decide readiness go to `dropped`, and emptied keys are erased.
  KeyQueue* ReadyKeyLocked(TimePoint now, BatchKey* key, int* cap,
                           TimePoint* wake, DroppedList* dropped);
  // Drops the dead tasks that would rank `q` or start its delay: those at
  // its front and, if its oldest task is dead, every dead one. Returns false
  // when no task is left, else sets *oldest to the arrival of the oldest live
  // task.
  bool OldestLiveLocked(KeyQueue& q, TimePoint now, TimePoint* oldest,
                        DroppedList* dropped);
  // Index in q.tasks of the task that arrived first (cost: see KeyQueue).
  static size_t OldestIndex(const KeyQueue& q);
  // Moves the tasks of one batch of at most `cap` slots (at least one task)
  // from the front of `q` into `batch`; dead tasks met go to `dropped`.
  void TakeBatchLocked(KeyQueue& q, int cap, TimePoint now, Batch* batch,
                       DroppedList* dropped);
  // Scans `q` from the front until the live tasks passed hold `live_slots`
  // slots or `q` ends, moving the dead tasks on the way to `dropped`.
  void DropDeadLocked(KeyQueue& q, TimePoint now, int live_slots,
                      DroppedList* dropped);
  // Appends `e` to `dropped` and returns true if it is expired or cancelled.
  static bool IsDead(const Queued& e, TimePoint now, DroppedList* dropped);
  // Removes expired and cancelled tasks everywhere (used when full).
  void PurgeLocked(TimePoint now, DroppedList* dropped);
  // Fails each dropped task. Call without mu_.
  static void FailDropped(const DroppedList& dropped);

  const BatchQueueOptions options_;
  const std::vector<int> preferred_;  // sorted, unique
  const int min_ready_slots_;         // smallest preferred size, or max
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // ExpireUntilClosed() sleeps on expiry_cv_ until expiry_wake_, the
  // earliest deadline queued when it went to sleep.
  std::condition_variable expiry_cv_;
  TimePoint expiry_wake_ = TimePoint::max();
  bool sweep_cancelled_ = false;  // SweepCancelled() asked since the last sweep
  std::unordered_map<BatchKey, KeyQueue> keys_;  // no empty KeyQueue
  size_t queued_ = 0;
  uint64_t next_seq_ = 0;
  bool closed_ = false;
};

}  // namespace clipserve::batching

#endif  // CLIPSERVE_BATCHING_BATCH_QUEUE_H_
