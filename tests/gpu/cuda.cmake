# The CUDA batch path on a real GPU (scripts/gpu-check.sh). Built whenever
# LibTorch's CUDA libraries are linked, so CI compiles it; registered with
# ctest (label "cuda") only with -DCLIPSERVE_GPU_TESTS=ON, on a GPU host.
if(CLIPSERVE_TORCH_CUDA)
  add_executable(cuda_backend_test ${CMAKE_CURRENT_LIST_DIR}/cuda_backend_test.cc)
  target_include_directories(cuda_backend_test SYSTEM PRIVATE ${TORCH_INCLUDE_DIRS})
  target_link_libraries(cuda_backend_test
    PRIVATE clipserve_runtime ${TORCH_LIBRARIES} GTest::gtest_main)
  clipserve_target_defaults(cuda_backend_test)
  if(CLIPSERVE_GPU_TESTS)
    gtest_discover_tests(cuda_backend_test DISCOVERY_TIMEOUT 120
                         PROPERTIES LABELS cuda TIMEOUT 300)
  endif()
elseif(CLIPSERVE_GPU_TESTS)
  message(FATAL_ERROR "CLIPSERVE_GPU_TESTS=ON needs LibTorch's CUDA libraries (CLIPSERVE_CUDA=ON)")
endif()
