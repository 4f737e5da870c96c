// Tests of the native I3D: architecture and checkpoint layout, TF SAME
// padding, the forward at serving sizes, safetensors and .pth checkpoints,
// key handling and refusals, and LoadI3dBackend end to end.
#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/backend.h"
#include "runtime/checkpoint.h"
#include "runtime/clip.h"
#include "runtime/i3d.h"
#include "runtime/i3d_backend.h"
#include "runtime/zip_check.h"
#include "runtime/safetensors.h"

namespace clipserve::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------
// Helpers

// One model per test process, shared by the tests that only run forwards.
InceptionI3d& SharedModel() {
  static InceptionI3d* model = [] {
    auto* m = new InceptionI3d(I3dOptions{});
    InitI3dRandom(*m, 1);
    (*m)->eval();
    return m;
  }();
  return *model;
}

// Directories made by TempDir, removed when the test program ends (some
// hold full I3D checkpoints, 50 MB each).
std::vector<std::string>& MadeDirs() {
  static auto* dirs = new std::vector<std::string>;
  return *dirs;
}

class RemoveTempDirs : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    for (const std::string& dir : MadeDirs()) fs::remove_all(dir, ec);
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveTempDirs =
    ::testing::AddGlobalTestEnvironment(new RemoveTempDirs);

// A fresh directory under the test temp dir.
std::string TempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const fs::path dir = fs::path(::testing::TempDir()) /
                       absl::StrCat("i3d_test_", getpid(), "_", counter++, "_",
                                    name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  MadeDirs().push_back(dir.string());
  return dir.string();
}

at::Tensor Forward(InceptionI3d& model, const at::Tensor& x) {
  c10::InferenceMode guard;
  return model->forward(x);
}

at::Tensor RandomClip(at::IntArrayRef sizes, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand(sizes, gen, at::TensorOptions().dtype(at::kFloat))
      .mul_(2)
      .sub_(1);
}

// Max |a - b| relative to max |b| (and at least 1e-6).
double RelDiff(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-6);
  return (a - b).abs().max().item<double>() / scale;
}

bool SameStateDicts(const std::map<std::string, at::Tensor>& a,
                    const std::map<std::string, at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end() || !at::equal(v, it->second)) return false;
  }
  return true;
}

// Runs the .pth helper script with /usr/bin/python3 (torch installed).
void MakePth(const std::string& safetensors, const std::string& pth,
             const std::string& flags = "") {
  const std::string log = pth + ".log";
  const std::string cmd =
      absl::StrCat(CLIPSERVE_TORCH_PYTHON, " ", CLIPSERVE_I3D_MAKE_PTH, " '",
                   safetensors, "' '", pth, "' ", flags, " > '", log,
                   "' 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)),
                           std::istreambuf_iterator<char>());
  ASSERT_EQ(rc, 0) << cmd << "\n" << output;
}

// Writes a raw safetensors-like file: header length, header, data.
void WriteRaw(const std::string& path, const std::string& header,
              const std::string& data, int64_t header_len = -1) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t n = header_len >= 0 ? static_cast<uint64_t>(header_len)
                               : static_cast<uint64_t>(header.size());
  for (int i = 0; i < 8; ++i) {
    const char byte = static_cast<char>(n & 0xFF);
    out.write(&byte, 1);
    n >>= 8;
  }
  out << header << data;
}

std::string ReadError(const std::string& path) {
  auto result = ReadSafetensors(path);
  EXPECT_FALSE(result.ok());
  return result.ok() ? "" : std::string(result.status().message());
}

// ---------------------------------------------------------------------------
// Architecture

TEST(I3dArchitectureTest, ParameterAndLayerCounts) {
  InceptionI3d& model = SharedModel();
  int64_t params = 0;
  for (const at::Tensor& p : model->parameters()) params += p.numel();
  EXPECT_EQ(params, 12'697'264);

  int convs = 0, bns = 0;
  int64_t running_stats = 0;
  for (const auto& m : model->modules(/*include_self=*/false)) {
    if (std::dynamic_pointer_cast<torch::nn::Conv3dImpl>(m)) ++convs;
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm3dImpl>(m)) {
      ++bns;
      running_stats += bn->running_mean.numel() + bn->running_var.numel();
    }
  }
  EXPECT_EQ(convs, 58);
  EXPECT_EQ(bns, 57);
  EXPECT_EQ(running_stats, 14'560);
}

TEST(I3dArchitectureTest, StateDictUsesThePortsKeyNames) {
  const std::map<std::string, at::Tensor> state = I3dStateDict(SharedModel());
  // 58 conv weights, the logits bias, 4 tensors per BatchNorm.
  EXPECT_EQ(state.size(), 58u + 1u + 57u * 4u);
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"Conv3d_1a_7x7.conv3d.weight", {64, 3, 7, 7, 7}},
      {"Conv3d_1a_7x7.bn.weight", {64}},
      {"Conv3d_1a_7x7.bn.bias", {64}},
      {"Conv3d_1a_7x7.bn.running_mean", {64}},
      {"Conv3d_1a_7x7.bn.running_var", {64}},
      {"Conv3d_2b_1x1.conv3d.weight", {64, 64, 1, 1, 1}},
      {"Conv3d_2c_3x3.conv3d.weight", {192, 64, 3, 3, 3}},
      {"Mixed_3b.b0.conv3d.weight", {64, 192, 1, 1, 1}},
      {"Mixed_3b.b1a.conv3d.weight", {96, 192, 1, 1, 1}},
      {"Mixed_3b.b1b.conv3d.weight", {128, 96, 3, 3, 3}},
      {"Mixed_3b.b2b.bn.running_var", {32}},
      {"Mixed_3b.b3b.conv3d.weight", {32, 192, 1, 1, 1}},
      {"Mixed_4f.b0.conv3d.weight", {256, 528, 1, 1, 1}},
      {"Mixed_5c.b1b.conv3d.weight", {384, 192, 3, 3, 3}},
      {"Mixed_5c.b3b.bn.running_mean", {128}},
      {"logits.conv3d.weight", {400, 1024, 1, 1, 1}},
      {"logits.conv3d.bias", {400}},
  };
  for (const auto& [key, shape] : expected) {
    auto it = state.find(key);
    ASSERT_NE(it, state.end()) << key;
    EXPECT_EQ(it->second.sizes(), at::IntArrayRef(shape)) << key;
  }
  for (const auto& [key, tensor] : state) {
    EXPECT_EQ(key.find("num_batches_tracked"), std::string::npos) << key;
    EXPECT_EQ(key.find("b3a"), std::string::npos) << key;
    EXPECT_EQ(tensor.scalar_type(), at::kFloat) << key;
  }
  EXPECT_EQ(state.count("logits.bn.weight"), 0u);
}

