// What devices this process can run models on, and process-wide CUDA
// settings. Torch-free: callable from the server.
#ifndef CLIPSERVE_RUNTIME_DEVICE_H_
#define CLIPSERVE_RUNTIME_DEVICE_H_

#include <cstdint>

namespace clipserve::runtime {

// CUDA devices LibTorch sees; 0 on a CPU-only build or machine.
int CudaDeviceCount();

// Lets fp32 matrix products and convolutions on CUDA use TF32 (Ampere and
// newer; nothing changes on older GPUs or without CUDA). Process-wide: call
// once at start-up, before models load.
void SetCudaTf32(bool on);

// Peak bytes LibTorch's caching allocator had allocated (held by tensors)
// and reserved (taken from the driver) on CUDA device `index` since the
// last ResetCudaMemoryPeaks; zeros without that device.
struct CudaMemoryPeaks {
  int64_t allocated_bytes = 0;
  int64_t reserved_bytes = 0;
};
CudaMemoryPeaks CudaMemoryPeak(int index);
void ResetCudaMemoryPeaks(int index);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_DEVICE_H_
