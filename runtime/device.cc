#include "runtime/device.h"

#include <torch/cuda.h>

namespace clipserve::runtime {

int CudaDeviceCount() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count())
                                     : 0;
}

}  // namespace clipserve::runtime