TEST(I3dArchitectureTest, FlowModelTakesTwoChannels) {
  InceptionI3d flow(I3dOptions{/*num_classes=*/10, /*in_channels=*/2});
  const auto state = I3dStateDict(flow);
  EXPECT_EQ(state.at("Conv3d_1a_7x7.conv3d.weight").sizes(),
            at::IntArrayRef({64, 2, 7, 7, 7}));
  EXPECT_EQ(state.at("logits.conv3d.weight").sizes(),
            at::IntArrayRef({10, 1024, 1, 1, 1}));
  flow->eval();
  EXPECT_EQ(Forward(flow, RandomClip({2, 2, 8, 32, 32}, 1)).sizes(),
            at::IntArrayRef({2, 10}));
}

TEST(I3dArchitectureTest, RejectsWrongInput) {
  InceptionI3d& model = SharedModel();
  EXPECT_THROW(Forward(model, at::zeros({1, 2, 8, 32, 32})), c10::Error);
  EXPECT_THROW(Forward(model, at::zeros({3, 8, 32, 32})), c10::Error);
  EXPECT_THROW(Forward(model, at::zeros({1, 3, 0, 32, 32})), c10::Error);
}

TEST(I3dRandomInitTest, DeterministicPerSeedWithNonTrivialBatchNorm) {
  InceptionI3d a, b, c;
  InitI3dRandom(a, 42);
  InitI3dRandom(b, 42);
  InitI3dRandom(c, 43);
  const auto sa = I3dStateDict(a);
  EXPECT_TRUE(SameStateDicts(sa, I3dStateDict(b)));
  EXPECT_FALSE(SameStateDicts(sa, I3dStateDict(c)));
  // BatchNorm in eval mode must do something a cross-check can see.
  const at::Tensor mean = sa.at("Mixed_4c.b1b.bn.running_mean");
  const at::Tensor var = sa.at("Mixed_4c.b1b.bn.running_var");
  const at::Tensor gamma = sa.at("Mixed_4c.b1b.bn.weight");
  EXPECT_GT(mean.abs().min().item<float>(), 0.0f);
  EXPECT_GT((var - 1).abs().max().item<float>(), 0.1f);
  EXPECT_GT((gamma - 1).abs().max().item<float>(), 0.1f);
  EXPECT_GT(var.min().item<float>(), 0.0f);
}

TEST(I3dRandomInitTest, LogitsAreWellScaled) {
  // Neither vanishing nor exploding through 57 random layers.
  const at::Tensor logits =
      Forward(SharedModel(), RandomClip({2, 3, 16, 64, 64}, 5));
  ASSERT_TRUE(at::isfinite(logits).all().item<bool>());
  const double std = logits.std().item<double>();
  EXPECT_GT(std, 1e-2);
  EXPECT_LT(std, 1e2);
  // The two clips differ, so should their logits.
  EXPECT_GT((logits[0] - logits[1]).abs().max().item<double>(), 1e-4);
}

// ---------------------------------------------------------------------------
// Padding

TEST(I3dPaddingTest, TfSameAmounts) {
  EXPECT_EQ(TfSamePadding(224, 7, 2), (SamePadding{2, 3}));  // Conv3d_1a
  EXPECT_EQ(TfSamePadding(7, 3, 2), (SamePadding{1, 1}));    // odd, s2
  EXPECT_EQ(TfSamePadding(1, 3, 1), (SamePadding{1, 1}));
  EXPECT_EQ(TfSamePadding(1, 7, 2), (SamePadding{3, 3}));
  EXPECT_EQ(TfSamePadding(112, 3, 2), (SamePadding{0, 1}));
  EXPECT_EQ(TfSamePadding(16, 7, 2), (SamePadding{2, 3}));
  EXPECT_EQ(TfSamePadding(79, 7, 2), (SamePadding{3, 3}));
  EXPECT_EQ(TfSamePadding(7, 2, 2), (SamePadding{0, 1}));
  EXPECT_EQ(TfSamePadding(8, 2, 2), (SamePadding{0, 0}));
  EXPECT_EQ(TfSamePadding(9, 1, 1), (SamePadding{0, 0}));
  EXPECT_EQ(TfSamePadding(5, 1, 2), (SamePadding{0, 0}));
  for (int64_t size = 1; size <= 40; ++size) {
    for (int64_t k = 1; k <= 7; ++k) {
      for (int64_t s = 1; s <= 2; ++s) {
        const SamePadding p = TfSamePadding(size, k, s);
        EXPECT_LE(p.front, p.back);
        EXPECT_LE(p.back - p.front, 1);
        if (k >= s) {  // SAME: ceil(size / stride) outputs
          EXPECT_EQ((size + p.front + p.back - k) / s + 1, (size + s - 1) / s)
              << size << " " << k << " " << s;
        }
      }
    }
  }
}

