// GPU metrics read through NVML, which is loaded at run time with dlopen(), so
// the server neither links against nor needs the NVIDIA driver.
//
// Families (docs/metrics.md), labels gpu="<index>" and gpu_uuid="<NVML UUID>":
//   clipserve_gpu_utilization_ratio     gauge    utilisation.gpu / 100
//   clipserve_gpu_memory_used_bytes     gauge    memory in use
//   clipserve_gpu_memory_total_bytes    gauge    memory in all
//   clipserve_gpu_power_watts           gauge    power draw
//   clipserve_gpu_energy_joules_total   counter  energy since the driver loaded
//
// Where an NVML call fails for one device (NVML_ERROR_NOT_SUPPORTED, ...) only
// that series is affected: a gauge is left out (removed if it was there; an
// absent series means "unknown", a stale one would mislead), the energy counter
// keeps its last value (removing and re-adding it would look like a reset to
// rate()). Each (device, metric) logs one warning the first time it fails.
//
// Thread-safe. `registry` must outlive the GpuMetrics, and a registry should
// hold at most one GpuMetrics: the destructor removes the GPU families from it.
#ifndef CLIPSERVE_SERVER_GPU_METRICS_H_
#define CLIPSERVE_SERVER_GPU_METRICS_H_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace prometheus {
class Counter;
class Gauge;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace clipserve::server {

class GpuMetrics {
 public:
  // dlopen()s `library`, resolves the NVML functions, calls nvmlInit_v2,
  // counts the devices, registers the GPU families in `registry`, takes a
  // first sample and starts a thread that samples every `interval` (clamped to
  // 1 ms .. 24 h). Where NVML cannot be loaded or initialised, or reports no
  // devices, logs one line saying so and why and returns nullptr: no GPU
  // families are registered and nothing else fails.
  static std::unique_ptr<GpuMetrics> Start(
      prometheus::Registry& registry, std::chrono::milliseconds interval,
      const std::string& library = "libnvidia-ml.so.1");

  // Stops the sampling thread promptly (it waits on a condition variable),
  // removes the GPU families from the registry, calls nvmlShutdown and
  // dlclose()s the library.
  ~GpuMetrics();

  GpuMetrics(const GpuMetrics&) = delete;
  GpuMetrics& operator=(const GpuMetrics&) = delete;

  // Devices NVML reported at Start (> 0).
  int device_count() const { return device_count_; }

  // Reads every device once and updates the series: what the thread does each
  // interval. Public for tests.
  void SampleOnce();

 private:
  struct Api;     // the resolved NVML functions
  struct Device;  // one GPU: handle, labels and its series

  GpuMetrics(prometheus::Registry& registry, std::chrono::milliseconds interval,
             void* library, std::unique_ptr<Api> api, int device_count);
  void Run();
  void SampleDevice(Device& device);

  prometheus::Registry& registry_;
  const std::chrono::milliseconds interval_;
  void* const library_;  // dlopen() handle
  const std::unique_ptr<Api> api_;
  const int device_count_;

  prometheus::Family<prometheus::Gauge>* utilization_ = nullptr;
  prometheus::Family<prometheus::Gauge>* memory_used_ = nullptr;
  prometheus::Family<prometheus::Gauge>* memory_total_ = nullptr;
  prometheus::Family<prometheus::Gauge>* power_ = nullptr;
  prometheus::Family<prometheus::Counter>* energy_ = nullptr;

  std::mutex sample_mu_;  // serialises SampleOnce; guards devices_' series
  std::vector<std::unique_ptr<Device>> devices_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by stop_mu_
  std::thread thread_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_GPU_METRICS_H_
