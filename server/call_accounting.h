// CallAccounting: what one request, on any protocol, records in the metrics
// and in its model's statistics (server/inference_statistics.h). It starts
// counting under Metrics::unknown_model() (no statistics) and moves to its
// model once the model is found; Answered() must be called exactly once,
// before the answer is sent.
#ifndef CLIPSERVE_SERVER_CALL_ACCOUNTING_H_
#define CLIPSERVE_SERVER_CALL_ACCOUNTING_H_

#include <chrono>
#include <cstdint>

#include "absl/status/status.h"
#include "server/inference_task.h"
#include "server/metrics.h"
#include "server/served_model.h"

namespace clipserve::server {

class CallAccounting {
 public:
  explicit CallAccounting(ModelMetrics* unknown_model) : metrics_(unknown_model) {}

  // From now on the call counts under `model`, and is in flight there.
  void BindModel(ServedModel* model) {
    metrics_ = &model->metrics();
    statistics_ = &model->statistics();
    metrics_->inflight().Increment();
  }

  // Records the server-side split of an executed request.
  void Executed(const ExecutionStats& stats) {
    metrics_->queue_duration().Observe(stats.queue_us * 1e-6);
    metrics_->compute_duration().Observe(stats.compute_us * 1e-6);
  }

  // Counts the answer and its time since the call arrived.
  void Answered(absl::StatusCode code) {
    const auto elapsed = std::chrono::steady_clock::now() - arrival_;
    metrics_->CountRequest(code, std::chrono::duration<double>(elapsed).count());
    if (statistics_ != nullptr) {
      metrics_->inflight().Decrement();
      statistics_->RecordRequest(
          code == absl::StatusCode::kOk,
          static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()));
    }
  }

  ModelMetrics& metrics() const { return *metrics_; }

 private:
  const std::chrono::steady_clock::time_point arrival_ =
      std::chrono::steady_clock::now();
  ModelMetrics* metrics_;
  InferenceStatistics* statistics_ = nullptr;  // set once bound to a model
};

// The steady-clock time at which a gRPC call with `deadline` ends
// (TimePoint::max() for none).
inline batching::TimePoint SteadyDeadline(
    std::chrono::system_clock::time_point deadline) {
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return batching::TimePoint::max();
  }
  const auto left = deadline - std::chrono::system_clock::now();
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<batching::Duration>(left);
}

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_CALL_ACCOUNTING_H_
