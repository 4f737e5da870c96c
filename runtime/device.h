// What devices this process can run models on.
#ifndef CLIPSERVE_RUNTIME_DEVICE_H_
#define CLIPSERVE_RUNTIME_DEVICE_H_

namespace clipserve::runtime {

// CUDA devices LibTorch sees; 0 on a CPU-only build or machine.
int CudaDeviceCount();

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_DEVICE_H_