TEST(I3dPaddingTest, SameConvEqualsExplicitPadThenConv) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const std::vector<std::vector<int64_t>> sizes = {
      {1, 3, 7, 9, 11}, {2, 3, 1, 1, 1}, {1, 4, 5, 8, 6}, {2, 2, 16, 15, 13}};
  for (const auto& s : sizes) {
    for (int64_t k : {1, 3, 7}) {
      for (int64_t stride : {1, 2}) {
        const at::Tensor x = at::randn(s, gen);
        const at::Tensor w = at::randn({5, s[1], k, k, k}, gen);
        const at::Tensor b = at::randn({5}, gen);
        const at::Tensor want =
            at::conv3d(PadSame(x, {k, k, k}, {stride, stride, stride}, 0), w,
                       b, {stride, stride, stride});
        for (I3dConvPath path :
             {I3dConvPath::kDirectMkldnn, I3dConvPath::kAten}) {
          c10::InferenceMode guard;
          const at::Tensor got =
              SameConv3d(x, w, b, {stride, stride, stride}, path);
          ASSERT_EQ(got.sizes(), want.sizes());
          EXPECT_LT(RelDiff(got, want), 1e-5)
              << at::IntArrayRef(s) << " k" << k << " s" << stride;
        }
      }
    }
  }
}

TEST(I3dPaddingTest, SameMaxPoolIgnoresPaddingAndMatchesZeroPadOnReluOutput) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const std::vector<std::array<int64_t, 3>> kernels = {
      {1, 3, 3}, {3, 3, 3}, {2, 2, 2}};
  const std::vector<std::array<int64_t, 3>> strides = {
      {1, 2, 2}, {2, 2, 2}, {1, 1, 1}};
  for (const auto& size : std::vector<std::vector<int64_t>>{
           {1, 2, 7, 9, 11}, {2, 3, 1, 1, 1}, {1, 2, 4, 14, 15}}) {
    const at::Tensor x = at::randn(size, gen);  // negative values too
    for (const auto& k : kernels) {
      for (const auto& s : strides) {
        const at::Tensor got = SameMaxPool3d(x, k, s);
        const at::Tensor want = at::max_pool3d(
            PadSame(x, k, s, -std::numeric_limits<double>::infinity()), k, s);
        EXPECT_TRUE(at::equal(got, want));
        // On ReLU output, zero padding (the PyTorch port's) is the same.
        const at::Tensor r = at::relu(x);
        EXPECT_TRUE(at::equal(SameMaxPool3d(r, k, s),
                              at::max_pool3d(PadSame(r, k, s, 0), k, s)));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Forward at serving sizes (batch 1, CPU-heavy) and small sizes

void ExpectServingShape(int64_t frames, int64_t t_prime) {
  InceptionI3d& model = SharedModel();
  const at::Tensor x = RandomClip({1, 3, frames, 224, 224}, frames);
  c10::InferenceMode guard;
  const at::Tensor map = model->logits_map(x);
  EXPECT_EQ(map.sizes(), at::IntArrayRef({1, 400, t_prime, 1, 1}));
  const at::Tensor logits = map.mean({2, 3, 4});
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  EXPECT_EQ(model->forward(x).sizes(), at::IntArrayRef({1, 400}));
}

TEST(I3dForwardTest, Shape16x224x224) { ExpectServingShape(16, 1); }
TEST(I3dForwardTest, Shape64x224x224) { ExpectServingShape(64, 7); }
TEST(I3dForwardTest, Shape79x224x224) { ExpectServingShape(79, 9); }

TEST(I3dForwardTest, SmallAndOddInputs) {
  InceptionI3d& model = SharedModel();
  struct Case {
    std::vector<int64_t> size;
    std::vector<int64_t> map;
  };
  const std::vector<Case> cases = {
      {{1, 3, 8, 32, 32}, {1, 400, 1, 1, 1}},
      {{1, 3, 1, 1, 1}, {1, 400, 1, 1, 1}},
      {{2, 3, 9, 64, 48}, {2, 400, 1, 1, 1}},
      {{1, 3, 40, 112, 160}, {1, 400, 4, 1, 1}},
      {{1, 3, 8, 240, 240}, {1, 400, 1, 2, 2}},
  };
  for (const Case& c : cases) {
    const at::Tensor x = RandomClip(c.size, 9);
    c10::InferenceMode guard;
    const at::Tensor map = model->logits_map(x);
    EXPECT_EQ(map.sizes(), at::IntArrayRef(c.map)) << at::IntArrayRef(c.size);
    const at::Tensor logits = model->forward(x);
    EXPECT_EQ(logits.sizes(), at::IntArrayRef({c.size[0], 400}));
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  }
}

TEST(I3dForwardTest, BatchRowsAreIndependent) {
  InceptionI3d& model = SharedModel();
  const at::Tensor x = RandomClip({3, 3, 9, 48, 40}, 11);
  const at::Tensor batched = Forward(model, x);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_LT(RelDiff(Forward(model, x.slice(0, i, i + 1))[0], batched[i]),
              1e-4);
  }
}

TEST(I3dForwardTest, DirectOneDnnPathEqualsAtenPath) {
  InceptionI3d& model = SharedModel();
  for (int64_t batch : {1, 2}) {
    const at::Tensor x = RandomClip({batch, 3, 9, 64, 48}, 12);
    model->set_conv_path(I3dConvPath::kAten);
    const at::Tensor aten = Forward(model, x);
    model->set_conv_path(I3dConvPath::kDirectMkldnn);
    const at::Tensor direct = Forward(model, x);
    EXPECT_LT(RelDiff(direct, aten), 1e-4) << "batch " << batch;
  }
}

TEST(I3dForwardTest, ConvObserverSeesEveryConvolution) {
  InceptionI3d& model = SharedModel();
  std::vector<std::string> names;
  model->set_conv_observer(
      [&](const std::string& name, const at::Tensor& input, const at::Tensor&,
          std::array<int64_t, 3>, std::array<int64_t, 3>) {
        names.push_back(name);
        if (name == "Conv3d_1a_7x7") {
          // 16 x 32 x 32, k7 s2: pads (2, 3) per axis; the symmetric 2 is
          // the conv's own, one extra at the back is explicit.
          EXPECT_EQ(input.sizes(), at::IntArrayRef({1, 3, 17, 33, 33}));
        }
      });
  Forward(model, RandomClip({1, 3, 16, 32, 32}, 1));
  model->set_conv_observer(nullptr);
  ASSERT_EQ(names.size(), 58u);
  EXPECT_EQ(names.front(), "Conv3d_1a_7x7");
  EXPECT_EQ(names[3], "Mixed_3b.b0");
  EXPECT_EQ(names.back(), "logits");
}

// ---------------------------------------------------------------------------
// safetensors

std::map<std::string, at::Tensor> SampleTensors() {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(8);
  return {
      {"a.weight", at::randn({4, 3, 2}, gen)},
      {"b", at::randn({7}, gen).mul_(1000)},
      {"scalar", at::full({}, 3.5)},
      {"empty", at::zeros({0, 3})},
      {"quote\"back\\slash\xc3\xa9", at::arange(5, at::kFloat)},
      {"strided", at::randn({6, 4}, gen).t()},
  };
}

TEST(SafetensorsTest, RoundTripF32IsExact) {
  const std::string path = TempDir("st") + "/t.safetensors";
  const auto tensors = SampleTensors();
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  // The data starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);

  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const at::Tensor& got = read->at(name);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(got, t)) << name;
  }
}

