// LoadTorchScriptBackend and the shared TorchBackend machinery, against
// TorchScript models written here.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "absl/status/status.h"
#include "runtime/backend.h"
#include "runtime/clip.h"
#include "tests/runtime/test_models.h"

namespace clipserve::runtime {
namespace {

using ::clipserve::runtime::testing::DefineWithExceptions;
using ::clipserve::runtime::testing::SaveToTemp;
using ::clipserve::runtime::testing::TempPath;
using ::testing::HasSubstr;

constexpr int64_t kC = 3, kT = 2, kH = 4, kW = 5, kClasses = 7;
constexpr int64_t kFeatures = kC * kT * kH * kW;

ModelSpec FixedSpec(int64_t classes = kClasses) {
  ModelSpec spec;
  spec.input = ClipShape{kC, kT, kH, kW};
  spec.num_classes = classes;
  return spec;
}

ClipShape Shape() { return ClipShape{kC, kT, kH, kW}; }

ClipView View(ClipDType dtype, int64_t count, const void* data,
              ClipShape shape = Shape()) {
  ClipView view;
  view.dtype = dtype;
  view.shape = shape;
  view.count = count;
  view.data = data;
  return view;
}

// Logits that depend on every input position, so a layout mistake shows:
// flatten [C, T, H, W] and multiply by a fixed matrix.
torch::jit::Module LinearModel(const std::string& extra_source = "") {
  torch::jit::Module m("Linear");
  torch::manual_seed(7);
  m.register_parameter("w", torch::randn({kFeatures, kClasses}), false);
  m.register_parameter("b", torch::randn({kClasses}), false);
  DefineWithExceptions(m, R"JIT(
def forward(self, x):
    return torch.mm(x.reshape([x.size(0), -1]), self.w) + self.b
)JIT" + extra_source);
  return m;
}

BackendOptions NoWarmup() {
  BackendOptions options;
  options.warmup_batch_sizes.clear();
  return options;
}

std::unique_ptr<Backend> MustLoad(const std::string& path,
                                  const ModelSpec& spec,
                                  const BackendOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      LoadTorchScriptBackend(path, spec, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// Clips of uint8 THWC frames, `clips` of them back to back, covering 0..255.
std::vector<uint8_t> Frames(int64_t clips, int salt) {
  std::vector<uint8_t> bytes(static_cast<size_t>(clips * kFeatures));
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<uint8_t>((i * 37 + salt * 101) % 256);
  }
  bytes[0] = 0;
  bytes[1] = 255;
  return bytes;
}

// The reference: THWC uint8 -> CTHW float in [-1, 1], written out by hand.
void AppendNormalised(const std::vector<uint8_t>& thwc, int64_t clips,
                      std::vector<float>* cthw) {
  for (int64_t n = 0; n < clips; ++n) {
    const uint8_t* clip = thwc.data() + n * kFeatures;
    for (int64_t c = 0; c < kC; ++c)
      for (int64_t t = 0; t < kT; ++t)
        for (int64_t h = 0; h < kH; ++h)
          for (int64_t w = 0; w < kW; ++w) {
            const uint8_t v = clip[((t * kH + h) * kW + w) * kC + c];
            cthw->push_back(static_cast<float>(v) / 127.5f - 1.0f);
          }
  }
}

std::vector<float> DirectForward(torch::jit::Module& m,
                                 std::vector<float> input, int64_t batch) {
  torch::NoGradGuard no_grad;
  torch::Tensor x =
      torch::from_blob(input.data(), {batch, kC, kT, kH, kW}).clone();
  torch::Tensor out = m.forward({x}).toTensor().contiguous();
  return std::vector<float>(out.data_ptr<float>(),
                            out.data_ptr<float>() + out.numel());
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want,
                float tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tolerance) << "at " << i;
  }
}

TEST(TorchScriptBackendTest, UInt8BatchMatchesDirectForward) {
  torch::jit::Module model = LinearModel();
  const std::string path = SaveToTemp(model, "linear_u8.pt");
  std::unique_ptr<Backend> backend = MustLoad(path, FixedSpec());
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->device(), "cpu");
  EXPECT_EQ(backend->spec().num_classes, kClasses);

