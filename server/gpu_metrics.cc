#include "server/gpu_metrics.h"

#include <dlfcn.h>

#include <algorithm>
#include <string>
#include <utility>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/log.h"

// The parts of NVML's C API we use, declared here so that nvml.h is not
// needed at build time. The types are global, as nvml.h declares them, so
// that the function pointers below have the library functions' exact types
// (UBSan's -fsanitize=function checks each call through them).
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

namespace clipserve::server {
namespace {

using nvmlReturn_t = int;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr unsigned int kUuidBufferSize = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE

// The per-device readings, indices into Device::warned.
enum Reading { kUuid, kUtilization, kMemory, kPower, kEnergy, kNumReadings };

}  // namespace

struct GpuMetrics::Api {
  nvmlReturn_t (*init)(void) = nullptr;
  nvmlReturn_t (*shutdown)(void) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*get_count)(unsigned int*) = nullptr;
  nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*get_uuid)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*get_memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*get_power)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*get_energy)(nvmlDevice_t, unsigned long long*) = nullptr;

  std::string Error(nvmlReturn_t code) const {
    const char* s = error_string(code);
    return (s != nullptr ? std::string(s) : std::string("error")) + " (" +
           std::to_string(code) + ")";
  }
};

struct GpuMetrics::Device {
  unsigned int index = 0;
  nvmlDevice_t handle = nullptr;
  prometheus::Labels labels;
  prometheus::Gauge* utilization = nullptr;
  prometheus::Gauge* memory_used = nullptr;
  prometheus::Gauge* memory_total = nullptr;
  prometheus::Gauge* power = nullptr;
  prometheus::Counter* energy = nullptr;
  bool warned[kNumReadings] = {};
};

namespace {

template <typename Fn>
bool Resolve(void* library, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(library, name));
  if (*fn == nullptr) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
    return false;
  }
  return true;
}

// Sets the gauge `*series` of `family` to `value`, adding it first if needed.
void SetGauge(prometheus::Family<prometheus::Gauge>& family,
              const prometheus::Labels& labels, prometheus::Gauge** series,
              double value) {
  if (*series == nullptr) *series = &family.Add(labels);
  (*series)->Set(value);
}

// Leaves the gauge `*series` out of `family` (the reading failed).
void DropGauge(prometheus::Family<prometheus::Gauge>& family,
               prometheus::Gauge** series) {
  if (*series == nullptr) return;
  family.Remove(*series);
  *series = nullptr;
}

}  // namespace

std::unique_ptr<GpuMetrics> GpuMetrics::Start(
    prometheus::Registry& registry, std::chrono::milliseconds interval,
    const std::string& library) {
  const std::string off = "GPU metrics off: ";
  dlerror();
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    LogInfo(off + "cannot load NVML (" + library +
            "): " + (why != nullptr ? why : "dlopen failed"));
    return nullptr;
  }

  auto api = std::make_unique<Api>();
  std::string missing;
  // Required: without these there is nothing to do.
  Resolve(handle, "nvmlInit_v2", &api->init, &missing);
  Resolve(handle, "nvmlShutdown", &api->shutdown, &missing);
  Resolve(handle, "nvmlErrorString", &api->error_string, &missing);
  Resolve(handle, "nvmlDeviceGetCount_v2", &api->get_count, &missing);
  Resolve(handle, "nvmlDeviceGetHandleByIndex_v2", &api->get_handle, &missing);
  if (!missing.empty()) {
    LogWarning(off + library + " lacks " + missing);
    dlclose(handle);
    return nullptr;
  }
  // Optional: a missing one leaves its series out, as NOT_SUPPORTED would.
  std::string absent;
  Resolve(handle, "nvmlDeviceGetUUID", &api->get_uuid, &absent);
  Resolve(handle, "nvmlDeviceGetUtilizationRates", &api->get_utilization,
          &absent);
  Resolve(handle, "nvmlDeviceGetMemoryInfo", &api->get_memory, &absent);
  Resolve(handle, "nvmlDeviceGetPowerUsage", &api->get_power, &absent);
  Resolve(handle, "nvmlDeviceGetTotalEnergyConsumption", &api->get_energy,
          &absent);

  nvmlReturn_t rc = api->init();
  if (rc != NVML_SUCCESS) {
    LogWarning(off + "nvmlInit_v2 failed: " + api->Error(rc));
    dlclose(handle);
    return nullptr;
  }
  unsigned int count = 0;
  rc = api->get_count(&count);
  if (rc != NVML_SUCCESS || count == 0) {
    if (rc != NVML_SUCCESS) {
      LogWarning(off + "nvmlDeviceGetCount_v2 failed: " + api->Error(rc));
    } else {
      LogInfo(off + "NVML reports no GPUs");
    }
    api->shutdown();
    dlclose(handle);
    return nullptr;
  }

  interval = std::clamp<std::chrono::milliseconds>(
      interval, std::chrono::milliseconds(1), std::chrono::hours(24));
  LogInfo("GPU metrics: " + std::to_string(count) + " GPU(s) through " +
          library + ", sampling every " + std::to_string(interval.count()) +
          " ms" + (absent.empty() ? "" : "; NVML lacks " + absent));
  return std::unique_ptr<GpuMetrics>(new GpuMetrics(
      registry, interval, handle, std::move(api), static_cast<int>(count)));
}