TEST(SafetensorsTest, RoundTripF16AndBF16) {
  const std::string dir = TempDir("st16");
  const at::Tensor values = RandomClip({3, 50}, 2).mul_(100);
  struct Case {
    at::ScalarType type;
    double tolerance;  // relative, the dtype's precision
  };
  for (const Case& c : {Case{at::kHalf, 1e-3}, Case{at::kBFloat16, 8e-3}}) {
    const std::string path = absl::StrCat(dir, "/", c10::toString(c.type));
    const at::Tensor low = values.to(c.type);
    ASSERT_TRUE(WriteSafetensors(path, {{"x", low}, {"f", values}}).ok());
    auto read = ReadSafetensors(path);
    ASSERT_TRUE(read.ok()) << read.status();
    const at::Tensor x = read->at("x");
    EXPECT_EQ(x.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(x, low.to(at::kFloat)));  // exact conversion
    EXPECT_LT(((x - values).abs() / values.abs().clamp_min(1)).max().item<double>(),
              c.tolerance);
    EXPECT_TRUE(at::equal(read->at("f"), values));
  }
}

TEST(SafetensorsTest, WriterRefusesOtherDtypes) {
  const std::string path = TempDir("stw") + "/t.safetensors";
  const absl::Status s =
      WriteSafetensors(path, {{"i", at::arange(3, at::kLong)}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tensor 'i' has dtype Long (supported: float32, "
                        "float16, bfloat16)"));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(WriteSafetensors(path, {{"__metadata__", at::zeros({1})}}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, AcceptsMetadataAndHeaderPadding) {
  const std::string path = TempDir("stm") + "/t.safetensors";
  WriteRaw(path,
           "{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"F32\","
           "\"shape\":[2],\"data_offsets\":[0,8]}}     ",
           std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8));
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 1u);
  EXPECT_TRUE(at::equal(read->at("x"), at::tensor({1.0f, 2.0f})));
}

class SafetensorsRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TempDir("bad") + "/bad.safetensors"; }
  std::string Prefix() const { return "safetensors file " + path_ + ": "; }
  std::string path_;
};

TEST_F(SafetensorsRefusalTest, MissingFile) {
  auto r = ReadSafetensors(path_ + ".nope");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("does not exist"));
}

TEST_F(SafetensorsRefusalTest, TooShortForHeaderLength) {
  std::ofstream(path_, std::ios::binary) << "abc";
  EXPECT_EQ(ReadError(path_),
            Prefix() + "too short (3 bytes) for the 8-byte header length");
}

TEST_F(SafetensorsRefusalTest, BadHeaderLength) {
  WriteRaw(path_, "{}", "", 0);
  EXPECT_EQ(ReadError(path_), Prefix() + "header length is 0");
  WriteRaw(path_, "{}", "", int64_t{1} << 40);
  EXPECT_EQ(ReadError(path_),
            Prefix() + "header length 1099511627776 exceeds the limit of "
                       "100000000 bytes (not a safetensors file?)");
  WriteRaw(path_, "{}", "", 100);
  EXPECT_EQ(ReadError(path_), Prefix() + "header length 100 runs past the "
                                         "end of the file (10 bytes)");
}

TEST_F(SafetensorsRefusalTest, BadJson) {
  WriteRaw(path_, "{\"x\": {\"dtype\": \"F32\",", "");
  EXPECT_EQ(ReadError(path_), Prefix() + "invalid JSON header at byte 22: "
                                         "expected a string key");
  WriteRaw(path_, "{\"x\" 1}", "");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "invalid JSON header at byte 5: expected ':'");
  WriteRaw(path_, "[1, 2]", "");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "header must be a JSON object, got an array");
  WriteRaw(path_, "{\"a\":{},\"a\":{}}", "");
  EXPECT_EQ(ReadError(path_), Prefix() + "invalid JSON header at byte 11: "
                                         "duplicate key \"a\"");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "invalid JSON header at byte 30: expected an integer, "
                       "got a fractional number");
}