  const std::vector<uint8_t> a = Frames(1, 1), b = Frames(2, 2),
                             c = Frames(1, 3);
  const std::vector<ClipView> views = {View(ClipDType::kUInt8, 1, a.data()),
                                       View(ClipDType::kUInt8, 2, b.data()),
                                       View(ClipDType::kUInt8, 1, c.data())};
  std::vector<float> logits;
  ASSERT_TRUE(backend->Run(views, &logits).ok());

  std::vector<float> input;
  AppendNormalised(a, 1, &input);
  AppendNormalised(b, 2, &input);
  AppendNormalised(c, 1, &input);
  const std::vector<float> want = DirectForward(model, input, 4);
  ASSERT_EQ(logits.size(), static_cast<size_t>(4 * kClasses));
  ExpectNear(logits, want, 1e-5f);
  std::remove(path.c_str());
}

TEST(TorchScriptBackendTest, Float32BatchMatchesDirectForward) {
  torch::jit::Module model = LinearModel();
  const std::string path = SaveToTemp(model, "linear_f32.pt");
  std::unique_ptr<Backend> backend = MustLoad(path, FixedSpec());
  ASSERT_NE(backend, nullptr);

  std::vector<float> a(2 * kFeatures), b(kFeatures);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 17) / 8 - 1;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) * 0.3f;
  const std::vector<ClipView> views = {View(ClipDType::kFloat32, 2, a.data()),
                                       View(ClipDType::kFloat32, 1, b.data())};
  std::vector<float> logits;
  ASSERT_TRUE(backend->Run(views, &logits).ok());

  std::vector<float> input = a;
  input.insert(input.end(), b.begin(), b.end());
  ExpectNear(logits, DirectForward(model, input, 3), 1e-5f);
  std::remove(path.c_str());
}

TEST(TorchScriptBackendTest, UInt8NormalisesZeroToMinusOneAnd255ToOne) {
  // Logits: per clip, the smallest and largest input value.
  torch::jit::Module m("MinMax");
  m.define(R"JIT(
def forward(self, x):
    return torch.stack([torch.amin(x, [1, 2, 3, 4]),
                        torch.amax(x, [1, 2, 3, 4])], 1)
)JIT");
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(m, "minmax.pt"), FixedSpec(/*classes=*/2), {});
  ASSERT_TRUE(backend.ok()) << backend.status();

  const std::vector<uint8_t> zeros(kFeatures, 0), full(kFeatures, 255);
  std::vector<uint8_t> mixed(kFeatures, 128);
  mixed[3] = 0;
  mixed[17] = 255;
  const std::vector<ClipView> views = {View(ClipDType::kUInt8, 1, zeros.data()),
                                       View(ClipDType::kUInt8, 1, full.data()),
                                       View(ClipDType::kUInt8, 1, mixed.data())};
  std::vector<float> logits;
  ASSERT_TRUE((*backend)->Run(views, &logits).ok());
  ASSERT_EQ(logits.size(), 6u);
  EXPECT_FLOAT_EQ(logits[0], -1.0f);
  EXPECT_FLOAT_EQ(logits[1], -1.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
  EXPECT_FLOAT_EQ(logits[3], 1.0f);
  EXPECT_FLOAT_EQ(logits[4], -1.0f);
  EXPECT_FLOAT_EQ(logits[5], 1.0f);
}

TEST(TorchScriptBackendTest, UInt8ChannelsAreLastInAndFirstOut) {
  // Logits: the three channels of pixel (t=1, h=2, w=3).
  torch::jit::Module m("Pixel");
  m.define(R"JIT(
def forward(self, x):
    return x[:, :, 1, 2, 3]
)JIT");
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(m, "pixel.pt"), FixedSpec(/*classes=*/3), {});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<uint8_t> frames(kFeatures, 51);
  const int64_t pixel = ((1 * kH + 2) * kW + 3) * kC;
  frames[pixel + 0] = 0;
  frames[pixel + 1] = 255;
  frames[pixel + 2] = 153;  // 153 / 127.5 - 1 = 0.2
  std::vector<float> logits;
  const ClipView view = View(ClipDType::kUInt8, 1, frames.data());
  ASSERT_TRUE((*backend)->Run({&view, 1}, &logits).ok());
  ASSERT_EQ(logits.size(), 3u);
  EXPECT_FLOAT_EQ(logits[0], -1.0f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
  EXPECT_NEAR(logits[2], 0.2f, 1e-6f);
}

