// ServedModel: one loaded model version with its batcher and instances, and
// what it has done (statistics(), for the KServe ModelStatistics RPC).
//
// Ownership: the ModelRepository holds each live version in a shared_ptr,
// and every request holds one from the moment it finds the model until it
// is answered. A version that is replaced or unloaded is marked retired(),
// stops being found, and is destroyed by the repository once no request
// holds it, so a request that found it is always answered by it.
#ifndef CLIPSERVE_SERVER_SERVED_MODEL_H_
#define CLIPSERVE_SERVER_SERVED_MODEL_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "batching/batch_scheduler.h"
#include "clipserve/config.pb.h"
#include "runtime/backend.h"
#include "server/inference_statistics.h"
#include "server/inference_task.h"
#include "server/metrics.h"

namespace clipserve::server {

class ServedModel {
 public:
  // Takes the instances (at least one, all with the same spec) and starts
  // one batching thread per lane: an instance has max_concurrent_runs()
  // lanes (1 on the CPU, a staging slot each on CUDA). `labels` is empty or
  // has one entry per class. Registers the model's series in `metrics`
  // (which must outlive it); the repository reports it ready when it goes
  // live.
  static absl::StatusOr<std::unique_ptr<ServedModel>> Create(
      config::ModelConfig config, std::string version,
      std::vector<std::string> labels,
      std::vector<std::unique_ptr<runtime::Backend>> instances,
      Metrics* metrics);

  // Drains (see Shutdown).
  ~ServedModel();

  // Reports the version's queue in the metrics (clipserve_queue_depth read
  // at each scrape, clipserve_queue_capacity) and ready = 1, in place of
  // another instance of the same version. Called by the repository when
  // the version goes live; a version loaded and then dropped never shows.
  void GoLive();

  // The version is no longer served (replaced or unloaded): requests that
  // hold it are still answered by it; holders that outlive one request (live
  // streams) look the model up again. Set by the repository.
  bool retired() const { return retired_.load(std::memory_order_acquire); }
  void MarkRetired() { retired_.store(true, std::memory_order_release); }

  const std::string& name() const { return config_.name(); }
  const std::string& version() const { return version_; }
  const config::ModelConfig& config() const { return config_; }
  const runtime::ModelSpec& spec() const { return spec_; }
  // Empty when the model has no labels.txt.
  const std::vector<std::string>& labels() const { return labels_; }
  int num_instances() const { return static_cast<int>(backends_.size()); }
  // Batching threads: batches the model may have in flight at once.
  int num_lanes() const { return static_cast<int>(lanes_.size()); }
  // Whether the weights are random (no weights file).
  bool untrained() const { return backends_.front()->untrained(); }
  // False once an instance's device became unusable (Backend::health()):
  // the model is no longer ready, and the handler below has been told.
  bool healthy() const { return healthy_.load(std::memory_order_acquire); }
  // Called once, from a batching thread, when an instance reports its device
  // unusable, with that report. Set before requests arrive.
  void SetDeviceFailureHandler(std::function<void(const absl::Status&)> handler) {
    std::lock_guard<std::mutex> lock(failure_mu_);
    on_device_failure_ = std::move(handler);
  }
  // The hang watchdog (server/hang_watchdog.h) calls this about once a
  // second. A batch that has run on one of the model's instances for longer
  // than `limit` (at `now`) makes the model unhealthy exactly as an unusable
  // device does: not ready, clipserve_model_hangs_total counted, the log
  // names the instance, and the handler above is told (the server's health
  // turns NOT_SERVING, so that an orchestrator restarts it: a thread stuck
  // inside LibTorch cannot be stopped in-process). The stuck batch's requests
  // are answered if it ever ends; the other instances keep serving the
  // queue. Returns whether this call found the model newly hung.
  bool CheckHung(std::chrono::steady_clock::time_point now,
                 std::chrono::nanoseconds limit);
  // Where each instance runs, e.g. "cpu" or "cuda:0".
  std::vector<std::string> devices() const;
  // The deadline of a request whose client asked for `requested`
  // (TimePoint::max(): none): that one, else now + the model's
  // default_timeout_microseconds when it sets one.
  batching::TimePoint Deadline(batching::TimePoint requested) const {
    if (requested != batching::TimePoint::max() ||
        default_timeout_ == batching::Duration::zero()) {
      return requested;
    }
    return std::chrono::steady_clock::now() + default_timeout_;
  }

