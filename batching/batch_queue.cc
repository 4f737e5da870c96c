#include "batching/batch_queue.h"

#include <algorithm>
#include <cassert>
#include <climits>
#include <iterator>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace clipserve::batching {
namespace {

std::vector<int> SortedUnique(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// t + d, clamped to TimePoint::max() (d >= 0).
TimePoint SaturatingAdd(TimePoint t, Duration d) {
  if (t > TimePoint::max() - d) return TimePoint::max();
  return t + d;
}

}  // namespace

BatchQueue::BatchQueue(BatchQueueOptions options)
    : options_(std::move(options)),
      preferred_(SortedUnique(options_.preferred_batch_sizes)),
      min_ready_slots_(preferred_.empty()
                           ? options_.max_batch_size
                           : std::min(preferred_.front(),
                                      options_.max_batch_size)) {
  assert(ValidateOptions(options_).ok());
}

BatchQueue::~BatchQueue() {
  std::vector<Task*> left;
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    left.reserve(queued_);
    for (auto& [key, q] : keys_) {
      for (const Queued& e : q.tasks) left.push_back(e.task);
    }
    keys_.clear();
    queued_ = 0;
  }
  const absl::Status status = absl::UnavailableError(
      "queue destroyed before the request was computed");
  for (Task* t : left) t->Fail(status);
}

absl::Status BatchQueue::ValidateOptions(const BatchQueueOptions& options) {
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_batch_size must be >= 1, got ", options.max_batch_size));
  }
  for (size_t i = 0; i < options.preferred_batch_sizes.size(); ++i) {
    const int p = options.preferred_batch_sizes[i];
    if (p < 1 || p > options.max_batch_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "preferred_batch_sizes[", i, "] is ", p, ", outside [1, ",
          options.max_batch_size, "] (max_batch_size)"));
    }
  }
  if (options.max_queue_delay < Duration::zero()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_queue_delay must be >= 0, got ",
        std::chrono::duration_cast<std::chrono::microseconds>(
            options.max_queue_delay)
            .count(),
        " us"));
  }
  if (options.max_queue_size < 1) {
    return absl::InvalidArgumentError("max_queue_size must be >= 1, got 0");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock must not be null");
  }
  return absl::OkStatus();
}

absl::Status BatchQueue::Enqueue(Task* task) {
  const int size = task->size();
  if (size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("request of ", size, " clips: it needs at least one"));
  }
  if (size > options_.max_batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("request of ", size, " clips exceeds max_batch_size ",
                     options_.max_batch_size));
  }
  const BatchKey key = task->key();
  const uint32_t priority = task->priority();
  DroppedList dropped;
  bool notify;
  bool notify_expiry;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) {
      return absl::UnavailableError(
          "queue is closed: the server is shutting down");
    }
    // Checked under mu_: a SweepCancelled() that ran before this is not
    // missed (see the contract).
    if (task->IsCancelled()) {
      return absl::CancelledError("request cancelled before it was queued");
    }
    const TimePoint now = options_.clock->Now();
    if (queued_ >= options_.max_queue_size) {
      PurgeLocked(now, &dropped);
      if (queued_ >= options_.max_queue_size) {
        const size_t queued = queued_;
        lock.unlock();
        FailDropped(dropped);
        return absl::ResourceExhaustedError(
            absl::StrCat("queue full: ", queued, " requests queued (max_queue_size ",
                         options_.max_queue_size, ")"));
      }
    }
    KeyQueue& q = keys_[key];
    // A consumer needs waking only if this task can change its plan: a new
    // key (a new wake time) or a key that may now be ready by size. A more
    // urgent task changes neither the wake time nor readiness.
    notify = q.tasks.empty();
    if (q.tasks.empty() || q.tasks.back().priority <= priority) {
      // Every task with one priority: the only path taken.
      q.tasks.push_back(Queued{task, now, next_seq_++, priority, false});
    } else {
      // After the last task at least as urgent: equal priorities stay FIFO.
      const auto pos = std::upper_bound(
          q.tasks.begin(), q.tasks.end(), priority,
          [](uint32_t p, const Queued& e) { return p < e.priority; });
      q.tasks.insert(pos, Queued{task, now, next_seq_++, priority, true});
    }
    q.slots += size;
    const TimePoint deadline = task->deadline();
    if (deadline < q.earliest_deadline) {
      // An earlier deadline is a new wake time for a sleeping consumer.
      q.earliest_deadline = deadline;
      notify = true;
    }
    ++queued_;
    notify = notify || q.slots >= min_ready_slots_;
    notify_expiry = deadline < expiry_wake_;
  }
  FailDropped(dropped);
  if (notify) cv_.notify_one();
  if (notify_expiry) expiry_cv_.notify_one();
  return absl::OkStatus();
}