TEST(TorchScriptBackendTest, ModelErrorFailsOnlyThatBatch) {
  torch::jit::Module m("Raises");
  m.register_parameter("w", torch::ones({kFeatures, kClasses}), false);
  DefineWithExceptions(m, R"JIT(
def forward(self, x):
    if bool(x.max() > 0.99):
        raise Exception("boom")
    return torch.mm(x.reshape([x.size(0), -1]), self.w)
)JIT");
  const std::string path = SaveToTemp(m, "raises.pt");
  std::unique_ptr<Backend> backend = MustLoad(path, FixedSpec());
  ASSERT_NE(backend, nullptr);

  const std::vector<uint8_t> bright(kFeatures, 255), dark(kFeatures, 0);
  std::vector<float> logits;
  const ClipView bad = View(ClipDType::kUInt8, 1, bright.data());
  absl::Status status = backend->Run({&bad, 1}, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("boom"));
  EXPECT_THAT(status.message(), HasSubstr("model " + path + " failed: "));
  // One line, no TorchScript traceback.
  EXPECT_EQ(std::string(status.message()).find('\n'), std::string::npos)
      << status.message();

  std::vector<uint8_t> two_dark(2 * kFeatures, 0);
  const ClipView good_two = View(ClipDType::kUInt8, 2, two_dark.data());
  ASSERT_TRUE(backend->Run({&good_two, 1}, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(2 * kClasses));
  EXPECT_FLOAT_EQ(logits[0], -static_cast<float>(kFeatures));
  const ClipView good_one = View(ClipDType::kUInt8, 1, dark.data());
  EXPECT_TRUE(backend->Run({&good_one, 1}, &logits).ok());
  std::remove(path.c_str());
}

TEST(TorchScriptBackendTest, OpErrorReportsTheOpMessage) {
  // Wrong matmul sizes inside the model: an ATen error, not a raise.
  torch::jit::Module m("BadMatmul");
  m.register_parameter("w", torch::ones({kFeatures + 1, kClasses}), false);
  m.define(R"JIT(
def forward(self, x):
    return torch.mm(x.reshape([x.size(0), -1]), self.w)
)JIT");
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(m, "badmm.pt"), FixedSpec(), NoWarmup());
  ASSERT_TRUE(backend.ok()) << backend.status();
  const std::vector<uint8_t> frames(kFeatures, 0);
  const ClipView view = View(ClipDType::kUInt8, 1, frames.data());
  std::vector<float> logits;
  absl::Status status = (*backend)->Run({&view, 1}, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("cannot be multiplied"));
  EXPECT_TRUE(logits.empty());
}

TEST(TorchScriptBackendTest, TupleOutputUsesFirstElement) {
  torch::jit::Module m("TupleOut");
  torch::manual_seed(3);
  m.register_parameter("w", torch::randn({kFeatures, kClasses}), false);
  m.define(R"JIT(
def forward(self, x):
    return (torch.mm(x.reshape([x.size(0), -1]), self.w), x.mean())
)JIT");
  std::unique_ptr<Backend> backend =
      MustLoad(SaveToTemp(m, "tuple.pt"), FixedSpec());
  ASSERT_NE(backend, nullptr);
  std::vector<float> clip(kFeatures);
  for (size_t i = 0; i < clip.size(); ++i) clip[i] = 0.01f * i;
  const ClipView view = View(ClipDType::kFloat32, 1, clip.data());
  std::vector<float> logits;
  ASSERT_TRUE(backend->Run({&view, 1}, &logits).ok());

  torch::NoGradGuard no_grad;
  const torch::Tensor want =
      m.forward({torch::from_blob(clip.data(), {1, kC, kT, kH, kW})})
          .toTupleRef()
          .elements()[0]
          .toTensor()
          .contiguous();
  ExpectNear(logits,
             std::vector<float>(want.data_ptr<float>(),
                                want.data_ptr<float>() + want.numel()),
             1e-5f);
}

