// The native Inception-I3D backend ("i3d" in a model config).
//
// Torch-free: the model itself lives in runtime/i3d.h (LibTorch C++ modules).
#ifndef CLIPSERVE_RUNTIME_I3D_BACKEND_H_
#define CLIPSERVE_RUNTIME_I3D_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/backend.h"

namespace clipserve::runtime {

// Builds I3D for `spec` (input channels 3 for RGB or 2 for optical flow;
// spec.num_classes logits) and loads its weights from `weights_dir`:
//   model.safetensors   (F32, F16 or BF16 tensors), else
//   model.pth           (zip-format torch.save of a plain dict),
// both with the PyTorch port's key names ("Mixed_3b.b1b.conv3d.weight", ...);
// a leading "module." is accepted and "num_batches_tracked" ignored. Missing,
// unexpected or wrongly shaped keys refuse the load (INVALID_ARGUMENT listing
// every offender). With neither file (or an empty `weights_dir`), the weights
// are deterministic random ones from `seed`, and untrained() is true.
absl::StatusOr<std::unique_ptr<Backend>> LoadI3dBackend(
    const std::string& weights_dir, const ModelSpec& spec,
    const BackendOptions& options, uint64_t seed = 0);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_I3D_BACKEND_H_
