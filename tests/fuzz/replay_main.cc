// main() for a fuzz target built without libFuzzer: runs the target on each
// file named, and with --mutations N also on N mutants of each (bytes
// flipped, cut short, or a stretch overwritten), from a fixed seed, so the
// same inputs run every time.
//
//   video_fuzz_decode_clip [--mutations N] FILE...
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  int mutations = 0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::atoi(argv[++i]);
    } else {
      files.push_back(argv[i]);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s [--mutations N] FILE...\n", argv[0]);
    return 64;
  }
  std::mt19937_64 rng(2026);
  long runs = 0;
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", file.c_str());
      return 1;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string seed = buffer.str();
    Run(seed);
    ++runs;
    for (int m = 0; m < mutations && !seed.empty(); ++m) {
      std::string mutant = seed;
      switch (rng() % 3) {
        case 0:  // flip a few bytes (the first one, which picks the mode, too)
          for (int k = 0; k < 1 + static_cast<int>(rng() % 16); ++k) {
            mutant[rng() % mutant.size()] ^= static_cast<char>(1 + rng() % 255);
          }
          break;
        case 1:  // cut short
          mutant.resize(rng() % mutant.size());
          break;
        default: {  // overwrite a stretch with noise
          const size_t at = rng() % mutant.size();
          const size_t n = std::min<size_t>(mutant.size() - at, 1 + rng() % 4096);
          for (size_t k = 0; k < n; ++k) mutant[at + k] = static_cast<char>(rng());
        }
      }
      Run(mutant);
      ++runs;
    }
  }
  std::printf("%ld inputs, no failure\n", runs);
  return 0;
}