std::optional<Batch> BatchQueue::NextBatch() {
  DroppedList dropped;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const TimePoint now = options_.clock->Now();
    BatchKey key = 0;
    int cap = 0;
    TimePoint wake = TimePoint::max();
    KeyQueue* q = ReadyKeyLocked(now, &key, &cap, &wake, &dropped);
    if (q != nullptr) {
      Batch batch;
      batch.key = key;
      batch.formed_time = now;
      TakeBatchLocked(*q, cap, now, &batch, &dropped);
      if (q->tasks.empty()) keys_.erase(key);
      if (!batch.entries.empty()) {
        const bool more = queued_ > 0;
        lock.unlock();
        // Another idle consumer may have work now.
        if (more) cv_.notify_one();
        FailDropped(dropped);
        return batch;
      }
      // Every task taken was dead by now; look again.
    } else if (closed_ && queued_ == 0) {
      lock.unlock();
      FailDropped(dropped);
      return std::nullopt;
    }
    if (!dropped.empty()) {
      // Complete them now rather than after the wait.
      lock.unlock();
      FailDropped(dropped);
      dropped.clear();
      lock.lock();
      continue;
    }
    if (q == nullptr) options_.clock->WaitUntil(cv_, lock, wake);
  }
}

void BatchQueue::ExpireUntilClosed() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
    const TimePoint now = options_.clock->Now();
    DroppedList dropped;
    TimePoint next = TimePoint::max();
    const bool sweep = sweep_cancelled_;
    sweep_cancelled_ = false;
    for (auto it = keys_.begin(); it != keys_.end();) {
      KeyQueue& q = it->second;
      if (sweep || q.earliest_deadline <= now) {
        // Asked to, or a deadline reached (or stale-early): drop the dead,
        // then refresh.
        DropDeadLocked(q, now, INT_MAX, &dropped);
        q.earliest_deadline = TimePoint::max();
        for (const Queued& e : q.tasks) {
          q.earliest_deadline = std::min(q.earliest_deadline, e.task->deadline());
        }
      }
      next = std::min(next, q.earliest_deadline);
      if (q.tasks.empty()) {
        it = keys_.erase(it);
      } else {
        ++it;
      }
    }
    if (!dropped.empty()) {
      // Tasks may arrive meanwhile: scan again before sleeping.
      lock.unlock();
      FailDropped(dropped);
      lock.lock();
      continue;
    }
    expiry_wake_ = next;
    options_.clock->WaitUntil(expiry_cv_, lock, next);
  }
}

void BatchQueue::SweepCancelled() {
  {
    std::lock_guard<std::mutex> l(mu_);
    sweep_cancelled_ = true;
  }
  expiry_cv_.notify_one();
}

void BatchQueue::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
  }
  cv_.notify_all();
  expiry_cv_.notify_all();
}

size_t BatchQueue::queued() const {
  std::lock_guard<std::mutex> l(mu_);
  return queued_;
}

bool BatchQueue::closed() const {
  std::lock_guard<std::mutex> l(mu_);
  return closed_;
}

BatchQueue::KeyQueue* BatchQueue::ReadyKeyLocked(TimePoint now, BatchKey* key,
                                                 int* cap, TimePoint* wake,
                                                 DroppedList* dropped) {
  const int max = options_.max_batch_size;
  const Duration delay = options_.max_queue_delay;
  KeyQueue* best = nullptr;
  uint32_t best_priority = 0;
  uint64_t best_seq = 0;
  for (auto it = keys_.begin(); it != keys_.end();) {
    KeyQueue& q = it->second;
    // A dead task must neither rank the key (the front) nor make it old.
    TimePoint oldest;
    bool ready = OldestLiveLocked(q, now, &oldest, dropped) &&
                 (closed_ || now - oldest >= delay);
    int q_cap = max;
    if (!ready && q.slots >= min_ready_slots_) {
      // Maybe ready by size: count only live slots, up to a full batch.
      DropDeadLocked(q, now, max, dropped);
      if (q.slots >= max) {
        ready = true;
      } else if (q.slots >= min_ready_slots_) {
        // The scan reached the end, so q.slots is exact.
        ready = true;
        q_cap = *std::prev(
            std::upper_bound(preferred_.begin(), preferred_.end(), q.slots));
      }
    }
    if (!ready && q.earliest_deadline <= now) {
      // Some task expired (or the bound is stale): sweep the key, refresh.
      DropDeadLocked(q, now, INT_MAX, dropped);
      q.earliest_deadline = TimePoint::max();
      for (const Queued& e : q.tasks) {
        q.earliest_deadline = std::min(q.earliest_deadline, e.task->deadline());
      }
    }
    if (q.tasks.empty()) {
      it = keys_.erase(it);
      continue;
    }
    if (!ready) {
      // (`oldest` may have been dropped since, if cancelled meanwhile: then
      // this wake is early, and the consumer only plans again.)
      *wake = std::min(
          {*wake, SaturatingAdd(oldest, delay), q.earliest_deadline});
    } else {
      // The front is the most urgent task, and the oldest of its level.
      const Queued& front = q.tasks.front();
      if (best == nullptr || front.priority < best_priority ||
          (front.priority == best_priority && front.seq < best_seq)) {
        best = &q;
        best_priority = front.priority;
        best_seq = front.seq;
        *key = it->first;
        *cap = q_cap;
      }
    }
    ++it;
  }
  return best;
}

