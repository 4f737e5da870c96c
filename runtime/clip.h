// Clips as the runtime receives them: views of caller-owned bytes, no LibTorch.
#ifndef CLIPSERVE_RUNTIME_CLIP_H_
#define CLIPSERVE_RUNTIME_CLIP_H_

#include <cstddef>
#include <cstdint>

namespace clipserve::runtime {

enum class ClipDType {
  // RGB frames, T x H x W x 3, 0..255; normalised to [-1, 1] by the runtime.
  kUInt8,
  // Normalised floats, 3 x T x H x W, the model's own layout.
  kFloat32,
};

size_t ElementSize(ClipDType dtype);

// The shape of one clip, channels first whatever the dtype's layout.
struct ClipShape {
  int64_t channels = 3;
  int64_t frames = 0;
  int64_t height = 0;
  int64_t width = 0;

  int64_t elements() const { return channels * frames * height * width; }
  bool operator==(const ClipShape& o) const {
    return channels == o.channels && frames == o.frames && height == o.height &&
           width == o.width;
  }
};

// `count` clips of one dtype and shape, stored back to back at `data`
// (count * shape.elements() * ElementSize(dtype) bytes). The bytes belong to
// the caller and must stay valid until the call that received the view
// returns.
struct ClipView {
  ClipDType dtype = ClipDType::kUInt8;
  ClipShape shape;
  int64_t count = 1;
  const void* data = nullptr;

  size_t bytes() const {
    return static_cast<size_t>(count * shape.elements()) * ElementSize(dtype);
  }
};

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_CLIP_H_