TEST(TorchScriptBackendTest, DynamicShapeAcceptsAnySize) {
  torch::jit::Module m("MeanPerChannel");
  m.define(R"JIT(
def forward(self, x):
    return torch.mean(x, [2, 3, 4])
)JIT");
  ModelSpec spec;
  spec.input = ClipShape{3, -1, -1, -1};
  spec.num_classes = 3;
  std::unique_ptr<Backend> backend =
      MustLoad(SaveToTemp(m, "dynamic.pt"), spec);
  ASSERT_NE(backend, nullptr);
  for (const ClipShape& shape :
       {ClipShape{3, 1, 1, 1}, ClipShape{3, 3, 7, 2}, ClipShape{3, 8, 16, 16}}) {
    std::vector<uint8_t> frames(static_cast<size_t>(2 * shape.elements()), 255);
    const ClipView view = View(ClipDType::kUInt8, 2, frames.data(), shape);
    std::vector<float> logits;
    ASSERT_TRUE(backend->Run({&view, 1}, &logits).ok());
    ASSERT_EQ(logits.size(), 6u);
    for (float v : logits) EXPECT_FLOAT_EQ(v, 1.0f);
  }
}

TEST(TorchScriptBackendTest, RejectsClipsThatDoNotFit) {
  torch::jit::Module model = LinearModel();
  std::unique_ptr<Backend> backend =
      MustLoad(SaveToTemp(model, "linear_fit.pt"), FixedSpec(), NoWarmup());
  ASSERT_NE(backend, nullptr);
  const std::vector<uint8_t> frames(4 * kFeatures, 0);
  std::vector<float> logits = {1.0f};

  // No views: nothing to do.
  EXPECT_TRUE(backend->Run({}, &logits).ok());
  EXPECT_TRUE(logits.empty());

  const ClipView wrong_size =
      View(ClipDType::kUInt8, 1, frames.data(), ClipShape{kC, kT, kH + 1, kW});
  absl::Status status = backend->Run({&wrong_size, 1}, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("[3, 2, 5, 5]"));

  const std::vector<ClipView> mixed_dtype = {
      View(ClipDType::kUInt8, 1, frames.data()),
      View(ClipDType::kFloat32, 1, frames.data())};
  EXPECT_EQ(backend->Run(mixed_dtype, &logits).code(),
            absl::StatusCode::kInvalidArgument);

  const ClipView no_data = View(ClipDType::kUInt8, 1, nullptr);
  EXPECT_EQ(backend->Run({&no_data, 1}, &logits).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TorchScriptBackendTest, LoadMissingFileIsNotFound) {
  const std::string path = TempPath("does_not_exist.pt");
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      LoadTorchScriptBackend(path, FixedSpec(), {});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(backend.status().message(), HasSubstr(path));
}

TEST(TorchScriptBackendTest, LoadGarbageFileIsInvalidArgument) {
  const std::string path = TempPath("garbage.pt");
  std::ofstream(path) << "this is not a zip archive\n";
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      LoadTorchScriptBackend(path, FixedSpec(), {});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(backend.status().message(),
              HasSubstr("cannot load TorchScript model " + path + ": "));
  EXPECT_THAT(backend.status().message(), HasSubstr("zip archive"));
  EXPECT_EQ(std::string(backend.status().message()).find('\n'),
            std::string::npos);
  std::remove(path.c_str());
}

TEST(TorchScriptBackendTest, LoadBadDeviceIsInvalidArgument) {
  torch::jit::Module model = LinearModel();
  BackendOptions options;
  options.device = "gpu7";
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(model, "linear_dev.pt"), FixedSpec(), options);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(backend.status().message(), HasSubstr("gpu7"));
}