TEST_F(SafetensorsRefusalTest, JsonTheHeaderNeverUses) {
  // Each refusal of the parser, by its reason (the byte offset aside).
  const std::pair<std::string, std::string> cases[] = {
      {"{\"x\":true}", "true/false/null are not used in a safetensors header"},
      {"{\"x\":" + std::string(40, '['), "nested too deeply"},
      {"{\"x\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}",
       "leading zero in a number"},
      {"{\"x\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
       "\"data_offsets\":[0,4]}}",
       "integer out of range"},
      {"{\"a\nb\":{}}", "control character in string"},
      {"{\"\\ud800x\":{}}", "unpaired surrogate in \\u escape"},
      {"{\"\\q\":{}}", "invalid escape in string"},
  };
  for (const auto& [header, reason] : cases) {
    WriteRaw(path_, header, "abcd");
    const std::string error = ReadError(path_);
    EXPECT_THAT(error, StartsWith(Prefix() + "invalid JSON header at byte "))
        << header;
    EXPECT_THAT(error, HasSubstr(reason)) << header;
  }
  // A dimension that does not fit int64 is refused, not wrapped.
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],"
           "\"data_offsets\":[0,4]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() +
                "tensor 'x': shape must be an array of non-negative integers");
}

TEST_F(SafetensorsRefusalTest, BadEntries) {
  WriteRaw(path_, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "tensor 'x': missing field \"data_offsets\"");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
           "\"extra\":1}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "tensor 'x': unknown field \"extra\" (expected dtype, "
                       "shape, data_offsets)");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() +
                "tensor 'x': shape must be an array of non-negative integers");
  WriteRaw(path_,
           "{\"__metadata__\":{\"n\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
           "\"data_offsets\":[0,4]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() +
                "__metadata__ value for \"n\" must be a string, got an integer");
}

TEST_F(SafetensorsRefusalTest, UnsupportedDtype) {
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
           std::string(8, '\0'));
  EXPECT_EQ(ReadError(path_), Prefix() + "tensor 'x': unsupported dtype I64 "
                                         "(supported: F32, F16, BF16)");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,8]}}",
           std::string(8, '\0'));
  EXPECT_EQ(ReadError(path_), Prefix() + "tensor 'x': unknown dtype Q7 "
                                         "(supported: F32, F16, BF16)");
}

TEST_F(SafetensorsRefusalTest, OffsetsOutOfRangeOrInconsistent) {
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "tensor 'x': data_offsets [0, 8] run past the end of "
                       "the data (4 bytes after the header; is the file "
                       "truncated?)");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
           "abcdefgh");
  EXPECT_EQ(ReadError(path_),
            Prefix() + "tensor 'x': shape [3] of F32 needs 3 x 4 bytes but "
                       "data_offsets [0, 8] hold 8");
  WriteRaw(path_,
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
           "abcd");
  EXPECT_EQ(ReadError(path_), Prefix() + "tensor 'x': data_offsets [4, 0] "
                                         "end before they begin");
  WriteRaw(path_,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           std::string(12, '\0'));
  EXPECT_EQ(ReadError(path_),
            Prefix() + "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
  WriteRaw(path_,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           std::string(8, '\0'));
  EXPECT_EQ(ReadError(path_),
            Prefix() + "bytes [0, 4) of the data belong to no tensor");
  WriteRaw(path_,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
           std::string(6, '\0'));
  EXPECT_EQ(ReadError(path_), Prefix() + "2 bytes after the last tensor "
                                         "(data is 6 bytes, tensors end at 4)");
}

TEST_F(SafetensorsRefusalTest, TruncatedFile) {
  ASSERT_TRUE(WriteSafetensors(path_, SampleTensors()).ok());
  const auto size = fs::file_size(path_);
  fs::resize_file(path_, size - 4);
  EXPECT_THAT(ReadError(path_),
              ::testing::MatchesRegex(".*tensor '.*': data_offsets \\[[0-9]+, "
                                      "[0-9]+\\] run past the end of the data "
                                      "\\([0-9]+ bytes after the header; is "
                                      "the file truncated\\?\\)"));
}

// ---------------------------------------------------------------------------
// State dict key handling and refusals

TEST(I3dStateDictTest, RoundTripThroughAnotherModel) {
  InceptionI3d a(I3dOptions{10, 3}), b(I3dOptions{10, 3});
  InitI3dRandom(a, 1);
  InitI3dRandom(b, 2);
  ASSERT_TRUE(LoadI3dStateDict(b, I3dStateDict(a)).ok());
  EXPECT_TRUE(SameStateDicts(I3dStateDict(a), I3dStateDict(b)));
}

TEST(I3dStateDictTest, AcceptsModulePrefixIgnoresNumBatchesTrackedConverts) {
  InceptionI3d a(I3dOptions{10, 3}), b(I3dOptions{10, 3});
  InitI3dRandom(a, 1);
  std::map<std::string, at::Tensor> state;
  for (const auto& [k, v] : I3dStateDict(a)) {
    state["module." + k] = v.to(at::kDouble);
    if (k.size() > 16 && k.substr(k.size() - 16) == ".bn.running_mean") {
      state["module." + k.substr(0, k.size() - 12) + "num_batches_tracked"] =
          at::scalar_tensor(5, at::kLong);
    }
  }
  const absl::Status s = LoadI3dStateDict(b, state);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(SameStateDicts(I3dStateDict(a), I3dStateDict(b)));
}

TEST(I3dStateDictTest, RefusesWithEveryOffenderAndCopiesNothing) {
  InceptionI3d a(I3dOptions{10, 3}), b;
  InitI3dRandom(a, 1);
  InitI3dRandom(b, 2);
  const auto before = I3dStateDict(b);
  std::map<std::string, at::Tensor> before_copy;
  for (const auto& [k, v] : before) before_copy[k] = v.clone();

  auto state = I3dStateDict(a);  // 10 classes into a 400-class model
  state.erase("Conv3d_1a_7x7.bn.running_mean");
  state.erase("Mixed_5c.b3b.conv3d.weight");
  state["foo.bar"] = at::zeros({1});
  state["Mixed_3b.b0.bn.weight"] = at::zeros({64}, at::kLong);
  state["module.Mixed_3b.b0.bn.bias"] = at::zeros({64});
  const absl::Status s = LoadI3dStateDict(b, state);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "state dict does not fit I3D (400 classes, 3 channels): "
            "missing: [Conv3d_1a_7x7.bn.running_mean, "
            "Mixed_5c.b3b.conv3d.weight]; "
            "unexpected: [foo.bar]; "
            "wrong shape: [logits.conv3d.bias: got [10], want [400], "
            "logits.conv3d.weight: got [10, 1024, 1, 1, 1], want [400, 1024, "
            "1, 1, 1]]; "
            "not floating point: [Mixed_3b.b0.bn.weight: Long]; "
            "duplicate: [module.Mixed_3b.b0.bn.bias]");
  EXPECT_TRUE(SameStateDicts(I3dStateDict(b), before_copy));
}

