#include "server/inference_statistics.h"

#include <algorithm>

namespace clipserve::server {

InferenceStatistics::InferenceStatistics(int max_batch_size)
    : max_batch_size_(std::max(1, max_batch_size)),
      batches_(new BatchSlot[static_cast<size_t>(max_batch_size_)]) {}

InferenceStatistics::BatchSlot* InferenceStatistics::Slot(int batch_size) const {
  if (batch_size < 1 || batch_size > max_batch_size_) return nullptr;
  return &batches_[static_cast<size_t>(batch_size - 1)];
}

void InferenceStatistics::RecordRequest(bool ok, uint64_t ns) {
  (ok ? success_ : fail_).Add(1, ns);
}

void InferenceStatistics::RecordExecution(int batch_size, uint64_t requests,
                                          uint64_t queue_ns, uint64_t input_ns,
                                          uint64_t infer_ns,
                                          uint64_t last_inference_ms) {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  inference_count_.fetch_add(static_cast<uint64_t>(batch_size), kRelaxed);
  execution_count_.fetch_add(1, kRelaxed);
  queue_.Add(requests, queue_ns);
  compute_input_.Add(requests, requests * input_ns);
  compute_infer_.Add(requests, requests * infer_ns);
  compute_output_.count.fetch_add(requests, kRelaxed);
  if (BatchSlot* slot = Slot(batch_size)) {
    slot->executions.fetch_add(1, kRelaxed);
    slot->input_ns.fetch_add(input_ns, kRelaxed);
    slot->infer_ns.fetch_add(infer_ns, kRelaxed);
  }
  // Instances finish out of order: keep the latest.
  uint64_t seen = last_inference_ms_.load(kRelaxed);
  while (seen < last_inference_ms &&
         !last_inference_ms_.compare_exchange_weak(seen, last_inference_ms, kRelaxed)) {
  }
}

void InferenceStatistics::AddComputeOutputTime(int batch_size, uint64_t requests,
                                               uint64_t output_ns) {
  compute_output_.ns.fetch_add(requests * output_ns, std::memory_order_relaxed);
  if (BatchSlot* slot = Slot(batch_size)) {
    slot->output_ns.fetch_add(output_ns, std::memory_order_relaxed);
  }
}

InferenceStatistics::Snapshot InferenceStatistics::Read() const {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  Snapshot s;
  s.last_inference_ms = last_inference_ms_.load(kRelaxed);
  s.inference_count = inference_count_.load(kRelaxed);
  s.execution_count = execution_count_.load(kRelaxed);
  s.success = success_.Load();
  s.fail = fail_.Load();
  s.queue = queue_.Load();
  s.compute_input = compute_input_.Load();
  s.compute_infer = compute_infer_.Load();
  s.compute_output = compute_output_.Load();
  for (int size = 1; size <= max_batch_size_; ++size) {
    const BatchSlot& slot = *Slot(size);
    const uint64_t n = slot.executions.load(kRelaxed);
    if (n == 0) continue;
    BatchSize b;
    b.batch_size = static_cast<uint64_t>(size);
    b.compute_input = {n, slot.input_ns.load(kRelaxed)};
    b.compute_infer = {n, slot.infer_ns.load(kRelaxed)};
    b.compute_output = {n, slot.output_ns.load(kRelaxed)};
    s.batch_sizes.push_back(b);
  }
  return s;
}

}  // namespace clipserve::server
