// clipserve-bench-repo DIR: writes the model repository the benchmarks use.
//
//   DIR/tiny-b8  TinyVideoNet (seed 0, 400 classes, 16 x 112 x 112), dynamic
//                batching up to 8 with a 2 ms window
//   DIR/tiny-b1  the same weights with max_batch_size 1 (batching off)
//   DIR/micro    the same network on 4 x 16 x 16 clips: so cheap that the
//                server's own per-request work dominates
//
// clipserve-bench-repo DIR streams: the live-stream benchmark's model only,
//   DIR/tiny8-b8 TinyVideoNet on 8 x 112 x 112 windows, batching up to 8
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/tiny_video_net.h"

namespace {

bool WriteModel(const std::filesystem::path& root, const std::string& name,
                int max_batch_size, const char* dims = "16, 112, 112") {
  const std::filesystem::path dir = root / name;
  std::filesystem::create_directories(dir / "1");
  std::ofstream(dir / "config.pbtxt")
      << "name: \"" << name << "\"\n"
      << "backend: \"torchscript\"\n"
      << "max_batch_size: " << max_batch_size << "\n"
      << "input { name: \"clip\" data_type: TYPE_FP32 dims: [3, " << dims << "] }\n"
      << "output { name: \"logits\" data_type: TYPE_FP32 dims: [400] }\n"
      << "dynamic_batching { max_queue_delay_microseconds: 2000 max_queue_size: 256 }\n"
      << "instance_group { count: 1 kind: KIND_CPU }\n";
  clipserve::runtime::TinyVideoNetOptions options;  // seed 0, as built in
  const absl::Status s = clipserve::runtime::SaveTinyVideoNet(
      (dir / "1" / "model.pt").string(), options);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(s.message()).c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bool streams = argc == 3 && std::string(argv[2]) == "streams";
  if (argc != 2 && !streams) {
    std::fprintf(stderr, "usage: clipserve-bench-repo DIR [streams]\n");
    return 64;
  }
  const std::filesystem::path root = argv[1];
  if (streams) return WriteModel(root, "tiny8-b8", 8, "8, 112, 112") ? 0 : 1;
  return WriteModel(root, "tiny-b8", 8) && WriteModel(root, "tiny-b1", 1) &&
                 WriteModel(root, "micro", 8, "4, 16, 16")
             ? 0
             : 1;
}
