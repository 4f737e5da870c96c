#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace clipserve::server {
namespace {


// Buckets at every batch size up to 64, else at powers of two.
prometheus::Histogram::BucketBoundaries BatchBuckets(int max_batch_size) {
  prometheus::Histogram::BucketBoundaries b;
  if (max_batch_size <= 64) {
    for (int i = 1; i <= max_batch_size; ++i) b.push_back(i);
  } else {
    for (int i = 1; i < max_batch_size; i *= 2) b.push_back(i);
    b.push_back(max_batch_size);
  }
  return b;
}

prometheus::MetricFamily GaugeFamily(const std::string& name,
                                     const std::string& help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddValue(prometheus::MetricFamily* family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family->metric.push_back(std::move(m));
}

// The standard process_* metrics, read from /proc at scrape.
void CollectProcess(std::vector<prometheus::MetricFamily>* out) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold
  // spaces: field 3 (state) is the first.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return;
  std::istringstream fields(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  if (f.size() < 22) return;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // Field n of stat(5) is f[n - 3].
  const double cpu = (std::stod(f[14 - 3]) + std::stod(f[15 - 3])) / ticks;
  const double start_ticks = std::stod(f[22 - 3]);
  const double vsize = std::stod(f[23 - 3]);
  const double rss = std::stod(f[24 - 3]) * page;

  double boot_time = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);) {
    if (line.rfind("btime ", 0) == 0) boot_time = std::stod(line.substr(6));
  }

  int fds = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) fds += e->d_name[0] != '.';
    closedir(dir);
    --fds;  // the directory stream's own descriptor
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);

  prometheus::MetricFamily cpu_f;
  cpu_f.name = "process_cpu_seconds_total";
  cpu_f.help = "Total user and system CPU time spent in seconds.";
  cpu_f.type = prometheus::MetricType::Counter;
  AddValue(&cpu_f, cpu);
  out->push_back(std::move(cpu_f));
  auto gauge = [&](const char* name, const char* help, double v) {
    prometheus::MetricFamily g = GaugeFamily(name, help);
    AddValue(&g, v);
    out->push_back(std::move(g));
  };
  gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss);
  gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", vsize);
  gauge("process_open_fds", "Number of open file descriptors.", fds);
  gauge("process_max_fds", "Maximum number of open file descriptors.",
        static_cast<double>(limit.rlim_cur));
  gauge("process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        boot_time + start_ticks / ticks);
}

}  // namespace

std::vector<double> DefaultDurationBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,   1,      2.5,   5,    10,   30};
}

// Values read when Prometheus scrapes: queue depths and process_*.
class Metrics::ScrapeTimeCollector : public prometheus::Collectable {
 public:
  // Replaces what another owner added for the same labels.
  void Add(prometheus::Labels labels, const void* owner,
           std::function<double()> read) {
    std::lock_guard<std::mutex> lock(mu_);
    for (Depth& d : depths_) {
      if (d.labels == labels) {
        d.owner = owner;
        d.read = std::move(read);
        return;
      }
    }
    depths_.push_back({std::move(labels), owner, std::move(read)});
  }

  void Remove(const void* owner) {
    std::lock_guard<std::mutex> lock(mu_);
    depths_.erase(std::remove_if(depths_.begin(), depths_.end(),
                                 [owner](const Depth& d) { return d.owner == owner; }),
                  depths_.end());
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    prometheus::MetricFamily depth = GaugeFamily(
        "clipserve_queue_depth", "Requests waiting in the model's queue.");
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Depth& d : depths_) {
        std::vector<prometheus::ClientMetric::Label> l;
        for (const auto& [k, v] : d.labels) l.push_back({k, v});
        AddValue(&depth, d.read(), std::move(l));
      }
    }
    if (!depth.metric.empty()) out.push_back(std::move(depth));
    CollectProcess(&out);
    return out;
  }

 private:
  struct Depth {
    prometheus::Labels labels;
    const void* owner;
    std::function<double()> read;
  };
  mutable std::mutex mu_;
  std::vector<Depth> depths_;
};

