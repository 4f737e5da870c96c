// Fuzz entry point for model.pth: the bytes are a torch.save file (a zip
// archive holding a pickle), read as model loading reads it, through
// LibTorch's zip reader and unpickler and our walk of the dict it gives.
// Every input gives a state dict or INVALID_ARGUMENT, never a crash.
#include <cstdint>
#include <cstdlib>

#include "tests/fuzz/checkpoint_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return clipserve::fuzz::ReadCheckpointFuzz(data, size, ".pth");
}
