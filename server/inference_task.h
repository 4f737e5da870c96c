// InferenceTask: one request to a served model, whatever protocol it came in
// on. The protocol's call object implements it; ServedModel batches and runs
// it, then completes it exactly once through Complete() or Fail().
#ifndef CLIPSERVE_SERVER_INFERENCE_TASK_H_
#define CLIPSERVE_SERVER_INFERENCE_TASK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "absl/types/span.h"
#include "batching/batch_scheduler.h"
#include "batching/task.h"
#include "runtime/clip.h"

namespace clipserve::server {

// Where one request's time went, for its response.
struct ExecutionStats {
  int64_t queue_us = 0;    // enqueue -> batch formed
  int64_t compute_us = 0;  // running the batch
  int batch_size = 0;      // slots in the batch, this request's included
};

class InferenceTask : public batching::Task {
 public:
  // The validated clip(s) of the request; set before it is enqueued.
  const runtime::ClipView& clip() const { return clip_; }
  void set_clip(const runtime::ClipView& clip, batching::BatchKey key) {
    clip_ = clip;
    key_ = key;
  }
  void set_deadline(batching::TimePoint deadline) { deadline_ = deadline; }
  // The batching level (ServedModel::PriorityLevel); lower is more urgent.
  void set_priority(uint32_t level) { priority_ = level; }
  // Called by the protocol when gRPC cancels the call (OnCancel);
  // thread-safe. gRPC also cancels a call when its deadline passes: a
  // cancellation within kDeadlineSlack of the request's deadline is taken
  // for that, and left to the deadline (DEADLINE_EXCEEDED, as the client
  // sees it), not counted as the client's cancellation.
  // A task already queued is then swept out of its queue at once (CANCELLED),
  // freeing its slot and memory, not left until the batcher reaches it.
  void OnCallCancelled() {
    if (std::chrono::steady_clock::now() + kDeadlineSlack < deadline_) {
      // Sequentially consistent with QueuingIn(): either this sees the
      // scheduler and sweeps, or Enqueue sees the flag and refuses.
      cancelled_.store(true);
      if (batching::BatchScheduler* s = scheduler_.load()) s->SweepCancelled();
    }
  }
  static constexpr std::chrono::milliseconds kDeadlineSlack{20};

  int size() const override { return static_cast<int>(clip_.count); }
  batching::BatchKey key() const override { return key_; }
  batching::TimePoint deadline() const override { return deadline_; }
  uint32_t priority() const override { return priority_; }
  bool IsCancelled() const override { return cancelled_.load(); }

  // Called by ServedModel just before it enqueues the task on `scheduler`,
  // which must outlive the task (the call holds its model).
  void QueuingIn(batching::BatchScheduler* scheduler) { scheduler_.store(scheduler); }

  // Called on the batching thread when the task is taken into a batch,
  // before its clip is read: until then the owner may still change the
  // clip's bytes (under its own lock, which this takes too).
  virtual void Batched() {}

  // Completes the task with its logits: clip().count rows of `num_classes`.
  virtual void Complete(absl::Span<const float> logits, int64_t num_classes,
                        const ExecutionStats& stats) = 0;

 private:
  runtime::ClipView clip_;
  batching::BatchKey key_ = 0;
  batching::TimePoint deadline_ = batching::TimePoint::max();
  uint32_t priority_ = 0;
  std::atomic<bool> cancelled_{false};
  std::atomic<batching::BatchScheduler*> scheduler_{nullptr};
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_INFERENCE_TASK_H_
