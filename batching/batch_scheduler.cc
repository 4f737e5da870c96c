#include "batching/batch_scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace clipserve::batching {

absl::StatusOr<std::unique_ptr<BatchScheduler>> BatchScheduler::Create(
    BatchSchedulerOptions options, BatchProcessor processor) {
  if (absl::Status s = BatchQueue::ValidateOptions(options.queue); !s.ok()) {
    return s;
  }
  if (options.num_instances < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_instances must be >= 1, got ", options.num_instances));
  }
  if (!processor) {
    return absl::InvalidArgumentError("processor must not be empty");
  }
  return std::unique_ptr<BatchScheduler>(
      new BatchScheduler(std::move(options), std::move(processor)));
}

BatchScheduler::BatchScheduler(BatchSchedulerOptions options,
                               BatchProcessor processor)
    : queue_(std::move(options.queue)), processor_(std::move(processor)) {
  instances_.reserve(options.num_instances);
  for (int i = 0; i < options.num_instances; ++i) {
    instances_.emplace_back([this, i] {
      while (std::optional<Batch> batch = queue_.NextBatch()) {
        processor_(i, std::move(*batch));
      }
    });
  }
  expiry_ = std::thread([this] { queue_.ExpireUntilClosed(); });
}

BatchScheduler::~BatchScheduler() { Shutdown(); }

void BatchScheduler::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    queue_.Close();
    for (std::thread& t : instances_) t.join();
    expiry_.join();
  });
}

}  // namespace clipserve::batching