TEST(I3dStateDictTest, EachRefusalAlone) {
  InceptionI3d m;
  auto good = I3dStateDict(m);
  const std::string head =
      "state dict does not fit I3D (400 classes, 3 channels): ";
  {
    auto state = good;
    state.erase("logits.conv3d.bias");
    EXPECT_EQ(LoadI3dStateDict(m, state).message(),
              head + "missing: [logits.conv3d.bias]");
  }
  {
    auto state = good;
    state["Mixed_3b.b3a.conv3d.weight"] = at::zeros({1});
    EXPECT_EQ(LoadI3dStateDict(m, state).message(),
              head + "unexpected: [Mixed_3b.b3a.conv3d.weight]");
  }
  {
    auto state = good;
    state["Conv3d_1a_7x7.conv3d.weight"] = at::zeros({64, 2, 7, 7, 7});
    EXPECT_EQ(LoadI3dStateDict(m, state).message(),
              head + "wrong shape: [Conv3d_1a_7x7.conv3d.weight: got [64, 2, "
                     "7, 7, 7], want [64, 3, 7, 7, 7]]");
  }
}

TEST(I3dCheckpointTest, SafetensorsMessageNamesTheFile) {
  const std::string dir = TempDir("ckpt");
  InceptionI3d small(I3dOptions{10, 3}), model;
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, I3dStateDict(small)).ok());
  const absl::Status s = LoadI3dCheckpoint(model, path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "checkpoint " + path +
                " does not fit I3D (400 classes, 3 channels): wrong shape: "
                "[logits.conv3d.bias: got [10], want [400], "
                "logits.conv3d.weight: got [10, 1024, 1, 1, 1], want [400, "
                "1024, 1, 1, 1]]");
  EXPECT_EQ(LoadI3dCheckpoint(model, dir + "/model.onnx").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(I3dCheckpointTest, SafetensorsF16CheckpointLoads) {
  const std::string path = TempDir("ck16") + "/model.safetensors";
  InceptionI3d a(I3dOptions{10, 3}), b(I3dOptions{10, 3});
  InitI3dRandom(a, 1);
  std::map<std::string, at::Tensor> half;
  for (const auto& [k, v] : I3dStateDict(a)) half["module." + k] = v.to(at::kHalf);
  ASSERT_TRUE(WriteSafetensors(path, half).ok());
  ASSERT_TRUE(LoadI3dCheckpoint(b, path).ok());
  for (const auto& [k, v] : I3dStateDict(b)) {
    EXPECT_TRUE(at::equal(v, half.at("module." + k).to(at::kFloat))) << k;
  }
}

// ---------------------------------------------------------------------------
// .pth (written by Python's torch.save)

TEST(PthTest, PlainDictRoundTripKeepsValuesAndDtypes) {
  const std::string dir = TempDir("pth");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const std::map<std::string, at::Tensor> tensors = {
      {"w", at::randn({3, 4, 2}, gen)},
      {"h", at::randn({5}, gen).to(at::kHalf)},
      {"bf", at::randn({2, 2}, gen).to(at::kBFloat16)},
  };
  ASSERT_TRUE(WriteSafetensors(dir + "/in.safetensors", tensors).ok());
  MakePth(dir + "/in.safetensors", dir + "/out.pth");
  auto read = ReadPthStateDict(dir + "/out.pth");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 3u);
  for (const auto& [k, v] : tensors) {
    EXPECT_EQ(read->at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(at::equal(read->at(k), v)) << k;
  }
}

TEST(PthTest, I3dCheckpointWithModulePrefixAndNumBatchesTracked) {
  const std::string dir = TempDir("pthi3d");
  InceptionI3d a(I3dOptions{10, 3}), b(I3dOptions{10, 3});
  InitI3dRandom(a, 1);
  ASSERT_TRUE(WriteSafetensors(dir + "/a.safetensors", I3dStateDict(a)).ok());
  MakePth(dir + "/a.safetensors", dir + "/model.pth",
          "--prefix module. --num-batches-tracked");
  const absl::Status s = LoadI3dCheckpoint(b, dir + "/model.pth");
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(SameStateDicts(I3dStateDict(a), I3dStateDict(b)));
}

// A damaged archive is refused before LibTorch reads it: LibTorch's zip
// reader crashes on some (an out-of-bounds read), and its unpickler
// allocates whatever a length says (4 GiB), as the pth fuzz target found.
// Every offset and size that locates the central directory, the entries
// and their data is checked, and every length in the pickle. A real
// torch.save archive passes (every .pth test above).
TEST(PthTest, DamagedArchivesAreRefusedBeforeLibTorchReadsThem) {
  const std::string dir = TempDir("pthzip");
  ASSERT_TRUE(WriteSafetensors(dir + "/in.safetensors",
                               {{"x", at::ones({2})}, {"y", at::zeros({3})}})
                  .ok());
  MakePth(dir + "/in.safetensors", dir + "/good.pth");
  std::ifstream in(dir + "/good.pth", std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)),
                         std::istreambuf_iterator<char>());
  ASSERT_TRUE(CheckZipStructure(good).ok()) << CheckZipStructure(good);
  // The (zip64) end records at the end: the classic one is the last 22 bytes.
  const size_t eocd = good.size() - 22;
  ASSERT_EQ(good.substr(eocd, 4), std::string("PK\x05\x06"));
  const auto put32 = [](std::string* s, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
  };
  const size_t central = good.find("PK\x01\x02");
  ASSERT_NE(central, std::string::npos);
  struct Case {
    const char* what;
    std::string bytes;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"cut short", good.substr(0, good.size() - 1),
                   "no end of central directory record"});
  cases.push_back({"cut in the middle", good.substr(0, good.size() / 2),
                   "no end of central directory record"});
  std::string local = good;
  put32(&local, central + 42, 0x7fffffff);  // entry 0's local header offset
  cases.push_back({"an entry's local header far away", local,
                   "entry 0's local header is not where it says"});
  std::string sized = good;
  put32(&sized, central + 20, 0x7ffffff0);  // entry 0's compressed size
  put32(&sized, central + 24, 0x7ffffff0);
  cases.push_back({"an entry's data past the end", sized,
                   "entry 0's data runs into the central directory"});
  // What the fuzzer found: a central directory LibTorch read out of
  // bounds, and a pickle string of 4 GiB that LibTorch allocated and
  // zero-filled before finding the file short.
  for (const auto& [file, message] :
       {std::pair<const char*, const char*>{"pth-central-dir-out-of-bounds",
                                            "damaged zip archive"},
        {"pth-pickle-declares-4gib-string",
         "damaged pickle (data.pkl): an argument of 4294966"}}) {
    std::ifstream f(std::string(CLIPSERVE_SOURCE_DIR) + "/tests/fuzz/regressions/" + file,
                    std::ios::binary);
    std::string fuzzed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(fuzzed.empty()) << file;
    cases.push_back({file, fuzzed, message});
  }
  for (const Case& c : cases) {
    const std::string path = dir + "/damaged.pth";
    std::ofstream(path, std::ios::binary) << c.bytes;
    auto read = ReadPthStateDict(path);
    ASSERT_FALSE(read.ok()) << c.what;
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(read.status().message().find(c.message), std::string::npos)
        << c.what << ": " << read.status().message();
    EXPECT_NE(read.status().message().find("checkpoint " + path), std::string::npos);
  }
}

