# Native I3D: architecture, SAME padding, safetensors/.pth checkpoints and
# the backend. Included by tests/runtime/CMakeLists.txt. A separate binary
# from runtime_test: it runs full 224 x 224 forwards (CPU-heavy).
add_executable(i3d_test i3d_test.cc)
target_link_libraries(i3d_test
  PRIVATE clipserve_runtime ${TORCH_LIBRARIES} GTest::gtest_main absl::strings)
# The .pth tests write files with Python's torch.save: CLIPSERVE_PYTHON, the
# project's venv with the same torch 2.11 (cmake/FindLibTorch.cmake).
target_compile_definitions(i3d_test PRIVATE
  CLIPSERVE_TORCH_PYTHON="${CLIPSERVE_PYTHON}"
  CLIPSERVE_I3D_MAKE_PTH="${CMAKE_CURRENT_SOURCE_DIR}/i3d_make_pth.py"
  CLIPSERVE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
clipserve_target_defaults(i3d_test)
# Full-size I3D forwards use every core (LibTorch's threads).
gtest_discover_tests(i3d_test DISCOVERY_TIMEOUT 60
  PROPERTIES TIMEOUT 600 LABELS cpu_heavy PROCESSORS 2)
