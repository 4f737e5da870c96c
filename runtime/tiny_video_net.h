// TinyVideoNet: a small, deterministic video classifier for the server's
// built-in default model, tests and benchmarks. Not a trained model.
//
//   input  [B, 3, T, H, W] float
//   conv3d 3 -> width, kernel 3, stride (1, 2, 2), padding 1; relu
//   conv3d width -> 2 * width, kernel 3, stride 2, padding 1; relu
//   mean over (T, H, W)
//   linear 2 * width -> num_classes (with bias)
//
// Any T, H, W >= 1 works. Weights come from a CPU generator seeded with
// `seed` (He-scaled normal), so one seed gives the same model in every
// process.
#ifndef CLIPSERVE_RUNTIME_TINY_VIDEO_NET_H_
#define CLIPSERVE_RUNTIME_TINY_VIDEO_NET_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/backend.h"

namespace clipserve::runtime {

struct TinyVideoNetOptions {
  int64_t num_classes = 400;
  uint64_t seed = 0;
  int width = 32;  // channels of the first conv; the second has 2 * width
};

// Writes the model as a TorchScript file that LoadTorchScriptBackend loads.
// INVALID_ARGUMENT for num_classes or width < 1; INTERNAL if the file cannot
// be written.
absl::Status SaveTinyVideoNet(const std::string& path,
                              const TinyVideoNetOptions& options);

// Builds the model in memory (no file) as a TorchScript backend. `spec` must
// have 3 input channels and num_classes == options.num_classes
// (INVALID_ARGUMENT otherwise); its frames/height/width may be anything
// LoadTorchScriptBackend accepts.
absl::StatusOr<std::unique_ptr<Backend>> CreateTinyVideoNetBackend(
    const TinyVideoNetOptions& options, const ModelSpec& spec,
    const BackendOptions& backend_options);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_TINY_VIDEO_NET_H_
