// Process-wide allocator settings for inference.
#ifndef CLIPSERVE_RUNTIME_ALLOCATOR_H_
#define CLIPSERVE_RUNTIME_ALLOCATOR_H_

namespace clipserve::runtime {

// Makes glibc's malloc serve large blocks (LibTorch's activations: tens of
// MiB each) from the heap and keep freed memory there, instead of mapping
// fresh pages for every allocation above its mmap threshold and returning
// them on free. Without this, every forward pass of a batch pays hundreds of
// thousands of page faults: on a 2-core machine TinyVideoNet ran a batch of 8
// 2.7x slower (docs/benchmarks.md). The cost: memory the server frees stays
// in its heap for the next batch rather than going back to the system, so
// resident memory settles at the peak of the largest batch. Call once, at
// start-up, before any model loads.
void KeepTensorMemoryInProcess();

}  // namespace clipserve::runtime

#endif  // CLIPSERVE_RUNTIME_ALLOCATOR_H_
