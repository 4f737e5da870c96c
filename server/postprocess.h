// Turning one clip's logits into the classes a client asked for.
#ifndef CLIPSERVE_SERVER_POSTPROCESS_H_
#define CLIPSERVE_SERVER_POSTPROCESS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace clipserve::server {

struct ScoredClass {
  int32_t index;
  float probability;
};

// The `k` classes of highest probability under softmax(logits), most probable
// first; ties go to the lower index. k is clamped to [0, logits.size()].
// `out` is cleared and reused (no allocation once it has capacity k).
void TopKSoftmax(absl::Span<const float> logits, int k,
                 std::vector<ScoredClass>* out);

// softmax(logits) into `out` (logits.size() floats; may alias logits).
void Softmax(absl::Span<const float> logits, float* out);

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_POSTPROCESS_H_