GpuMetrics::GpuMetrics(prometheus::Registry& registry,
                       std::chrono::milliseconds interval, void* library,
                       std::unique_ptr<Api> api, int device_count)
    : registry_(registry),
      interval_(interval),
      library_(library),
      api_(std::move(api)),
      device_count_(device_count) {
  utilization_ = &prometheus::BuildGauge()
                      .Name("clipserve_gpu_utilization_ratio")
                      .Help(
                          "Fraction of the last sample period during which "
                          "a kernel ran on the GPU, 0..1")
                      .Register(registry_);
  memory_used_ = &prometheus::BuildGauge()
                      .Name("clipserve_gpu_memory_used_bytes")
                      .Help("GPU device memory in use")
                      .Register(registry_);
  memory_total_ = &prometheus::BuildGauge()
                       .Name("clipserve_gpu_memory_total_bytes")
                       .Help("GPU device memory in all")
                       .Register(registry_);
  power_ = &prometheus::BuildGauge()
                .Name("clipserve_gpu_power_watts")
                .Help("GPU power draw")
                .Register(registry_);
  energy_ = &prometheus::BuildCounter()
                 .Name("clipserve_gpu_energy_joules_total")
                 .Help("GPU energy consumed since the driver loaded")
                 .Register(registry_);

  for (int i = 0; i < device_count_; ++i) {
    auto device = std::make_unique<Device>();
    device->index = static_cast<unsigned int>(i);
    const nvmlReturn_t rc = api_->get_handle(device->index, &device->handle);
    if (rc != NVML_SUCCESS) {
      LogWarning("GPU metrics: gpu " + std::to_string(i) +
                 " left out: nvmlDeviceGetHandleByIndex_v2 failed: " +
                 api_->Error(rc));
      continue;
    }
    std::string uuid;
    if (api_->get_uuid == nullptr) {
      device->warned[kUuid] = true;  // already in the start-up line
    } else {
      char buffer[kUuidBufferSize] = {};
      const nvmlReturn_t uuid_rc =
          api_->get_uuid(device->handle, buffer, kUuidBufferSize);
      buffer[kUuidBufferSize - 1] = '\0';
      if (uuid_rc == NVML_SUCCESS) {
        uuid = buffer;
      } else {
        device->warned[kUuid] = true;
        LogWarning("GPU metrics: gpu " + std::to_string(i) +
                   ": nvmlDeviceGetUUID failed: " + api_->Error(uuid_rc) +
                   "; gpu_uuid left empty");
      }
    }
    device->labels = {{"gpu", std::to_string(i)}, {"gpu_uuid", uuid}};
    devices_.push_back(std::move(device));
  }

  SampleOnce();
  thread_ = std::thread([this] { Run(); });
}

