# Finds LibTorch inside the PyTorch wheel of the project's Python
# (CLIPSERVE_PYTHON, by default the virtual environment .venv that
# scripts/install-deps.sh makes from scripts/requirements/venv.txt) and sets
#   TORCH_INCLUDE_DIRS, TORCH_LIBRARIES   for the targets that use LibTorch
#   CLIPSERVE_TORCH_DIR                   the wheel's torch/ folder
#   CLIPSERVE_TORCH_CUDA                  ON when the CUDA libraries are linked
#
# CLIPSERVE_CUDA (ON, OFF, AUTO; default AUTO):
#   ON    PyTorch's own CMake config (torch/share/cmake/Torch), which needs the
#         CUDA toolkit (nvcc, headers); libtorch_cuda.so is linked, so the
#         binaries use a GPU when one is there and run on the CPU when not.
#   OFF   CPU only: libtorch_cpu.so and libc10.so, no CUDA toolkit needed
#         (the CPU container image). libtorch_cpu.so still loads libcudart
#         and libcupti at run time (PyPI's nvidia-cuda-runtime/-cupti).
#   AUTO  ON when the CUDA toolkit is found, else OFF.
# A Torch_DIR given on the command line (any LibTorch >= 1.13, e.g. Debian's
# libtorch-dev for comparisons) is used as is, with or without CUDA.

set(CLIPSERVE_PYTHON "${PROJECT_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
  "The project's Python: torch (LibTorch), tritonclient, the deploy checks")
set(CLIPSERVE_CUDA AUTO CACHE STRING "Link LibTorch's CUDA libraries: ON, OFF or AUTO")
set_property(CACHE CLIPSERVE_CUDA PROPERTY STRINGS ON OFF AUTO)

# Torch_DIR from the command line, not from the project's Python: used as is.
if(Torch_DIR AND NOT Torch_DIR STREQUAL "${_CLIPSERVE_TORCH_DIR_FROM_PYTHON}")
  find_package(Torch REQUIRED CONFIG)
  get_filename_component(CLIPSERVE_TORCH_DIR "${Torch_DIR}/../../.." ABSOLUTE)
  if(TARGET torch_cuda)
    set(CLIPSERVE_TORCH_CUDA ON)
  else()
    set(CLIPSERVE_TORCH_CUDA OFF)
  endif()
else()
  # The package's folder, without importing torch (slow, and not needed).
  execute_process(
    COMMAND "${CLIPSERVE_PYTHON}" -c
      "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])"
    OUTPUT_VARIABLE CLIPSERVE_TORCH_DIR OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0 OR NOT EXISTS "${CLIPSERVE_TORCH_DIR}/share/cmake/Torch")
    message(FATAL_ERROR "LibTorch: ${CLIPSERVE_PYTHON} has no torch package "
      "(run scripts/install-deps.sh, or set CLIPSERVE_PYTHON or Torch_DIR): ${_err}")
  endif()
  set(Torch_DIR "${CLIPSERVE_TORCH_DIR}/share/cmake/Torch" CACHE PATH "LibTorch's CMake config" FORCE)
  set(_CLIPSERVE_TORCH_DIR_FROM_PYTHON "${Torch_DIR}" CACHE INTERNAL "")

  set(_want_cuda ${CLIPSERVE_CUDA})
  if(_want_cuda STREQUAL "AUTO")
    find_package(CUDAToolkit QUIET)
    if(CUDAToolkit_FOUND)
      set(_want_cuda ON)
    else()
      set(_want_cuda OFF)
    endif()
  endif()

  if(_want_cuda)
    # We compile no CUDA code of our own yet: name the architectures rather
    # than detect a GPU (the build machines have none). A100, A10/L4, L40,
    # H100/H200.
    if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
      set(TORCH_CUDA_ARCH_LIST "8.0;8.6;8.9;9.0")
    endif()
    find_package(Torch REQUIRED CONFIG)
    if(NOT TARGET torch_cuda)
      message(FATAL_ERROR "CLIPSERVE_CUDA=${CLIPSERVE_CUDA}: ${Torch_DIR} is a LibTorch without CUDA")
    endif()
    set(CLIPSERVE_TORCH_CUDA ON)
  else()
    # CPU only, without PyTorch's CMake config (which insists on the CUDA
    # toolkit for a CUDA build of LibTorch).
    find_library(_torch_cpu torch_cpu PATHS "${CLIPSERVE_TORCH_DIR}/lib" NO_DEFAULT_PATH REQUIRED)
    find_library(_c10 c10 PATHS "${CLIPSERVE_TORCH_DIR}/lib" NO_DEFAULT_PATH REQUIRED)
    if(NOT TARGET clipserve_libtorch_cpu)
      add_library(clipserve_libtorch_cpu INTERFACE IMPORTED)
      set_target_properties(clipserve_libtorch_cpu PROPERTIES
        INTERFACE_LINK_LIBRARIES "${_torch_cpu};${_c10}"
        # PyTorch's wheels use the C++11 ABI.
        INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=1")
    endif()
    set(TORCH_INCLUDE_DIRS
      "${CLIPSERVE_TORCH_DIR}/include"
      "${CLIPSERVE_TORCH_DIR}/include/torch/csrc/api/include")
    set(TORCH_LIBRARIES clipserve_libtorch_cpu)
    set(CLIPSERVE_TORCH_CUDA OFF)
  endif()
endif()

file(STRINGS "${Torch_DIR}/TorchConfigVersion.cmake" _v REGEX "PACKAGE_VERSION \"")
string(REGEX REPLACE ".*PACKAGE_VERSION \"([^\"]*)\".*" "\\1" CLIPSERVE_TORCH_VERSION "${_v}")
message(STATUS "LibTorch ${CLIPSERVE_TORCH_VERSION} from ${CLIPSERVE_TORCH_DIR}, CUDA ${CLIPSERVE_TORCH_CUDA}")
