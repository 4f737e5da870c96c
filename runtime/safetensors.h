// Reading and writing safetensors files without the safetensors library.
//
// Format (https://github.com/huggingface/safetensors): an unsigned 64-bit
// little-endian header length N, N bytes of a UTF-8 JSON object
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//    ..., "__metadata__": {"key": "value", ...}}   (metadata optional)
// (possibly padded with trailing spaces), then the tensors' raw little-endian
// bytes; data_offsets are relative to the first byte after the header.
//
// Internal to runtime/ and its tests/tools (includes ATen headers).
#ifndef CLIPSERVE_RUNTIME_SAFETENSORS_H_
#define CLIPSERVE_RUNTIME_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clipserve::runtime {

// Largest header accepted (the same bound as the reference implementation).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Reads every tensor of a safetensors file as a contiguous CPU float32
// tensor (F16 and BF16 are converted; F32 is read as is). The file is
// checked throughout, and each error names the file and what is wrong:
//   NOT_FOUND         the file does not exist;
//   INVALID_ARGUMENT  too short for a header length; a header length of 0,
//                     above kMaxSafetensorsHeaderBytes or past the end of the
//                     file; header not a JSON object of the format above
//                     (with the byte offset of a syntax error); duplicate
//                     names; an unknown field; a negative or non-integer
//                     dimension or offset; a dtype other than F32/F16/BF16
//                     (a known-but-unsupported one such as I64 is named as
//                     such); begin > end; end past the data; a byte size
//                     other than product(shape) * itemsize; tensors that
//                     overlap or leave holes in the data (the format tiles
//                     the data exactly);
//   INTERNAL          a read error.
// `__metadata__`, if present, must map strings to strings; it is not
// returned.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensors(
    const std::string& path);

// Writes `tensors` (any device, any strides) as a safetensors file, in name
// order, the header padded with spaces to a multiple of 8 bytes. dtype
// float32 -> F32, float16 -> F16, bfloat16 -> BF16; any other dtype, an
// undefined tensor or an empty or "__metadata__" name is INVALID_ARGUMENT
// (nothing written); a file that cannot be written is INTERNAL.
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors);

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_SAFETENSORS_H_
