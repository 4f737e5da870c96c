// Prometheus metrics of the server: what docs/metrics.md lists.
//
// Metrics owns the registry. Each served model gets a ModelMetrics whose
// handles are resolved once at load, so recording on the request path is a
// few atomic operations (prometheus-cpp counters and gauges) and one
// uncontended per-series lock per histogram observation: no registry lookup
// and no lock shared between models or requests.
#ifndef CLIPSERVE_SERVER_METRICS_H_
#define CLIPSERVE_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"

namespace clipserve::server {

// Default buckets of every duration histogram, in seconds: sub-millisecond
// queueing to multi-second CPU inference.
std::vector<double> DefaultDurationBuckets();

class Metrics;

// The series of one model version. Thread-safe.
class ModelMetrics {
 public:
  // Counts one answered request (clipserve_requests_total{code}) and its
  // time on the server.
  void CountRequest(absl::StatusCode code, double seconds);

  // The series below exist for served models only, not for
  // Metrics::unknown_model().
  prometheus::Histogram& queue_duration() { return *queue_duration_; }
  prometheus::Histogram& compute_duration() { return *compute_duration_; }
  prometheus::Histogram& decode_duration() { return *decode_duration_; }
  // Per batch, GPU instances only.
  prometheus::Histogram& upload_duration() { return *upload_duration_; }
  prometheus::Histogram& download_duration() { return *download_duration_; }
  prometheus::Counter& device_failures() { return *device_failures_; }
  prometheus::Counter& hangs() { return *hangs_; }
  prometheus::Histogram& batch_size() { return *batch_size_; }
  prometheus::Counter& batch_executions() { return *batch_executions_; }
  prometheus::Gauge& inflight() { return *inflight_; }
  prometheus::Gauge& ready() { return *ready_; }
  prometheus::Gauge& load_seconds() { return *load_seconds_; }
  prometheus::Gauge& queue_capacity() { return *queue_capacity_; }

 private:
  friend class Metrics;
  // max_batch_size 0: requests and their durations only.
  ModelMetrics(Metrics* metrics, const prometheus::Labels& labels,
               int max_batch_size);

  Metrics* const metrics_;
  const prometheus::Labels labels_;
  prometheus::Histogram* request_duration_;
  prometheus::Histogram* queue_duration_ = nullptr;
  prometheus::Histogram* compute_duration_ = nullptr;
  prometheus::Histogram* decode_duration_ = nullptr;
  prometheus::Histogram* upload_duration_ = nullptr;
  prometheus::Histogram* download_duration_ = nullptr;
  prometheus::Counter* device_failures_ = nullptr;
  prometheus::Counter* hangs_ = nullptr;
  prometheus::Histogram* batch_size_ = nullptr;
  prometheus::Counter* batch_executions_ = nullptr;
  prometheus::Gauge* inflight_ = nullptr;
  prometheus::Gauge* ready_ = nullptr;
  prometheus::Gauge* load_seconds_ = nullptr;
  prometheus::Gauge* queue_capacity_ = nullptr;
  // One counter per status code, made on first use.
  std::mutex codes_mu_;
  std::array<std::atomic<prometheus::Counter*>, 17> by_code_{};
};

class Metrics {
 public:
  // `duration_buckets`: increasing upper bounds in seconds.
  explicit Metrics(std::vector<double> duration_buckets = DefaultDurationBuckets());
  ~Metrics();

  // Videos asked to decode on the GPU (--decode-device cuda) that decoded
  // on the CPU instead.
  prometheus::Counter& decode_gpu_fallbacks() { return *decode_gpu_fallbacks_; }
  // Videos waiting for a decoder thread, and how many may wait
  // (--decode-queue-size) before requests get RESOURCE_EXHAUSTED.
  prometheus::Gauge& decode_queue_depth() { return *decode_queue_depth_; }
  prometheus::Gauge& decode_queue_capacity() { return *decode_queue_capacity_; }

  // For other families of the process (e.g. GpuMetrics, StreamMetrics).
  prometheus::Registry& registry() { return *registry_; }
  const std::vector<double>& duration_buckets() const { return duration_buckets_; }

  // What an exposer serves: the registry, and the values read at scrape
  // (queue depths, process_*).
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables() const;

  // The series of `model` at `version`; made on the first call, owned here,
  // and returned again to later calls (a version loaded again continues its
  // series).
  ModelMetrics* AddModel(const std::string& model, const std::string& version,
                         int max_batch_size);
  // Where requests for a model that does not exist are counted.
  ModelMetrics* unknown_model() { return unknown_; }

  // `queue_depth` is read at every scrape for clipserve_queue_depth, until
  // RemoveQueueDepth(owner) or another owner adds the same model and version.
  void AddQueueDepth(const std::string& model, const std::string& version,
                     const void* owner, std::function<double()> queue_depth);
  // Stops reading what `owner` added; returns once no scrape is reading it.
  void RemoveQueueDepth(const void* owner);

  // Model lifecycle (server/lifecycle/): loads of `model` that failed (the
  // series exists, at 0, from the model's first load attempt), and the
  // versions that stopped taking requests but still hold memory.
  prometheus::Counter& load_failures(const std::string& model);
  prometheus::Gauge& models_retiring() { return *models_retiring_; }
  // Passes over the repository completed (--model-control-mode poll): that
  // it grows shows the poller is alive, and lets a test wait for a pass.
  prometheus::Counter& repository_polls() { return *repository_polls_; }

 private:
  friend class ModelMetrics;
  class ScrapeTimeCollector;

  std::shared_ptr<prometheus::Registry> registry_;
  const std::vector<double> duration_buckets_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& queue_duration_;
  prometheus::Family<prometheus::Histogram>& compute_duration_;
  prometheus::Family<prometheus::Histogram>& upload_duration_;
  prometheus::Family<prometheus::Histogram>& download_duration_;
  prometheus::Family<prometheus::Counter>& device_failures_;
  prometheus::Family<prometheus::Counter>& hangs_;
  prometheus::Family<prometheus::Histogram>& decode_duration_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Counter>& batch_executions_;
  prometheus::Family<prometheus::Gauge>& inflight_;
  prometheus::Family<prometheus::Gauge>& ready_;
  prometheus::Family<prometheus::Gauge>& load_seconds_;
  prometheus::Family<prometheus::Gauge>& queue_capacity_;
  prometheus::Counter* decode_gpu_fallbacks_ = nullptr;
  prometheus::Gauge* decode_queue_depth_ = nullptr;
  prometheus::Gauge* decode_queue_capacity_ = nullptr;
  prometheus::Family<prometheus::Counter>& load_failures_;
  prometheus::Gauge* models_retiring_ = nullptr;
  prometheus::Counter* repository_polls_ = nullptr;
  std::shared_ptr<ScrapeTimeCollector> scrape_time_;
  std::mutex models_mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelMetrics>>
      models_;
  ModelMetrics* unknown_ = nullptr;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_METRICS_H_