bool BatchQueue::OldestLiveLocked(KeyQueue& q, TimePoint now,
                                  TimePoint* oldest, DroppedList* dropped) {
  DropDeadLocked(q, now, 1, dropped);  // now the front is live
  while (!q.tasks.empty()) {
    const size_t i = OldestIndex(q);  // 0 with a single priority
    const Queued& e = q.tasks[i];
    if (i == 0 || (!e.task->IsCancelled() && now < e.task->deadline())) {
      *oldest = e.enqueue_time;
      return true;
    }
    // Dead (and dead it stays): the sweep removes it, so this loop ends.
    DropDeadLocked(q, now, INT_MAX, dropped);
  }
  return false;
}

size_t BatchQueue::OldestIndex(const KeyQueue& q) {
  size_t oldest = 0;
  for (size_t i = 0; i < q.tasks.size(); ++i) {
    const Queued& e = q.tasks[i];
    if (e.seq < q.tasks[oldest].seq) oldest = i;
    // An appended task went behind every task then queued, so every task
    // behind it arrived after it.
    if (!e.overtook) break;
  }
  return oldest;
}

void BatchQueue::TakeBatchLocked(KeyQueue& q, int cap, TimePoint now,
                                 Batch* batch, DroppedList* dropped) {
  batch->entries.reserve(std::min(q.tasks.size(), static_cast<size_t>(cap)));
  while (!q.tasks.empty()) {
    const Queued& e = q.tasks.front();
    const int size = e.task->size();
    if (!IsDead(e, now, dropped)) {
      if (!batch->entries.empty() && batch->size + size > cap) break;
      batch->entries.push_back(Batch::Entry{e.task, e.enqueue_time});
      batch->size += size;
    }
    q.slots -= size;
    --queued_;
    q.tasks.pop_front();
  }
}

void BatchQueue::DropDeadLocked(KeyQueue& q, TimePoint now, int live_slots,
                                DroppedList* dropped) {
  const size_t n = q.tasks.size();
  size_t end = 0;
  size_t dead = 0;
  int live = 0;
  for (; end < n && live < live_slots; ++end) {
    Queued& e = q.tasks[end];
    const int size = e.task->size();
    if (IsDead(e, now, dropped)) {
      e.task = nullptr;
      q.slots -= size;
      ++dead;
    } else {
      live += size;
    }
  }
  if (dead == 0) return;
  // Shift the live tasks of [0, end) back over the holes, keeping their
  // order, then pop the freed front.
  size_t w = end;
  for (size_t i = end; i-- > 0;) {
    if (q.tasks[i].task != nullptr) q.tasks[--w] = q.tasks[i];
  }
  for (size_t i = 0; i < dead; ++i) q.tasks.pop_front();
  queued_ -= dead;
}

bool BatchQueue::IsDead(const Queued& e, TimePoint now, DroppedList* dropped) {
  if (e.task->IsCancelled()) {
    dropped->push_back(Dropped{e.task, true, now - e.enqueue_time});
    return true;
  }
  if (now >= e.task->deadline()) {
    dropped->push_back(Dropped{e.task, false, now - e.enqueue_time});
    return true;
  }
  return false;
}

void BatchQueue::PurgeLocked(TimePoint now, DroppedList* dropped) {
  for (auto it = keys_.begin(); it != keys_.end();) {
    DropDeadLocked(it->second, now, INT_MAX, dropped);
    if (it->second.tasks.empty()) {
      it = keys_.erase(it);
    } else {
      ++it;
    }
  }
}

void BatchQueue::FailDropped(const DroppedList& dropped) {
  for (const Dropped& d : dropped) {
    if (d.cancelled) {
      d.task->Fail(
          absl::CancelledError("request cancelled before it was computed"));
      continue;
    }
    const int64_t tenths_ms = std::llround(
        std::chrono::duration<double, std::milli>(d.waited).count() * 10);
    d.task->Fail(absl::DeadlineExceededError(
        absl::StrCat("deadline exceeded after waiting ", tenths_ms / 10, ".",
                     tenths_ms % 10, " ms in the queue")));
  }
}

}  // namespace clipserve::batching