Metrics::Metrics(std::vector<double> duration_buckets)
    : registry_(std::make_shared<prometheus::Registry>()),
      duration_buckets_(std::move(duration_buckets)),
      requests_(prometheus::BuildCounter()
                    .Name("clipserve_requests_total")
                    .Help("Requests answered, by final gRPC status code.")
                    .Register(*registry_)),
      request_duration_(
          prometheus::BuildHistogram()
              .Name("clipserve_request_duration_seconds")
              .Help("Time from a request's arrival to its answer on the server.")
              .Register(*registry_)),
      queue_duration_(
          prometheus::BuildHistogram()
              .Name("clipserve_queue_duration_seconds")
              .Help("Time a request waited in its model's queue.")
              .Register(*registry_)),
      compute_duration_(
          prometheus::BuildHistogram()
              .Name("clipserve_compute_duration_seconds")
              .Help("Run time of the batch a request was in.")
              .Register(*registry_)),
      upload_duration_(
          prometheus::BuildHistogram()
              .Name("clipserve_batch_upload_duration_seconds")
              .Help("Host-to-device copy of a batch (GPU instances; CUDA "
                    "events).")
              .Register(*registry_)),
      download_duration_(
          prometheus::BuildHistogram()
              .Name("clipserve_batch_download_duration_seconds")
              .Help("Device-to-host copy of a batch's logits (GPU instances; "
                    "CUDA events).")
              .Register(*registry_)),
      device_failures_(
          prometheus::BuildCounter()
              .Name("clipserve_device_failures_total")
              .Help("Instances that stopped after a device error left their "
                    "device unusable.")
              .Register(*registry_)),
      hangs_(prometheus::BuildCounter()
                 .Name("clipserve_model_hangs_total")
                 .Help("Batches that ran past --model-hang-seconds; the model "
                       "is then no longer ready.")
                 .Register(*registry_)),
      decode_duration_(prometheus::BuildHistogram()
                           .Name("clipserve_decode_duration_seconds")
                           .Help("Decoding, sampling and cropping an encoded "
                                 "video.")
                           .Register(*registry_)),
      batch_size_(prometheus::BuildHistogram()
                      .Name("clipserve_batch_size")
                      .Help("Clips in each batch executed.")
                      .Register(*registry_)),
      batch_executions_(prometheus::BuildCounter()
                            .Name("clipserve_batch_executions_total")
                            .Help("Batches executed.")
                            .Register(*registry_)),
      inflight_(prometheus::BuildGauge()
                    .Name("clipserve_inflight_requests")
                    .Help("Requests accepted and not yet answered.")
                    .Register(*registry_)),
      ready_(prometheus::BuildGauge()
                 .Name("clipserve_model_ready")
                 .Help("1 while the model version serves; 0 once it is unloaded or "
                       "replaced, its device fails, or the server drains.")
                 .Register(*registry_)),
      load_seconds_(prometheus::BuildGauge()
                        .Name("clipserve_model_load_seconds")
                        .Help("Time loading and warming up the model took.")
                        .Register(*registry_)),
      queue_capacity_(prometheus::BuildGauge()
                          .Name("clipserve_queue_capacity")
                          .Help("Queued requests beyond which new ones are "
                                "refused (max_queue_size).")
                          .Register(*registry_)),
      load_failures_(prometheus::BuildCounter()
                         .Name("clipserve_model_load_failures_total")
                         .Help("Loads of a model (a new version or config) "
                               "that failed; what served before still does.")
                         .Register(*registry_)),
      scrape_time_(std::make_shared<ScrapeTimeCollector>()) {
  models_retiring_ = &prometheus::BuildGauge()
                          .Name("clipserve_models_retiring")
                          .Help("Model versions no longer served that still "
                                "answer requests they took (freed after).")
                          .Register(*registry_)
                          .Add({});
  repository_polls_ = &prometheus::BuildCounter()
                           .Name("clipserve_repository_polls_total")
                           .Help("Passes over the model repository "
                                 "(--model-control-mode poll) completed.")
                           .Register(*registry_)
                           .Add({});
  unknown_ = AddModel("unknown", "", 0);
  decode_gpu_fallbacks_ =
      &prometheus::BuildCounter()
           .Name("clipserve_decode_gpu_fallbacks_total")
           .Help("Videos asked to decode on the GPU (--decode-device cuda) "
                 "that decoded on the CPU.")
           .Register(*registry_)
           .Add({});
  decode_queue_depth_ = &prometheus::BuildGauge()
                             .Name("clipserve_decode_queue_depth")
                             .Help("Encoded videos waiting for a decoder thread.")
                             .Register(*registry_)
                             .Add({});
  decode_queue_capacity_ =
      &prometheus::BuildGauge()
           .Name("clipserve_decode_queue_capacity")
           .Help("Videos that may wait for a decoder (--decode-queue-size) "
                 "before requests get RESOURCE_EXHAUSTED.")
           .Register(*registry_)
           .Add({});
}

