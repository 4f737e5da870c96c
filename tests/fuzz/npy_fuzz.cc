// Fuzz entry point for the client's .npy reader (clipserve-client and
// clipserve-perf send .npy clips): the bytes are the file. Every input
// gives an array whose data matches its shape and type, or an error;
// an array read back from its own serialisation is the same array.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "client/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace clipserve::client;
  absl::StatusOr<NpyArray> array =
      ParseNpy(std::string(reinterpret_cast<const char*>(data), size));
  if (!array.ok()) {
    if (array.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  for (int64_t d : array->shape) {
    if (d < 0) std::abort();
  }
  absl::StatusOr<NpyArray> again = ParseNpy(SerializeNpy(*array));
  if (!again.ok() || again->descr != array->descr ||
      again->shape != array->shape || again->data != array->data) {
    std::abort();
  }
  return 0;
}
