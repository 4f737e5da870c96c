// InferenceTask: one request to a served model, whatever protocol it came in
// on. The protocol's call object implements it; ServedModel batches and runs
// it, then completes it exactly once through Complete() or Fail().
#ifndef CLIPSERVE_SERVER_INFERENCE_TASK_H_
#define CLIPSERVE_SERVER_INFERENCE_TASK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "absl/types/span.h"
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
  void OnCallCancelled() {
    if (std::chrono::steady_clock::now() + kDeadlineSlack < deadline_) {
      cancelled_.store(true, std::memory_order_relaxed);
    }
  }
  static constexpr std::chrono::milliseconds kDeadlineSlack{20};

  int size() const override { return static_cast<int>(clip_.count); }
  batching::BatchKey key() const override { return key_; }
  batching::TimePoint deadline() const override { return deadline_; }
  uint32_t priority() const override { return priority_; }
  bool IsCancelled() const override {
    return cancelled_.load(std::memory_order_relaxed);
  }

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
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_INFERENCE_TASK_H_
