# The I3D cross-check: the native C++ I3D against an independent Python
# implementation of the spec (tests/python/i3d_reference.py), and the tests
# of the checkpoint converter (tools/convert_checkpoint.py). Both need a
# Python with torch and numpy: CLIPSERVE_PYTHON, the project's venv, whose
# torch is the LibTorch the C++ code links (cmake/FindLibTorch.cmake).
# Included from tests/runtime/CMakeLists.txt.

if(EXISTS ${PROJECT_SOURCE_DIR}/runtime/i3d.h)
  add_executable(i3d_crosscheck_test i3d_crosscheck_test.cc)
  target_link_libraries(i3d_crosscheck_test
    PRIVATE clipserve_runtime ${TORCH_LIBRARIES} GTest::gtest_main)
  target_compile_definitions(i3d_crosscheck_test PRIVATE
    CLIPSERVE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    CLIPSERVE_PYTHON="${CLIPSERVE_PYTHON}")
  clipserve_target_defaults(i3d_crosscheck_test)
  # Listing the tests loads LibTorch. On two cores the 16x224x224 case takes
  # ~10 s and the whole binary ~30 s, far below the limit.
  gtest_discover_tests(i3d_crosscheck_test
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 600 LABELS cpu_heavy PROCESSORS 2)
endif()

add_test(NAME convert_checkpoint_py
  COMMAND ${CLIPSERVE_PYTHON}
          ${PROJECT_SOURCE_DIR}/tests/python/test_convert_checkpoint.py)
set_tests_properties(convert_checkpoint_py PROPERTIES TIMEOUT 300)
