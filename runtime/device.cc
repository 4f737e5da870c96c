#include "runtime/device.h"

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <torch/cuda.h>

namespace clipserve::runtime {
namespace {

bool HasCudaDevice(int index) {
  return index >= 0 && index < CudaDeviceCount();
}

}  // namespace

int CudaDeviceCount() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count())
                                     : 0;
}

void SetCudaTf32(bool on) {
  // The older setters: they keep both of LibTorch 2.11's views of the flag
  // in step. Setting it through setFloat32Precision instead makes every
  // later read through allowTF32CuBLAS() (which parts of ATen still use)
  // throw ("mix of the legacy and new APIs").
  at::globalContext().setAllowTF32CuBLAS(on);
  at::globalContext().setAllowTF32CuDNN(on);
}

CudaMemoryPeaks CudaMemoryPeak(int index) {
  CudaMemoryPeaks out;
  if (!HasCudaDevice(index)) return out;
  const auto stats =
      at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  constexpr size_t kAll = static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE);
  out.allocated_bytes = stats.allocated_bytes[kAll].peak;
  out.reserved_bytes = stats.reserved_bytes[kAll].peak;
  return out;
}

void ResetCudaMemoryPeaks(int index) {
  if (!HasCudaDevice(index)) return;
  at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}

}  // namespace clipserve::runtime
