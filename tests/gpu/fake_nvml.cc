// A stand-in for libnvidia-ml.so.1 with known readings, for gpu_metrics_test.
//
// Devices (up to 4; FAKE_NVML_DEVICES, default 2, read at nvmlInit_v2):
//   index    uuid          util  memory used / total       power
//   0        GPU-fake-0    37 %  1 GiB / 16 GiB            123456 mW
//   1        GPU-fake-1    90 %  8000000000 / 85899345920  300000 mW
//   2, 3     GPU-fake-<i>  10 %  1 / 2                     1000 mW
// The n-th energy read of a device (counted from nvmlInit_v2 on) returns
// 1000000 + n * 1234 mJ (device 0), 2500000 + n * 4321 mJ (device 1),
// n * 1000 mJ (devices 2, 3).
//
// Environment:
//   FAKE_NVML_INIT_FAIL=1   nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED
//   FAKE_NVML_DEVICES=<n>   device count
//   FAKE_NVML_FAIL=<fn>:<i>[,<fn>:<i>...]   function <fn> returns
//       NVML_ERROR_NOT_SUPPORTED for device <i>; <fn> is one of handle, uuid,
//       utilization, memory, power, energy. Read at every call, so a test may
//       change it between samples.
// fake_nvml_init_refcount() reports nvmlInit_v2 calls not yet shut down.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr int NVML_SUCCESS = 0;
constexpr int NVML_ERROR_UNINITIALIZED = 1;
constexpr int NVML_ERROR_INVALID_ARGUMENT = 2;
constexpr int NVML_ERROR_NOT_SUPPORTED = 3;
constexpr int NVML_ERROR_INSUFFICIENT_SIZE = 7;
constexpr int NVML_ERROR_DRIVER_NOT_LOADED = 9;

constexpr unsigned int kMaxDevices = 4;

struct Spec {
  unsigned int utilization;
  unsigned long long memory_used, memory_total;
  unsigned int power_mw;
  unsigned long long energy_base_mj, energy_step_mj;
};
constexpr Spec kSpecs[kMaxDevices] = {
    {37, 1ull << 30, 16ull << 30, 123456, 1000000, 1234},
    {90, 8000000000ull, 85899345920ull, 300000, 2500000, 4321},
    {10, 1, 2, 1000, 0, 1000},
    {10, 1, 2, 1000, 0, 1000},
};

}  // namespace

// The opaque nvmlDevice_t points at one of these.
struct nvmlDevice_st {
  unsigned int index;
  unsigned long long energy_reads;
};

namespace {

nvmlDevice_st g_devices[kMaxDevices];
unsigned int g_device_count = 0;
int g_refcount = 0;

bool Fails(const char* function, const nvmlDevice_st* device) {
  const char* env = std::getenv("FAKE_NVML_FAIL");
  if (env == nullptr || device == nullptr) return false;
  const std::string wanted =
      std::string(function) + ":" + std::to_string(device->index);
  std::string list = env;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (list.compare(start, end - start, wanted) == 0) return true;
    start = end + 1;
  }
  return false;
}

bool Valid(const nvmlDevice_st* device) {
  return device >= g_devices && device < g_devices + g_device_count;
}

}  // namespace

extern "C" {

typedef struct nvmlDevice_st* nvmlDevice_t;
typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
  unsigned int gpu, memory;
} nvmlUtilization_t;

int fake_nvml_init_refcount(void) { return g_refcount; }

int nvmlInit_v2(void) {
  const char* fail = std::getenv("FAKE_NVML_INIT_FAIL");
  if (fail != nullptr && std::strcmp(fail, "1") == 0) {
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  if (g_refcount++ == 0) {
    const char* devices = std::getenv("FAKE_NVML_DEVICES");
    const int n = devices != nullptr ? std::atoi(devices) : 2;
    g_device_count = n < 0 ? 0 : n > 4 ? kMaxDevices : n;
    for (unsigned int i = 0; i < kMaxDevices; ++i) g_devices[i] = {i, 0};
  }
  return NVML_SUCCESS;
}

int nvmlShutdown(void) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  --g_refcount;
  return NVML_SUCCESS;
}

const char* nvmlErrorString(int result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    default:
      return "Unknown Error";
  }
}

int nvmlDeviceGetCount_v2(unsigned int* count) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *count = g_device_count;
  return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (index >= g_device_count || device == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if (Fails("handle", &g_devices[index])) return NVML_ERROR_NOT_SUPPORTED;
  *device = &g_devices[index];
  return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Valid(device) || uuid == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (Fails("uuid", device)) return NVML_ERROR_NOT_SUPPORTED;
  char text[32];
  const int n = std::snprintf(text, sizeof(text), "GPU-fake-%u", device->index);
  if (n < 0 || static_cast<unsigned int>(n) + 1 > length) {
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  std::memcpy(uuid, text, n + 1);
  return NVML_SUCCESS;
}

int nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                  nvmlUtilization_t* utilization) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Valid(device) || utilization == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if (Fails("utilization", device)) return NVML_ERROR_NOT_SUPPORTED;
  utilization->gpu = kSpecs[device->index].utilization;
  utilization->memory = 5;
  return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Valid(device) || memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (Fails("memory", device)) return NVML_ERROR_NOT_SUPPORTED;
  const Spec& spec = kSpecs[device->index];
  memory->total = spec.memory_total;
  memory->used = spec.memory_used;
  memory->free = spec.memory_total - spec.memory_used;
  return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* milliwatts) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Valid(device) || milliwatts == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if (Fails("power", device)) return NVML_ERROR_NOT_SUPPORTED;
  *milliwatts = kSpecs[device->index].power_mw;
  return NVML_SUCCESS;
}

int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                        unsigned long long* millijoules) {
  if (g_refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Valid(device) || millijoules == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if (Fails("energy", device)) return NVML_ERROR_NOT_SUPPORTED;
  const Spec& spec = kSpecs[device->index];
  ++device->energy_reads;
  *millijoules =
      spec.energy_base_mj + device->energy_reads * spec.energy_step_mj;
  return NVML_SUCCESS;
}

}  // extern "C"