GpuMetrics::~GpuMetrics() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(sample_mu_);
    devices_.clear();
    registry_.Remove(*utilization_);
    registry_.Remove(*memory_used_);
    registry_.Remove(*memory_total_);
    registry_.Remove(*power_);
    registry_.Remove(*energy_);
  }
  api_->shutdown();
  dlclose(library_);
}

void GpuMetrics::Run() {
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, interval_, [this] { return stop_; })) {
    lock.unlock();
    SampleOnce();
    lock.lock();
  }
}

void GpuMetrics::SampleOnce() {
  std::lock_guard<std::mutex> lock(sample_mu_);
  for (auto& device : devices_) SampleDevice(*device);
}

void GpuMetrics::SampleDevice(Device& d) {
  // Logs the first failure of `reading` on this device (NOT_SUPPORTED would
  // otherwise repeat every interval).
  auto failed = [&](Reading reading, const char* function, nvmlReturn_t rc,
                    const char* consequence) {
    if (d.warned[reading]) return;
    d.warned[reading] = true;
    LogWarning("GPU metrics: gpu " + std::to_string(d.index) + " (" +
               d.labels.at("gpu_uuid") + "): " + function +
               " failed: " + api_->Error(rc) + "; " + consequence);
  };

  if (api_->get_utilization != nullptr) {
    nvmlUtilization_t utilization{};
    const nvmlReturn_t rc = api_->get_utilization(d.handle, &utilization);
    if (rc == NVML_SUCCESS) {
      SetGauge(*utilization_, d.labels, &d.utilization,
               utilization.gpu / 100.0);
    } else {
      DropGauge(*utilization_, &d.utilization);
      failed(kUtilization, "nvmlDeviceGetUtilizationRates", rc,
             "clipserve_gpu_utilization_ratio left out");
    }
  }

  if (api_->get_memory != nullptr) {
    nvmlMemory_t memory{};
    const nvmlReturn_t rc = api_->get_memory(d.handle, &memory);
    if (rc == NVML_SUCCESS) {
      SetGauge(*memory_used_, d.labels, &d.memory_used,
               static_cast<double>(memory.used));
      SetGauge(*memory_total_, d.labels, &d.memory_total,
               static_cast<double>(memory.total));
    } else {
      DropGauge(*memory_used_, &d.memory_used);
      DropGauge(*memory_total_, &d.memory_total);
      failed(kMemory, "nvmlDeviceGetMemoryInfo", rc,
             "clipserve_gpu_memory_{used,total}_bytes left out");
    }
  }

  if (api_->get_power != nullptr) {
    unsigned int milliwatts = 0;
    const nvmlReturn_t rc = api_->get_power(d.handle, &milliwatts);
    if (rc == NVML_SUCCESS) {
      SetGauge(*power_, d.labels, &d.power, milliwatts / 1000.0);
    } else {
      DropGauge(*power_, &d.power);
      failed(kPower, "nvmlDeviceGetPowerUsage", rc,
             "clipserve_gpu_power_watts left out");
    }
  }

  if (api_->get_energy != nullptr) {
    unsigned long long millijoules = 0;
    const nvmlReturn_t rc = api_->get_energy(d.handle, &millijoules);
    if (rc == NVML_SUCCESS) {
      const double joules = static_cast<double>(millijoules) / 1000.0;
      if (d.energy != nullptr && joules < d.energy->Value()) {
        // NVML's total went backwards (the driver reloaded): a real counter
        // reset, exported as one.
        energy_->Remove(d.energy);
        d.energy = nullptr;
      }
      if (d.energy == nullptr) d.energy = &energy_->Add(d.labels);
      // A Counter only increments, so add the difference. v + (t - v) == t
      // exactly whenever t <= 2v (Sterbenz) or v == 0; else it may be one ulp
      // short, which the second increment closes.
      for (int i = 0; i < 2 && d.energy->Value() < joules; ++i) {
        d.energy->Increment(joules - d.energy->Value());
      }
    } else {
      // The counter keeps its last value: removing it would read as a reset.
      failed(kEnergy, "nvmlDeviceGetTotalEnergyConsumption", rc,
             "clipserve_gpu_energy_joules_total not updated");
    }
  }
}

}  // namespace clipserve::server