  // The batching level of a request asking for `requested` priority (0: the
  // model's default level), or INVALID_ARGUMENT when it is over the model's
  // priority_levels.
  absl::StatusOr<uint32_t> PriorityLevel(uint64_t requested) const;

  // Queues `task` (its clip and key already set). On error the task was not
  // queued and the caller completes it. Once queued, the task's
  // OnCallCancelled() sweeps it out of the queue.
  absl::Status Enqueue(InferenceTask* task) {
    task->QueuingIn(scheduler_.get());
    return scheduler_->Enqueue(task);
  }

  // Sweeps out the queued tasks that are cancelled now (see
  // BatchQueue::SweepCancelled), for protocols that cancel tasks without
  // OnCallCancelled() (a KServe stream cancels all of its requests at once).
  void SweepCancelled() { scheduler_->SweepCancelled(); }

  ModelMetrics& metrics() const { return *metrics_; }
  // Recorded by RunBatch (executions) and by each request's CallAccounting
  // (answers).
  InferenceStatistics& statistics() { return statistics_; }
  const InferenceStatistics& statistics() const { return statistics_; }

  // Refuses new requests, answers every queued one, and returns when the
  // instances are idle. Idempotent. The repository keeps the ready gauge
  // (another instance of the same version may be live).
  void Shutdown() { scheduler_->Shutdown(); }

 private:
  // What one lane reuses from batch to batch.
  struct LaneState {
    runtime::Backend* backend = nullptr;
    std::vector<runtime::ClipView> views;
    std::vector<float> logits;
  };

  ServedModel(config::ModelConfig config, std::string version,
              std::vector<std::string> labels,
              std::vector<std::unique_ptr<runtime::Backend>> instances,
              Metrics* registry, ModelMetrics* metrics);
  void RunBatch(int lane, batching::Batch batch);
  // Runs `entries` (`size` slots) on the lane's instance and answers them.
  // On failure, answers them with the error only when `fail`. Returns the
  // run's status.
  absl::Status Execute(int lane, absl::Span<const batching::Batch::Entry> entries,
                       int size, batching::TimePoint formed_time, bool fail);
  // After a failed batch on `backend`: if its device is now unusable, marks
  // the model unhealthy and not ready, logs why, and tells the handler.
  void CheckDevice(const runtime::Backend& backend);
  // The first time only: healthy_ = false, ready = 0, logs `why` and tells
  // the handler. Returns whether this call was the first.
  bool MarkUnhealthy(const absl::Status& why);

  const config::ModelConfig config_;
  const std::string version_;
  const std::vector<std::string> labels_;
  const runtime::ModelSpec spec_;
  const batching::Duration default_timeout_;
  Metrics* const registry_;
  ModelMetrics* const metrics_;
  InferenceStatistics statistics_;
  std::vector<std::unique_ptr<runtime::Backend>> backends_;
  std::vector<LaneState> lanes_;
  // Per lane: when its running batch started (steady clock, ns), 0 if idle.
  std::unique_ptr<std::atomic<int64_t>[]> lane_started_ns_;
  std::atomic<bool> healthy_{true};
  std::atomic<bool> retired_{false};
  std::mutex failure_mu_;
  std::function<void(const absl::Status&)> on_device_failure_;  // failure_mu_
  // Last member: its threads use the members above and stop first.
  std::unique_ptr<batching::BatchScheduler> scheduler_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_SERVED_MODEL_H_
