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
  const at::Float32Precision p =
      on ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
  at::globalContext().setFloat32Precision(at::Float32Backend::CUDA,
                                          at::Float32Op::MATMUL, p);
  at::globalContext().setFloat32Precision(at::Float32Backend::CUDA,
                                          at::Float32Op::CONV, p);
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
