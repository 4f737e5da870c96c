// Fuzz entry point for model.safetensors: the bytes are the whole file
// (8-byte header length, JSON header, tensor data), read as model loading
// reads it. Every input gives float32 tensors or INVALID_ARGUMENT; the
// JSON parser, the dtype, shape and offset checks and the tiling check
// never crash, read out of bounds or allocate past the file's size.
#include <cstdint>
#include <cstdlib>

#include "tests/fuzz/checkpoint_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return clipserve::fuzz::ReadCheckpointFuzz(data, size, ".safetensors");
}
