#include "tests/integration/test_models.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "runtime/tiny_video_net.h"
#include "tests/runtime/test_models.h"

namespace clipserve::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string pattern = absl::StrCat(base ? base : "/tmp", "/clipserve-test-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string ModelConfigText(const std::string& name, int max_batch_size, int t,
                            int h, int w, int classes, const std::string& extra) {
  return absl::StrCat("name: \"", name, "\"\nbackend: \"torchscript\"\n",
                      "max_batch_size: ", max_batch_size, "\n",
                      "input { name: \"clip\" data_type: TYPE_FP32 dims: [3, ", t,
                      ", ", h, ", ", w, "] }\n",
                      "output { name: \"logits\" data_type: TYPE_FP32 dims: [",
                      classes, "] }\n", extra, "\n");
}

namespace {

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

void WriteTinyModel(const std::string& repo, const std::string& name,
                    const std::string& config, uint64_t seed,
                    const std::vector<std::string>& labels) {
  const fs::path dir = fs::path(repo) / name;
  WriteFile(dir / "config.pbtxt", config);
  fs::create_directories(dir / "1");
  runtime::TinyVideoNetOptions options;
  options.seed = seed;
  // The class count is in the config; read it back from there.
  const size_t at = config.find("output {");
  const size_t dims = config.find("dims: [", at);
  options.num_classes = std::stoll(config.substr(dims + 7));
  options.width = 8;
  const absl::Status s = runtime::SaveTinyVideoNet((dir / "1" / "model.pt").string(), options);
  if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  if (!labels.empty()) {
    std::string text;
    for (const std::string& l : labels) absl::StrAppend(&text, l, "\n");
    WriteFile(dir / "labels.txt", text);
  }
}

void WriteScriptModel(const std::string& repo, const std::string& name,
                      const std::string& config, const std::string& source,
                      int classes) {
  const fs::path dir = fs::path(repo) / name;
  WriteFile(dir / "config.pbtxt", config);
  fs::create_directories(dir / "1");
  torch::jit::Module m("TestModel");
  torch::manual_seed(3);
  m.register_parameter("w", torch::randn({3, classes}), false);
  runtime::testing::DefineWithExceptions(m, source);
  m.save((dir / "1" / "model.pt").string());
}

std::string LinearForward() {
  return R"(
def forward(self, x):
    return x.mean(dim=[2, 3, 4]).matmul(self.w)
)";
}

void WriteBallastModel(const std::string& repo, const std::string& name,
                       const std::string& config, int classes,
                       int64_t ballast_floats, int version) {
  const fs::path dir = fs::path(repo) / name;
  WriteFile(dir / "config.pbtxt", config);
  const fs::path version_dir = dir / absl::StrCat(version);
  fs::create_directories(version_dir);
  torch::jit::Module m("BallastModel");
  torch::manual_seed(version);
  m.register_parameter("w", torch::randn({3, classes}), false);
  m.register_buffer("ballast", torch::rand({ballast_floats}));
  runtime::testing::DefineWithExceptions(m, LinearForward());
  m.save((version_dir / "model.pt").string());
}

std::string SlowForward(int iterations) {
  // The work is on a fixed 4M-element tensor, so a batch takes about as long
  // whatever its size or the clip's.
  return absl::StrCat(R"(
def forward(self, x):
    big = torch.ones([64, 256, 256]) * x.mean()
    for i in range()", iterations, R"():
        big = torch.tanh(big)
    return (x.mean(dim=[2, 3, 4]) + big.mean()).matmul(self.w)
)");
}

std::string FailingForward() {
  return R"(
def forward(self, x):
    if bool(x.max() > 0.99):
        raise Exception("boom: saturated pixels")
    return x.mean(dim=[2, 3, 4]).matmul(self.w)
)";
}

std::string HangingForward(int iterations) {
  return absl::StrCat(R"(
def forward(self, x):
    head = x.mean(dim=[2, 3, 4]).matmul(self.w)
    if bool(x.max() > 0.99):
        big = torch.ones([16, 256, 256])
        for i in range()", iterations, R"():
            big = torch.tanh(big)
        head = head + big.mean() * 0
    return head
)");
}

std::vector<float> DirectModelLogits(const std::string& model_path,
                                     const std::string& frames, int t, int h,
                                     int w) {
  torch::jit::Module m = torch::jit::load(model_path);
  m.eval();
  torch::NoGradGuard no_grad;
  const at::Tensor clip =
      torch::from_blob(const_cast<char*>(frames.data()), {1, t, h, w, 3},
                       torch::kUInt8);
  const at::Tensor x =
      clip.to(torch::kFloat).div(127.5).sub(1).permute({0, 4, 1, 2, 3}).contiguous();
  const at::Tensor y = m.forward({x}).toTensor().contiguous();
  return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
}

}  // namespace clipserve::testing
