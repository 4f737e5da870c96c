#include "runtime/clip.h"

namespace clipserve::runtime {

size_t ElementSize(ClipDType dtype) {
  switch (dtype) {
    case ClipDType::kUInt8:
      return 1;
    case ClipDType::kFloat32:
      return 4;
  }
  return 0;  // Not a ClipDType; callers reject it.
}

}  // namespace clipserve::runtime
