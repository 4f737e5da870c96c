// Shared by the request fuzz targets (kserve_infer_fuzz.cc,
// classify_request_fuzz.cc): the models a request is checked against, and
// the check that a clip view the server accepted lies inside the bytes it
// views and has exactly the size its shape says.
#ifndef CLIPSERVE_TESTS_FUZZ_REQUEST_FUZZ_H_
#define CLIPSERVE_TESTS_FUZZ_REQUEST_FUZZ_H_

#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/backend.h"
#include "runtime/clip.h"

namespace clipserve::fuzz {

// A model with a fixed clip shape (3 x 4 x 8 x 8, 5 classes), and one that
// leaves frames, height and width free (-1).
inline runtime::ModelSpec FixedSpec() {
  runtime::ModelSpec spec;
  spec.input = {3, 4, 8, 8};
  spec.num_classes = 5;
  return spec;
}
inline runtime::ModelSpec FreeSpec() {
  runtime::ModelSpec spec;
  spec.input = {3, -1, -1, -1};
  spec.num_classes = 5;
  return spec;
}

// Aborts unless `clip` fits `spec` and its bytes are [begin, begin + size).
inline void CheckClipView(const runtime::ClipView& clip,
                          const runtime::ModelSpec& spec, const void* begin,
                          size_t size) {
  auto fits = [](int64_t got, int64_t want) {
    return got > 0 && (want < 0 || got == want);
  };
  if (clip.count < 1 || clip.shape.channels != spec.input.channels ||
      !fits(clip.shape.frames, spec.input.frames) ||
      !fits(clip.shape.height, spec.input.height) ||
      !fits(clip.shape.width, spec.input.width) || clip.bytes() != size ||
      clip.data != begin) {
    std::abort();
  }
}

}  // namespace clipserve::fuzz

#endif  // CLIPSERVE_TESTS_FUZZ_REQUEST_FUZZ_H_
