// The batch path of TorchBackend that a machine without a GPU can prove:
// staging buffers reused across batches, bucket padding and unpadding,
// precision, fault injection (out of memory, a device left unusable),
// weights shared by instances, and CUDA-only options refused on the CPU.
// The CUDA side of the same path runs in the GPU check (scripts/gpu-check.sh).
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include "runtime/backend.h"
#include "runtime/device.h"
#include "runtime/i3d_backend.h"
#include "runtime/torch_backend.h"
#include "tests/runtime/test_models.h"

namespace clipserve::runtime {
namespace {

using ::clipserve::runtime::testing::DefineWithExceptions;
using ::clipserve::runtime::testing::SaveToTemp;
using ::testing::HasSubstr;

constexpr int64_t kC = 3, kT = 2, kH = 4, kW = 5, kClasses = 7;
constexpr int64_t kClipBytes = kC * kT * kH * kW;

ModelSpec Spec() {
  ModelSpec spec;
  spec.input = ClipShape{kC, kT, kH, kW};
  spec.num_classes = kClasses;
  return spec;
}

// Row i of the logits depends only on clip i (so padding cannot change a
// real row), and on every byte of it (so a misplaced clip shows).
std::string LinearModelPath() {
  static const std::string path = [] {
    torch::jit::Module m("Linear");
    torch::manual_seed(11);
    m.register_parameter("w", torch::randn({kClipBytes, kClasses}), false);
    DefineWithExceptions(m, R"JIT(
def forward(self, x):
    return torch.mm(x.reshape([x.size(0), -1]), self.w)
)JIT");
    return SaveToTemp(m, "linear.pt");
  }();
  return path;
}

// `n` distinct random uint8 clips, one view each.
struct Clips {
  explicit Clips(int64_t n, uint32_t seed = 1) : bytes(n * kClipBytes) {
    std::mt19937 rng(seed);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    for (int64_t i = 0; i < n; ++i) {
      ClipView v;
      v.dtype = ClipDType::kUInt8;
      v.shape = Spec().input;
      v.count = 1;
      v.data = bytes.data() + i * kClipBytes;
      views.push_back(v);
    }
  }
  std::vector<uint8_t> bytes;
  std::vector<ClipView> views;
};

std::unique_ptr<Backend> Load(const BackendOptions& options) {
  absl::StatusOr<std::unique_ptr<Backend>> b =
      LoadTorchScriptBackend(LinearModelPath(), Spec(), options);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

TorchBackend& Torch(Backend& b) { return dynamic_cast<TorchBackend&>(b); }

TEST(BucketTest, SmallestBucketThatHoldsTheBatch) {
  const std::vector<int64_t> buckets = {1, 2, 4, 8};
  EXPECT_EQ(BucketFor(1, buckets), 1);
  EXPECT_EQ(BucketFor(3, buckets), 4);
  EXPECT_EQ(BucketFor(4, buckets), 4);
  EXPECT_EQ(BucketFor(5, buckets), 8);
  EXPECT_EQ(BucketFor(9, buckets), 9);  // beyond the largest: its own size
  EXPECT_EQ(BucketFor(3, {}), 3);
  EXPECT_EQ(PowerOfTwoBuckets(1), (std::vector<int64_t>{1}));
  EXPECT_EQ(PowerOfTwoBuckets(8), (std::vector<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(PowerOfTwoBuckets(12), (std::vector<int64_t>{1, 2, 4, 8, 12}));
}

TEST(PrecisionTest, NamesRoundTripAndUnknownIsRefused) {
  for (Precision p : {Precision::kFp32, Precision::kFp16, Precision::kBf16}) {
    EXPECT_EQ(*ParsePrecision(PrecisionName(p)), p);
  }
  EXPECT_EQ(ScalarTypeOf(Precision::kFp16), at::kHalf);
  EXPECT_EQ(ScalarTypeOf(Precision::kBf16), at::kBFloat16);
  absl::StatusOr<Precision> bad = ParsePrecision("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("fp8"));
}

TEST(StagingTest, BuffersAreAllocatedOnceAndReusedWhileBatchesFit) {
  BackendOptions options;
  options.max_batch_size = 4;
  options.warmup_batch_sizes = {1};
  std::unique_ptr<Backend> backend = Load(options);
  ASSERT_NE(backend, nullptr);
  // The warm-up allocated the host staging and the model input, once each,
  // for max_batch_size clips.
  const int64_t after_load = Torch(*backend).staging_allocations();
  EXPECT_EQ(after_load, 2);
  Clips clips(6);
  std::vector<float> logits;
  for (int64_t batch : {1, 3, 4, 2, 4}) {
    ASSERT_TRUE(backend->Run(absl::MakeConstSpan(clips.views).first(batch),
                             &logits)
                    .ok());
    EXPECT_EQ(logits.size(), static_cast<size_t>(batch * kClasses));
  }
  EXPECT_EQ(Torch(*backend).staging_allocations(), after_load);
  // A batch beyond max_batch_size still runs: the buffers grow, once.
  ASSERT_TRUE(backend->Run(clips.views, &logits).ok());
  const int64_t grown = Torch(*backend).staging_allocations();
  EXPECT_EQ(grown, after_load + 2);
  ASSERT_TRUE(backend->Run(clips.views, &logits).ok());
  ASSERT_TRUE(backend->Run(absl::MakeConstSpan(clips.views).first(2), &logits).ok());
  EXPECT_EQ(Torch(*backend).staging_allocations(), grown);
}

TEST(StagingTest, ReusedBuffersNeverLeakOneBatchIntoTheNext) {
  BackendOptions options;
  options.max_batch_size = 4;
  std::unique_ptr<Backend> backend = Load(options);
  ASSERT_NE(backend, nullptr);
  Clips a(4, 1), b(2, 2);
  std::vector<float> big, small, fresh;
  ASSERT_TRUE(backend->Run(a.views, &big).ok());
  ASSERT_TRUE(backend->Run(b.views, &small).ok());
  std::unique_ptr<Backend> clean = Load(options);
  ASSERT_TRUE(clean->Run(b.views, &fresh).ok());
  EXPECT_EQ(small, fresh);
}

TEST(BucketPaddingTest, PaddedBatchesAnswerOnlyTheirOwnRowsUnchanged) {
  BackendOptions plain;
  plain.max_batch_size = 8;
  BackendOptions bucketed = plain;
  bucketed.batch_buckets = {2, 4, 8};
  bucketed.warmup_batch_sizes = {1, 3, 8};  // rounded up to their buckets
  std::vector<int64_t> ran_at;
  bucketed.before_forward = [&ran_at](int64_t rows) { ran_at.push_back(rows); };
  std::unique_ptr<Backend> reference = Load(plain);
  std::unique_ptr<Backend> padded = Load(bucketed);
  ASSERT_NE(padded, nullptr);
  // The warm-up ran the buckets of its sizes (twice each) and nothing else.
  EXPECT_EQ(ran_at, (std::vector<int64_t>{2, 2, 4, 4, 8, 8}));
  // A full batch first, so stale clips sit in the buffers' later rows.
  Clips full(8, 5), part(5, 6);
  std::vector<float> got, want;
  ASSERT_TRUE(padded->Run(full.views, &got).ok());
  for (int64_t batch : {1, 3, 5}) {
    ran_at.clear();
    RunTimings timings;
    const auto views = absl::MakeConstSpan(part.views).first(batch);
    ASSERT_TRUE(padded->Run(views, &got, &timings).ok());
    ASSERT_TRUE(reference->Run(views, &want).ok());
    EXPECT_EQ(ran_at, (std::vector<int64_t>{BucketFor(batch, {2, 4, 8})}));
    EXPECT_EQ(timings.batch, BucketFor(batch, {2, 4, 8}));
    ASSERT_EQ(got.size(), static_cast<size_t>(batch * kClasses));
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-3 * (1 + std::abs(want[i]))) << batch;
    }
  }
  // Beyond the largest bucket: runs at its own size.
  Clips over(9, 7);
  ran_at.clear();
  ASSERT_TRUE(padded->Run(over.views, &got).ok());
  EXPECT_EQ(ran_at, (std::vector<int64_t>{9}));
  EXPECT_EQ(got.size(), static_cast<size_t>(9 * kClasses));
}

TEST(FaultTest, OutOfMemoryFailsTheBatchWithResourceExhaustedAndTheInstanceGoesOn) {
  BackendOptions options;
  options.batch_buckets = {1, 4};
  bool fail_next = false;
  options.before_forward = [&fail_next](int64_t) {
    if (fail_next) {
      fail_next = false;
      // What LibTorch's allocators throw when memory runs out.
      TORCH_CHECK_WITH(OutOfMemoryError, false,
                       "CUDA out of memory. Tried to allocate 2.00 GiB");
    }
  };
  std::unique_ptr<Backend> backend = Load(options);
  ASSERT_NE(backend, nullptr);
  Clips clips(3);
  std::vector<float> logits = {1, 2, 3};
  fail_next = true;
  absl::Status s = backend->Run(clips.views, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("ran out of memory on cpu running a batch of 3 "
                        "(padded to 4): CUDA out of memory"));
  EXPECT_TRUE(logits.empty());
  EXPECT_TRUE(backend->health().ok());
  ASSERT_TRUE(backend->Run(clips.views, &logits).ok());
  EXPECT_EQ(logits.size(), static_cast<size_t>(3 * kClasses));
}

TEST(FaultTest, StickyDeviceErrorMakesTheInstanceRefuseEveryLaterBatch) {
  BackendOptions options;
  int forwards = 0;
  bool fail_next = false;
  options.before_forward = [&](int64_t) {
    ++forwards;
    if (fail_next) {
      throw c10::AcceleratorError(
          {__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, 700,
          "CUDA error: an illegal memory access was encountered");
    }
  };
  std::unique_ptr<Backend> backend = Load(options);
  ASSERT_NE(backend, nullptr);
  Clips clips(2);
  std::vector<float> logits;
  fail_next = true;
  absl::Status s = backend->Run(clips.views, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("illegal memory access was encountered (the device "
                        "is now unusable"));
  const absl::Status health = backend->health();
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.message()),
              HasSubstr("cpu is unusable after a device error"));
  // No further forward runs, whatever comes.
  fail_next = false;
  const int before = forwards;
  s = backend->Run(clips.views, &logits);
  EXPECT_EQ(s, health);
  EXPECT_EQ(forwards, before);
  EXPECT_TRUE(logits.empty());
}

TEST(FaultTest, OrdinaryModelErrorsDoNotPoisonTheInstance) {
  BackendOptions options;
  bool fail_next = false;
  options.before_forward = [&](int64_t) {
    if (fail_next) {
      fail_next = false;
      TORCH_CHECK(false, "shape mismatch in layer 3");
    }
  };
  std::unique_ptr<Backend> backend = Load(options);
  Clips clips(1);
  std::vector<float> logits;
  fail_next = true;
  EXPECT_EQ(backend->Run(clips.views, &logits).code(),
            absl::StatusCode::kInternal);
  EXPECT_TRUE(backend->health().ok());
  EXPECT_TRUE(backend->Run(clips.views, &logits).ok());
}

TEST(DeviceOptionsTest, CpuInstancesRunOneBatchAtATimeAndReportNoCopies) {
  std::unique_ptr<Backend> backend = Load({});
  EXPECT_EQ(backend->max_concurrent_runs(), 1);
  Clips clips(2);
  std::vector<float> logits;
  RunTimings timings;
  timings.upload_us = 99;
  ASSERT_TRUE(backend->Run(clips.views, &logits, &timings).ok());
  EXPECT_FALSE(timings.device_copies);
  EXPECT_EQ(timings.upload_us, 0);
  EXPECT_EQ(timings.download_us, 0);
  EXPECT_EQ(timings.batch, 2);
  EXPECT_GE(timings.compute_us, 0);
}

TEST(DeviceOptionsTest, CudaGraphsOnTheCpuOrWithoutBucketsAreRefused) {
  BackendOptions options;
  options.cuda_graphs = true;
  absl::StatusOr<std::unique_ptr<Backend>> b =
      LoadTorchScriptBackend(LinearModelPath(), Spec(), options);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("need batch buckets"));
  options.batch_buckets = {1, 2};
  b = LoadTorchScriptBackend(LinearModelPath(), Spec(), options);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(b.status().message()),
              HasSubstr("CUDA graphs need a CUDA device"));
}

// That they hold one module between them is not visible from here; this
// checks what sharing must keep: each instance answers as a lone one does.
TEST(SharedWeightsTest, InstancesLoadedTogetherAnswerAsOneDoes) {
  BackendOptions options;
  absl::StatusOr<std::vector<std::unique_ptr<Backend>>> b =
      LoadTorchScriptBackends(LinearModelPath(), Spec(), {options, options});
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->size(), 2u);
  Clips clips(3);
  std::vector<float> x, y, alone;
  ASSERT_TRUE((*b)[0]->Run(clips.views, &x).ok());
  ASSERT_TRUE((*b)[1]->Run(clips.views, &y).ok());
  ASSERT_TRUE(Load(options)->Run(clips.views, &alone).ok());
  EXPECT_EQ(x, alone);
  EXPECT_EQ(y, alone);
}

