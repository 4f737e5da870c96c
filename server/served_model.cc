#include "server/served_model.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

int64_t Micros(batching::Duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

uint64_t Nanos(batching::Duration d) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return ns > 0 ? static_cast<uint64_t>(ns) : 0;
}

}  // namespace

ServedModel::ServedModel(config::ModelConfig config, std::string version,
                         std::vector<std::string> labels,
                         std::vector<std::unique_ptr<runtime::Backend>> instances,
                         Metrics* registry, ModelMetrics* metrics)
    : config_(std::move(config)),
      version_(std::move(version)),
      labels_(std::move(labels)),
      spec_(instances.front()->spec()),
      default_timeout_(std::chrono::microseconds(
          config_.dynamic_batching().default_timeout_microseconds())),
      registry_(registry),
      metrics_(metrics),
      statistics_(config_.max_batch_size()) {
  for (std::unique_ptr<runtime::Backend>& backend : instances) {
    for (int i = 0; i < std::max(1, backend->max_concurrent_runs()); ++i) {
      LaneState lane;
      lane.backend = backend.get();
      lane.views.reserve(config_.max_batch_size());
      lanes_.push_back(std::move(lane));
    }
    backends_.push_back(std::move(backend));
  }
  lane_started_ns_.reset(new std::atomic<int64_t>[lanes_.size()]);
  for (size_t i = 0; i < lanes_.size(); ++i) lane_started_ns_[i].store(0);
}

absl::StatusOr<uint32_t> ServedModel::PriorityLevel(uint64_t requested) const {
  const config::ModelDynamicBatching& b = config_.dynamic_batching();
  if (requested == 0) return b.default_priority_level();
  if (requested > b.priority_levels()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "priority ", requested, " is out of range: model '", name(),
        "' has levels 1 (most urgent) to ", b.priority_levels()));
  }
  return static_cast<uint32_t>(requested);
}

absl::StatusOr<std::unique_ptr<ServedModel>> ServedModel::Create(
    config::ModelConfig config, std::string version,
    std::vector<std::string> labels,
    std::vector<std::unique_ptr<runtime::Backend>> instances,
    Metrics* metrics) {
  if (instances.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", config.name(), "' has no instances"));
  }
  const int64_t classes = instances.front()->spec().num_classes;
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", config.name(), "': labels.txt has ", labels.size(),
        " labels but the output has ", classes, " classes"));
  }
  batching::BatchSchedulerOptions options;
  options.queue = QueueOptionsFromConfig(config);
  options.num_instances = 0;  // one batching thread per lane
  for (const auto& backend : instances) {
    options.num_instances += std::max(1, backend->max_concurrent_runs());
  }
  ModelMetrics* model_metrics =
      metrics->AddModel(config.name(), version, config.max_batch_size());
  std::unique_ptr<ServedModel> model(new ServedModel(
      std::move(config), std::move(version), std::move(labels),
      std::move(instances), metrics, model_metrics));
  ServedModel* self = model.get();
  absl::StatusOr<std::unique_ptr<batching::BatchScheduler>> scheduler =
      batching::BatchScheduler::Create(
          std::move(options), [self](int instance, batching::Batch batch) {
            self->RunBatch(instance, std::move(batch));
          });
  if (!scheduler.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", self->name(), "': ", scheduler.status().message()));
  }
  model->scheduler_ = *std::move(scheduler);
  return model;
}

void ServedModel::GoLive() {
  const batching::BatchScheduler* queue_owner = scheduler_.get();
  registry_->AddQueueDepth(name(), version(), this, [queue_owner] {
    return static_cast<double>(queue_owner->queue().queued());
  });
  metrics_->queue_capacity().Set(
      static_cast<double>(scheduler_->queue().options().max_queue_size));
  metrics_->ready().Set(1);
}

ServedModel::~ServedModel() {
  // A scrape must not read the queue once it is gone.
  registry_->RemoveQueueDepth(this);
  if (scheduler_) scheduler_->Shutdown();
}

std::vector<std::string> ServedModel::devices() const {
  std::vector<std::string> out;
  for (const auto& b : backends_) out.push_back(b->device());
  return out;
}

void ServedModel::CheckDevice(const runtime::Backend& backend) {
  const absl::Status health = backend.health();
  if (health.ok()) return;
  if (!MarkUnhealthy(absl::Status(
          health.code(), absl::StrCat("instance on ", backend.device(),
                                      " stopped: ", health.message())))) {
    return;
  }
  metrics_->device_failures().Increment();
}

