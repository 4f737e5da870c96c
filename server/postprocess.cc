#include "server/postprocess.h"

#include <algorithm>
#include <cmath>

namespace clipserve::server {

void TopKSoftmax(absl::Span<const float> logits, int k,
                 std::vector<ScoredClass>* out) {
  out->clear();
  const int n = static_cast<int>(logits.size());
  k = std::clamp(k, 0, n);
  if (k == 0) return;

  // Softmax normaliser, shifted by the maximum for stability.
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - max));

  // "Better" = higher logit, then lower index. out holds the best k seen so
  // far as a min-heap on "better", so out->front() is the worst kept.
  auto better = [](const ScoredClass& a, const ScoredClass& b) {
    return a.probability > b.probability ||
           (a.probability == b.probability && a.index < b.index);
  };
  out->reserve(k);
  for (int i = 0; i < n; ++i) {
    ScoredClass c{i, logits[i]};
    if (static_cast<int>(out->size()) < k) {
      out->push_back(c);
      std::push_heap(out->begin(), out->end(), better);
    } else if (better(c, out->front())) {
      std::pop_heap(out->begin(), out->end(), better);
      out->back() = c;
      std::push_heap(out->begin(), out->end(), better);
    }
  }
  std::sort_heap(out->begin(), out->end(), better);
  for (ScoredClass& c : *out) {
    c.probability =
        static_cast<float>(std::exp(static_cast<double>(c.probability - max)) / sum);
  }
}

void Softmax(absl::Span<const float> logits, float* out) {
  if (logits.empty()) return;
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float e = std::exp(logits[i] - max);
    out[i] = e;
    sum += e;
  }
  const float scale = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] *= scale;
}

}  // namespace clipserve::server