// fp16 and bf16 against fp32 on the same clips, on I3D (random weights,
// small clips so the CPU runs it in seconds). The GPU check runs the same
// comparison on 16 x 224 x 224 clips on the GPU.
TEST(PrecisionAccuracyTest, HalfPrecisionsAgreeWithFp32OnI3d) {
  ModelSpec spec;
  spec.input = ClipShape{3, 8, 32, 32};
  spec.num_classes = 400;
  BackendOptions options;
  options.warmup_batch_sizes = {};
  const int64_t kClips = 8;
  std::vector<uint8_t> bytes(kClips * spec.input.elements());
  std::mt19937 rng(3);
  for (uint8_t& v : bytes) v = static_cast<uint8_t>(rng());
  ClipView view;
  view.shape = spec.input;
  view.count = kClips;
  view.data = bytes.data();
  std::vector<float> fp32;
  {
    absl::StatusOr<std::unique_ptr<Backend>> b = LoadI3dBackend("", spec, options);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE((*b)->Run({view}, &fp32).ok());
  }
  for (Precision p : {Precision::kBf16, Precision::kFp16}) {
    options.precision = p;
    absl::StatusOr<std::unique_ptr<Backend>> b = LoadI3dBackend("", spec, options);
    ASSERT_TRUE(b.ok()) << b.status();
    std::vector<float> half;
    const absl::Status run = (*b)->Run({view}, &half);
    ASSERT_TRUE(run.ok()) << PrecisionName(p) << ": " << run;
    const LogitAgreement a = CompareLogits(fp32, half, spec.num_classes);
    EXPECT_EQ(a.clips, kClips);
    // Measured on 2.11 (AVX2 CPU): see docs/gpu.md, "Precision".
    const double tolerance = p == Precision::kBf16 ? 0.05 : 0.01;
    EXPECT_LE(a.max_abs_diff, tolerance * a.max_abs_reference)
        << PrecisionName(p) << " max diff " << a.max_abs_diff << " of "
        << a.max_abs_reference;
    EXPECT_GE(a.top1_agreement, 0.875) << PrecisionName(p);
    std::printf("%s vs fp32: top-1 agreement %.3f, max |diff| %.5f (max |logit| %.4f)\n",
                PrecisionName(p), a.top1_agreement, a.max_abs_diff,
                a.max_abs_reference);
  }
}

TEST(Tf32Test, BothOfLibTorchsViewsOfTheFlagAgreeAndReadWithoutThrowing) {
  for (bool on : {false, true}) {
    SetCudaTf32(on);
    at::Context& ctx = at::globalContext();
    EXPECT_EQ(ctx.allowTF32CuBLAS(), on);
    EXPECT_EQ(ctx.allowTF32CuDNN(), on);
    EXPECT_EQ(ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL),
              on ? at::Float32Precision::TF32 : at::Float32Precision::IEEE);
  }
}

TEST(LogitAgreementTest, CountsTop1AndLargestDifference) {
  const std::vector<float> a = {0, 1, 2, /**/ 5, 0, 0};
  const std::vector<float> b = {0, 1.5, 1.25, /**/ 4.5, 0, 0};
  const LogitAgreement r = CompareLogits(a, b, 3);
  EXPECT_EQ(r.clips, 2);
  EXPECT_DOUBLE_EQ(r.top1_agreement, 0.5);
  EXPECT_DOUBLE_EQ(r.max_abs_diff, 0.75);
  EXPECT_DOUBLE_EQ(r.max_abs_reference, 5);
}

}  // namespace
}  // namespace clipserve::runtime