bool ServedModel::CheckHung(std::chrono::steady_clock::time_point now,
                            std::chrono::nanoseconds limit) {
  const int64_t now_ns = static_cast<int64_t>(Nanos(now.time_since_epoch()));
  for (size_t lane = 0; lane < lanes_.size(); ++lane) {
    const int64_t started = lane_started_ns_[lane].load(std::memory_order_relaxed);
    if (started == 0 || now_ns - started <= limit.count()) continue;
    if (!MarkUnhealthy(absl::UnavailableError(absl::StrCat(
            "instance on ", lanes_[lane].backend->device(),
            " hung: a batch has run for ", (now_ns - started) / 1'000'000,
            " ms, over the limit of ", limit.count() / 1'000'000,
            " ms (--model-hang-seconds)")))) {
      return false;
    }
    metrics_->hangs().Increment();
    return true;
  }
  return false;
}

bool ServedModel::MarkUnhealthy(const absl::Status& why) {
  std::function<void(const absl::Status&)> handler;
  {
    std::lock_guard<std::mutex> lock(failure_mu_);
    if (!healthy_.exchange(false)) return false;  // Told already.
    handler = on_device_failure_;
  }
  metrics_->ready().Set(0);
  LogError(absl::StrCat("model '", name(), "' version ", version_, ": ",
                        why.message(), "; the model is no longer ready"));
  if (handler) handler(why);
  return true;
}

void ServedModel::RunBatch(int lane, batching::Batch batch) {
  for (const batching::Batch::Entry& e : batch.entries) {
    static_cast<InferenceTask*>(e.task)->Batched();
  }
  const absl::Span<const batching::Batch::Entry> entries(batch.entries);
  const bool alone = entries.size() == 1;
  const absl::Status status =
      Execute(lane, entries, batch.size, batch.formed_time, /*fail=*/alone);
  if (status.ok() || alone) return;
  // The model failed on a batch of several requests. One of them may be the
  // cause (an input the model raises on): each runs again alone, so that
  // only those that fail alone get the error. Not after a device failure:
  // the instance is no longer used.
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!healthy()) {
      static_cast<InferenceTask*>(entries[i].task)->Fail(status);
      continue;
    }
    // Answered either way (fail = true).
    (void)Execute(lane, entries.subspan(i, 1), entries[i].task->size(),
                  batch.formed_time, /*fail=*/true);
  }
}

absl::Status ServedModel::Execute(int lane,
                                  absl::Span<const batching::Batch::Entry> entries,
                                  int size, batching::TimePoint formed_time,
                                  bool fail) {
  LaneState& state = lanes_[lane];
  state.views.clear();
  for (const batching::Batch::Entry& e : entries) {
    state.views.push_back(static_cast<InferenceTask*>(e.task)->clip());
  }
  runtime::RunTimings timings;
  const auto start = std::chrono::steady_clock::now();
  lane_started_ns_[lane].store(static_cast<int64_t>(Nanos(start.time_since_epoch())),
                               std::memory_order_relaxed);
  const absl::Status status =
      state.backend->Run(state.views, &state.logits, &timings);
  lane_started_ns_[lane].store(0, std::memory_order_relaxed);
  const auto done = std::chrono::steady_clock::now();
  if (!status.ok()) CheckDevice(*state.backend);

  ExecutionStats stats;
  stats.batch_size = size;
  stats.compute_us = timings.compute_us;
  metrics_->batch_size().Observe(size);
  metrics_->batch_executions().Increment();
  if (!status.ok()) {
    if (fail) {
      for (const batching::Batch::Entry& e : entries) {
        static_cast<InferenceTask*>(e.task)->Fail(status);
      }
    }
    return status;
  }
  if (timings.device_copies) {
    metrics_->upload_duration().Observe(timings.upload_us * 1e-6);
    metrics_->download_duration().Observe(timings.download_us * 1e-6);
  }
  const uint64_t requests = entries.size();
  // Before any answer: a client holding its answer finds it counted.
  uint64_t queue_ns = 0;
  for (const batching::Batch::Entry& e : entries) {
    queue_ns += Nanos(formed_time - e.enqueue_time);
  }
  const auto epoch_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  statistics_.RecordExecution(size, requests, queue_ns,
                              Nanos(start - formed_time), Nanos(done - start),
                              static_cast<uint64_t>(epoch_ms.count()));
  const int64_t classes = spec_.num_classes;
  size_t row = 0;
  for (const batching::Batch::Entry& e : entries) {
    auto* task = static_cast<InferenceTask*>(e.task);
    const int64_t count = task->clip().count;
    stats.queue_us = Micros(formed_time - e.enqueue_time);
    task->Complete(absl::MakeConstSpan(state.logits.data() + row * classes,
                                       count * classes),
                   classes, stats);
    row += count;
  }
  statistics_.AddComputeOutputTime(
      size, requests, Nanos(std::chrono::steady_clock::now() - done));
  return status;
}

}  // namespace clipserve::server
