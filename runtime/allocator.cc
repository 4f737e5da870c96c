#include "runtime/allocator.h"

#include <malloc.h>

#include <climits>

namespace clipserve::runtime {

void KeepTensorMemoryInProcess() {
  // Never satisfy malloc with a private mmap; never trim the heap's top.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace clipserve::runtime
