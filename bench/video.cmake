# clipserve-decode-bench: DecodeClip throughput on a 1080p H.264 clip, split
# into demux/decode, BGR conversion and resize/crop. Figures go to
# docs/benchmarks.md ("Video decode and preprocessing").
find_package(benchmark QUIET)
if(CLIPSERVE_VIDEO AND benchmark_FOUND AND OpenCV_FOUND)
  add_executable(clipserve-decode-bench ${CMAKE_CURRENT_LIST_DIR}/decode_bench.cc)
  target_include_directories(clipserve-decode-bench SYSTEM PRIVATE
    ${OpenCV_INCLUDE_DIRS})
  target_link_libraries(clipserve-decode-bench PRIVATE
    clipserve_video absl::status absl::statusor absl::strings
    opencv_core opencv_imgproc opencv_videoio benchmark::benchmark)
  clipserve_target_defaults(clipserve-decode-bench)
elseif(NOT benchmark_FOUND)
  message(STATUS "Google Benchmark not found: no clipserve-decode-bench")
endif()

# clipserve-decode-compare: DecodeClip against the OpenCV decoder it replaced
# (bench/baseline), on one file (bench/decode_compare.sh runs the table of
# docs/benchmarks.md); where OpenCV is missing, DecodeClip alone (--device
# cuda against cpu: the GPU check's NVDEC step).
if(CLIPSERVE_VIDEO)
  add_executable(clipserve-decode-compare ${CMAKE_CURRENT_LIST_DIR}/decode_compare.cc)
  target_link_libraries(clipserve-decode-compare PRIVATE
    clipserve_video clipserve_client absl::int128 absl::str_format)
  if(OpenCV_FOUND)
    target_sources(clipserve-decode-compare PRIVATE
      ${CMAKE_CURRENT_LIST_DIR}/baseline/opencv_decode.cc
      ${CMAKE_CURRENT_LIST_DIR}/baseline/mem_file.cc)
    target_include_directories(clipserve-decode-compare SYSTEM PRIVATE ${OpenCV_INCLUDE_DIRS})
    target_link_libraries(clipserve-decode-compare PRIVATE
      opencv_core opencv_imgproc opencv_videoio)
    target_compile_definitions(clipserve-decode-compare PRIVATE CLIPSERVE_OPENCV_BASELINE)
  endif()
  clipserve_target_defaults(clipserve-decode-compare)
endif()