// Two entries at least: LibTorch 1.13's unpickler cannot read a one-entry
// dict (Python pickles it with SETITEM, which it lacks).
const std::map<std::string, at::Tensor> kTwoTensors = {
    {"x", at::ones({2})}, {"y", at::zeros({3})}};

TEST(PthTest, NestedStateDictIsUnwrapped) {
  const std::string dir = TempDir("pthnest");
  ASSERT_TRUE(WriteSafetensors(dir + "/in.safetensors", kTwoTensors).ok());
  MakePth(dir + "/in.safetensors", dir + "/n.pth", "--wrap state_dict");
  auto read = ReadPthStateDict(dir + "/n.pth");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_TRUE(at::equal(read->at("x"), at::ones({2})));
  EXPECT_TRUE(at::equal(read->at("y"), at::zeros({3})));
}

TEST(PthTest, OrderedDictGetsAPreciseError) {
  const std::string dir = TempDir("pthod");
  ASSERT_TRUE(WriteSafetensors(dir + "/in.safetensors", kTwoTensors).ok());
  for (const char* flags : {"--ordered-dict", "--ordered-dict --wrap state_dict"}) {
    MakePth(dir + "/in.safetensors", dir + "/od.pth", flags);
    auto read = ReadPthStateDict(dir + "/od.pth");
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(read.status().message()),
              "checkpoint " + dir +
                  "/od.pth: holds a collections.OrderedDict (what "
                  "model.state_dict() returns), which LibTorch's "
                  "torch::pickle_load cannot read; save a plain dict: "
                  "torch.save(dict(model.state_dict()), path), or convert the "
                  "checkpoint with tools/convert_checkpoint.py")
        << flags;
  }
}

TEST(PthTest, LegacyFormatAndNonTensorEntriesAreRefused) {
  const std::string dir = TempDir("pthbad");
  ASSERT_TRUE(WriteSafetensors(dir + "/in.safetensors", kTwoTensors).ok());
  MakePth(dir + "/in.safetensors", dir + "/legacy.pth", "--legacy");
  auto read = ReadPthStateDict(dir + "/legacy.pth");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr("not a zip-format torch.save file"));
  MakePth(dir + "/in.safetensors", dir + "/extra.pth", "--extra-int epoch");
  read = ReadPthStateDict(dir + "/extra.pth");
  EXPECT_EQ(std::string(read.status().message()),
            "checkpoint " + dir +
                "/extra.pth: entries that are not name -> tensor: [epoch: Int]");
  EXPECT_EQ(ReadPthStateDict(dir + "/none.pth").status().code(),
            absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------
// LoadI3dBackend

ModelSpec SmallSpec(int64_t channels = 3) {
  ModelSpec spec;
  spec.input.channels = channels;
  spec.input.frames = 8;
  spec.input.height = 32;
  spec.input.width = 32;
  spec.num_classes = 400;
  return spec;
}

// Logits of one float clip [C, T, H, W] through the backend.
std::vector<float> RunFloat(Backend& backend, const at::Tensor& clip) {
  const at::Tensor c = clip.contiguous();
  ClipView view;
  view.dtype = ClipDType::kFloat32;
  view.shape = backend.spec().input;
  view.data = c.data_ptr<float>();
  std::vector<float> logits;
  const absl::Status s = backend.Run({view}, &logits);
  EXPECT_TRUE(s.ok()) << s;
  return logits;
}

at::Tensor AsTensor(const std::vector<float>& v) {
  return at::tensor(at::ArrayRef<float>(v));
}

TEST(I3dBackendTest, RandomWeightsAreUntrainedAndDeterministicPerSeed) {
  const ModelSpec spec = SmallSpec();
  auto a = LoadI3dBackend("", spec, BackendOptions{}, 7);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE((*a)->untrained());
  EXPECT_EQ((*a)->device(), "cpu");
  auto b = LoadI3dBackend(TempDir("emptydir"), spec, BackendOptions{}, 7);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->untrained());
  auto c = LoadI3dBackend("", spec, BackendOptions{}, 8);
  ASSERT_TRUE(c.ok()) << c.status();

  const at::Tensor clip = RandomClip({3, 8, 32, 32}, 1);
  const std::vector<float> la = RunFloat(**a, clip);
  ASSERT_EQ(la.size(), 400u);
  EXPECT_EQ(la, RunFloat(**b, clip));
  EXPECT_NE(la, RunFloat(**c, clip));
}

