# clipserve-i3d-bench: native I3D forward timings (runtime/i3d.h), with and
# without the batch-1 convolution fix. Figures: docs/benchmarks.md.
add_executable(clipserve-i3d-bench i3d_forward.cc)
target_link_libraries(clipserve-i3d-bench
  PRIVATE clipserve_runtime ${TORCH_LIBRARIES} absl::strings)
clipserve_target_defaults(clipserve-i3d-bench)
