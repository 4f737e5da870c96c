// The native Inception-I3D backend ("i3d" in a model config).
//
// Torch-free: the model itself lives in runtime/i3d.h (LibTorch C++ modules).
#ifndef CLIPSERVE_RUNTIME_I3D_BACKEND_H_
#define CLIPSERVE_RUNTIME_I3D_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

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
// every offender); so does a corrupt file (never silently replaced by random
// weights), and a `weights_dir` that is a file. With neither file (or an
// empty or absent `weights_dir`), the weights are deterministic random ones
// from `seed` (the same in every process), and untrained() is true.
//
// Any T, H, W >= 1 runs (TF "SAME" padding and a head that shrinks to fit),
// so the spec may leave frames/height/width open (-1). On CPU every
// convolution goes straight to oneDNN: ATen's own choice sends many of
// I3D's batch-1 convolutions to an im2col path, slower on 1.13 and 2.11
// alike (docs/benchmarks.md, "LibTorch 1.13 vs 2.11 on the CPU").
absl::StatusOr<std::unique_ptr<Backend>> LoadI3dBackend(
    const std::string& weights_dir, const ModelSpec& spec,
    const BackendOptions& options, uint64_t seed = 0);

// One instance per entry of `instances`, as LoadI3dBackend; instances on the
// same device with the same precision share one copy of the weights.
absl::StatusOr<std::vector<std::unique_ptr<Backend>>> LoadI3dBackends(
    const std::string& weights_dir, const ModelSpec& spec,
    const std::vector<BackendOptions>& instances, uint64_t seed = 0);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_I3D_BACKEND_H_
