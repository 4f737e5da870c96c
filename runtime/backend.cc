#include "runtime/backend.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace clipserve::runtime {

absl::StatusOr<Precision> ParsePrecision(absl::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "fp16") return Precision::kFp16;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown precision \"", name, "\" (known: fp32, fp16, bf16)"));
}

const char* PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp16:
      return "fp16";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp32:
      break;
  }
  return "fp32";
}

int64_t BucketFor(int64_t batch, absl::Span<const int64_t> buckets) {
  const auto it = std::lower_bound(buckets.begin(), buckets.end(), batch);
  return it == buckets.end() ? batch : *it;
}

std::vector<int64_t> PowerOfTwoBuckets(int64_t max_batch_size) {
  std::vector<int64_t> out;
  for (int64_t b = 1; b < max_batch_size; b *= 2) out.push_back(b);
  if (max_batch_size >= 1) out.push_back(max_batch_size);
  return out;
}

LogitAgreement CompareLogits(absl::Span<const float> reference,
                             absl::Span<const float> other, int64_t classes) {
  LogitAgreement out;
  if (classes < 1 || reference.size() != other.size()) return out;
  out.clips = static_cast<int64_t>(reference.size()) / classes;
  int64_t agree = 0;
  for (int64_t c = 0; c < out.clips; ++c) {
    const float* a = reference.data() + c * classes;
    const float* b = other.data() + c * classes;
    agree += std::max_element(a, a + classes) - a ==
             std::max_element(b, b + classes) - b;
    for (int64_t k = 0; k < classes; ++k) {
      out.max_abs_diff = std::max(out.max_abs_diff,
                                  static_cast<double>(std::abs(a[k] - b[k])));
      out.max_abs_reference =
          std::max(out.max_abs_reference, static_cast<double>(std::abs(a[k])));
    }
  }
  if (out.clips > 0) out.top1_agreement = static_cast<double>(agree) / out.clips;
  return out;
}

}  // namespace clipserve::runtime