TEST(I3dBackendTest, SafetensorsWeightsGiveTheModulesLogits) {
  const std::string dir = TempDir("be");
  InceptionI3d model;
  InitI3dRandom(model, 3);
  model->eval();
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", I3dStateDict(model)).ok());
  BackendOptions options;
  options.warmup_batch_sizes = {1, 2};
  auto backend = LoadI3dBackend(dir, SmallSpec(), options, 99);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_FALSE((*backend)->untrained());

  // Float input.
  const at::Tensor clip = RandomClip({3, 8, 32, 32}, 4);
  const at::Tensor want = Forward(model, clip.unsqueeze(0))[0];
  EXPECT_LT(RelDiff(AsTensor(RunFloat(**backend, clip)), want), 1e-5);

  // uint8 input, T x H x W x C, two clips in one view: x / 127.5 - 1.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor bytes =
      at::randint(0, 256, {2, 8, 32, 32, 3}, gen, at::kByte);
  ClipView view;
  view.dtype = ClipDType::kUInt8;
  view.shape = SmallSpec().input;
  view.count = 2;
  view.data = bytes.data_ptr<uint8_t>();
  std::vector<float> logits;
  ASSERT_TRUE((*backend)->Run({view}, &logits).ok());
  const at::Tensor x =
      bytes.permute({0, 4, 1, 2, 3}).to(at::kFloat).div(127.5).sub(1);
  EXPECT_LT(RelDiff(AsTensor(logits).view({2, 400}), Forward(model, x)), 1e-5);
}

TEST(I3dBackendTest, PrefersSafetensorsOverPthAndReadsPthAlone) {
  const std::string dir = TempDir("pref");
  InceptionI3d st, pth;
  InitI3dRandom(st, 10);
  InitI3dRandom(pth, 11);
  st->eval();
  pth->eval();
  ASSERT_TRUE(WriteSafetensors(dir + "/p.safetensors", I3dStateDict(pth)).ok());
  MakePth(dir + "/p.safetensors", dir + "/model.pth");
  fs::remove(dir + "/p.safetensors");
  const at::Tensor clip = RandomClip({3, 8, 32, 32}, 6);

  auto only_pth = LoadI3dBackend(dir, SmallSpec(), BackendOptions{});
  ASSERT_TRUE(only_pth.ok()) << only_pth.status();
  EXPECT_FALSE((*only_pth)->untrained());
  EXPECT_LT(RelDiff(AsTensor(RunFloat(**only_pth, clip)),
                    Forward(pth, clip.unsqueeze(0))[0]),
            1e-5);

  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", I3dStateDict(st)).ok());
  auto both = LoadI3dBackend(dir, SmallSpec(), BackendOptions{});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_LT(RelDiff(AsTensor(RunFloat(**both, clip)),
                    Forward(st, clip.unsqueeze(0))[0]),
            1e-5);
}

TEST(I3dBackendTest, Refusals) {
  // Channels other than 2 or 3.
  auto r = LoadI3dBackend("", SmallSpec(4), BackendOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "I3D takes 3 input channels (RGB) or 2 (optical flow), got 4");
  // Optical flow is fine.
  auto flow = LoadI3dBackend("", SmallSpec(2), BackendOptions{});
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(RunFloat(**flow, RandomClip({2, 8, 32, 32}, 1)).size(), 400u);
  // A checkpoint for another class count.
  const std::string dir = TempDir("refuse");
  InceptionI3d small(I3dOptions{10, 3});
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", I3dStateDict(small)).ok());
  r = LoadI3dBackend(dir, SmallSpec(), BackendOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              StartsWith("checkpoint " + dir +
                         "/model.safetensors does not fit I3D (400 classes, 3 "
                         "channels): wrong shape: [logits.conv3d.bias"));
  // A corrupt file is not silently replaced by random weights.
  std::ofstream(dir + "/model.safetensors", std::ios::trunc) << "garbage!!";
  r = LoadI3dBackend(dir, SmallSpec(), BackendOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("model.safetensors: header length"));
  // A file where the directory should be.
  r = LoadI3dBackend(dir + "/model.safetensors", SmallSpec(), BackendOptions{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "I3D weights directory " + dir +
                                      "/model.safetensors is not a directory");
}

TEST(I3dBackendTest, AnyInputSizeWhenTheSpecLeavesItOpen) {
  ModelSpec spec = SmallSpec();
  spec.input.frames = -1;
  spec.input.height = -1;
  spec.input.width = -1;
  auto backend = LoadI3dBackend("", spec, BackendOptions{});
  ASSERT_TRUE(backend.ok()) << backend.status();
  for (const auto& s : std::vector<std::vector<int64_t>>{
           {1, 1, 1}, {9, 20, 17}, {3, 64, 48}}) {
    const at::Tensor clip = at::zeros({s[0], s[1], s[2], 3}, at::kByte);
    ClipView view;
    view.shape = {3, s[0], s[1], s[2]};
    view.data = clip.data_ptr<uint8_t>();
    std::vector<float> logits;
    const absl::Status status = (*backend)->Run({view}, &logits);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(logits.size(), 400u);
  }
}

}  // namespace
}  // namespace clipserve::runtime
