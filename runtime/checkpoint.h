// Reading I3D checkpoints: model.safetensors (runtime/safetensors.h) or a
// zip-format torch.save of a plain dict (model.pth), and loading them into
// the model with the PyTorch port's key names.
//
// Internal to runtime/ and its tests (includes LibTorch headers).
#ifndef CLIPSERVE_RUNTIME_CHECKPOINT_H_
#define CLIPSERVE_RUNTIME_CHECKPOINT_H_

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/i3d.h"

namespace clipserve::runtime {

// Reads a .pth written by Python's torch.save (zip format, PyTorch >= 1.6)
// holding a dict of name -> tensor, with torch::pickle_load. A dict that
// wraps one under "state_dict", "model_state_dict" or "model" is unwrapped.
// Tensors come back as saved (dtype, CPU). Errors (INVALID_ARGUMENT unless
// NOT_FOUND) name the file and say what to do. LibTorch cannot read a raw
// collections.OrderedDict (what model.state_dict() returns; 1.13 fails on
// it, later versions return None), so that case says so and asks for
// torch.save(dict(model.state_dict()), path) or tools/convert_checkpoint.py.
// Known LibTorch 1.13 limitation: its unpickler lacks the SETITEM opcode,
// which Python uses for a dict of exactly one entry (or 1000k + 1), so such
// a dict fails to load ("Unknown opcode for unpickling at 0x73"); I3D state
// dicts have hundreds of entries.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadPthStateDict(
    const std::string& path);

// ReadSafetensors for a name ending in ".safetensors", ReadPthStateDict for
// ".pth" or ".pt"; any other name is INVALID_ARGUMENT.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadCheckpoint(
    const std::string& path);

// ReadCheckpoint + LoadI3dStateDict. A state dict that does not fit says
// "checkpoint <path> does not fit I3D (N classes, C channels): missing:
// [...]; unexpected: [...]; wrong shape: [...]".
absl::Status LoadI3dCheckpoint(InceptionI3d& model, const std::string& path);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_CHECKPOINT_H_