TEST(TorchScriptBackendTest, LoadCudaThatIsNotThereIsFailedPrecondition) {
  torch::jit::Module model = LinearModel();
  BackendOptions options;
  // Without CUDA any CUDA device is missing; with it, the one past the last.
  const bool cuda = torch::cuda::is_available();
  const size_t count = cuda ? torch::cuda::device_count() : 0;
  options.device = "cuda:" + std::to_string(count);
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(model, "linear_cuda.pt"), FixedSpec(), options);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend.status().message(),
            cuda ? "device " + options.device + " requested but only " +
                       std::to_string(count) + " CUDA device(s) are visible"
                 : std::string("device cuda:0 requested but this build/machine "
                               "has no CUDA"));
}

TEST(TorchScriptBackendTest, LoadWrongOutputShapeIsInvalidArgument) {
  torch::jit::Module model = LinearModel();  // 7 classes
  absl::StatusOr<std::unique_ptr<Backend>> backend = LoadTorchScriptBackend(
      SaveToTemp(model, "linear_shape.pt"), FixedSpec(/*classes=*/5), {});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(backend.status().message(), HasSubstr("returned [1, 7]"));
  EXPECT_THAT(backend.status().message(), HasSubstr("expected [1, 5]"));
}

TEST(TorchScriptBackendTest, WrongOutputShapeAtRunIsInternal) {
  // Without warm-up the shape is only seen at Run.
  torch::jit::Module model = LinearModel();
  std::unique_ptr<Backend> backend = MustLoad(
      SaveToTemp(model, "linear_shape_run.pt"), FixedSpec(/*classes=*/5),
      NoWarmup());
  ASSERT_NE(backend, nullptr);
  const std::vector<uint8_t> frames(2 * kFeatures, 0);
  const ClipView view = View(ClipDType::kUInt8, 2, frames.data());
  std::vector<float> logits;
  absl::Status status = backend->Run({&view, 1}, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("returned [2, 7]"));
}

TEST(TorchScriptBackendTest, LoadInvalidSpecOrOptionsIsInvalidArgument) {
  torch::jit::Module model = LinearModel();
  const std::string path = SaveToTemp(model, "linear_spec.pt");
  EXPECT_EQ(LoadTorchScriptBackend(path, FixedSpec(/*classes=*/0), {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  ModelSpec zero_frames = FixedSpec();
  zero_frames.input.frames = 0;
  EXPECT_EQ(LoadTorchScriptBackend(path, zero_frames, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  BackendOptions negative_threads;
  negative_threads.intra_op_threads = -1;
  EXPECT_EQ(
      LoadTorchScriptBackend(path, FixedSpec(), negative_threads).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(TorchScriptBackendTest, IntraOpThreadsAppliedOnRunThread) {
  torch::jit::Module model = LinearModel();
  const std::string path = SaveToTemp(model, "linear_threads.pt");
  const std::vector<uint8_t> frames(kFeatures, 0);
  const ClipView view = View(ClipDType::kUInt8, 1, frames.data());

  // A count no thread has by default.
  const int wanted = at::get_num_threads() + 2;
  BackendOptions options;
  options.intra_op_threads = wanted;
  std::unique_ptr<Backend> backend = MustLoad(path, FixedSpec(), options);
  ASSERT_NE(backend, nullptr);
  int seen = 0;
  std::thread runner([&] {
    std::vector<float> logits;
    EXPECT_TRUE(backend->Run({&view, 1}, &logits).ok());
    seen = at::get_num_threads();
  });
  runner.join();
  EXPECT_EQ(seen, wanted);

  // 0 leaves the thread's setting alone.
  std::unique_ptr<Backend> default_threads =
      MustLoad(path, FixedSpec(), BackendOptions{});
  ASSERT_NE(default_threads, nullptr);
  int before = -1, after = -2;
  std::thread other([&] {
    at::set_num_threads(1);
    before = at::get_num_threads();
    std::vector<float> logits;
    EXPECT_TRUE(default_threads->Run({&view, 1}, &logits).ok());
    after = at::get_num_threads();
  });
  other.join();
  EXPECT_EQ(before, 1);
  EXPECT_EQ(after, 1);
}

}  // namespace
}  // namespace clipserve::runtime