std::vector<std::shared_ptr<prometheus::Collectable>> Metrics::collectables()
    const {
  return {registry_, scrape_time_};
}

Metrics::~Metrics() = default;

ModelMetrics* Metrics::AddModel(const std::string& model,
                                const std::string& version,
                                int max_batch_size) {
  std::lock_guard<std::mutex> lock(models_mu_);
  std::unique_ptr<ModelMetrics>& m = models_[{model, version}];
  if (m == nullptr) {
    m.reset(new ModelMetrics(this, {{"model", model}, {"version", version}},
                             max_batch_size));
  }
  return m.get();
}

void Metrics::AddQueueDepth(const std::string& model, const std::string& version,
                            const void* owner,
                            std::function<double()> queue_depth) {
  scrape_time_->Add({{"model", model}, {"version", version}}, owner,
                    std::move(queue_depth));
}

void Metrics::RemoveQueueDepth(const void* owner) { scrape_time_->Remove(owner); }

prometheus::Counter& Metrics::load_failures(const std::string& model) {
  return load_failures_.Add({{"model", model}});
}

ModelMetrics::ModelMetrics(Metrics* metrics, const prometheus::Labels& labels,
                           int max_batch_size)
    : metrics_(metrics),
      labels_(labels),
      request_duration_(
          &metrics->request_duration_.Add(labels, metrics->duration_buckets_)) {
  if (max_batch_size == 0) return;
  const auto& buckets = metrics->duration_buckets_;
  queue_duration_ = &metrics->queue_duration_.Add(labels, buckets);
  compute_duration_ = &metrics->compute_duration_.Add(labels, buckets);
  decode_duration_ = &metrics->decode_duration_.Add(labels, buckets);
  upload_duration_ = &metrics->upload_duration_.Add(labels, buckets);
  download_duration_ = &metrics->download_duration_.Add(labels, buckets);
  device_failures_ = &metrics->device_failures_.Add(labels);
  hangs_ = &metrics->hangs_.Add(labels);
  batch_size_ = &metrics->batch_size_.Add(labels, BatchBuckets(max_batch_size));
  batch_executions_ = &metrics->batch_executions_.Add(labels);
  inflight_ = &metrics->inflight_.Add(labels);
  ready_ = &metrics->ready_.Add(labels);
  load_seconds_ = &metrics->load_seconds_.Add(labels);
  queue_capacity_ = &metrics->queue_capacity_.Add(labels);
}

void ModelMetrics::CountRequest(absl::StatusCode code, double seconds) {
  request_duration_->Observe(seconds);
  const size_t i = static_cast<size_t>(code);
  if (i >= by_code_.size()) return;
  prometheus::Counter* c = by_code_[i].load(std::memory_order_acquire);
  if (c == nullptr) {
    std::lock_guard<std::mutex> lock(codes_mu_);
    c = by_code_[i].load(std::memory_order_relaxed);
    if (c == nullptr) {
      prometheus::Labels l = labels_;
      l["code"] = absl::StatusCodeToString(code);  // "INVALID_ARGUMENT", ...
      c = &metrics_->requests_.Add(l);
      by_code_[i].store(c, std::memory_order_release);
    }
  }
  c->Increment();
}

}  // namespace clipserve::server
