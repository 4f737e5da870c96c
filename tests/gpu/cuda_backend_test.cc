// The CUDA batch path on a real GPU: run by scripts/gpu-check.sh (ctest -L
// cuda), registered only with -DCLIPSERVE_GPU_TESTS=ON. CI builds this
// binary against the CUDA LibTorch, so it always compiles; it needs a GPU
// to run.
//
// Prints one "precision-check: {json}" line per half precision, which the
// GPU check collects into its report.
#include <algorithm>
#include <cstdio>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "runtime/backend.h"
#include "runtime/device.h"
#include "runtime/i3d_backend.h"
#include "runtime/torch_backend.h"

namespace clipserve::runtime {
namespace {

struct Clips {
  Clips(const ClipShape& shape, int64_t n, uint32_t seed)
      : bytes(static_cast<size_t>(n * shape.elements())) {
    std::mt19937 rng(seed);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    for (int64_t i = 0; i < n; ++i) {
      ClipView v;
      v.shape = shape;
      v.data = bytes.data() + i * shape.elements();
      views.push_back(v);
    }
  }
  absl::Span<const ClipView> first(int64_t n) const {
    return absl::MakeConstSpan(views).first(static_cast<size_t>(n));
  }
  std::vector<uint8_t> bytes;
  std::vector<ClipView> views;
};

ModelSpec Spec(int64_t t, int64_t hw) {
  ModelSpec spec;
  spec.input = ClipShape{3, t, hw, hw};
  spec.num_classes = 400;
  return spec;
}

std::unique_ptr<Backend> MustLoad(const ModelSpec& spec,
                                  const BackendOptions& options) {
  absl::StatusOr<std::unique_ptr<Backend>> b = LoadI3dBackend("", spec, options);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

BackendOptions Gpu() {
  BackendOptions o;
  o.device = "cuda:0";
  o.max_batch_size = 8;
  o.warmup_batch_sizes = {};
  return o;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 double relative, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const LogitAgreement a = CompareLogits(want, got, 400);
  EXPECT_LE(a.max_abs_diff, relative * a.max_abs_reference) << what;
  EXPECT_EQ(a.top1_agreement, 1.0) << what;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(CudaDeviceCount(), 0) << "these tests need a CUDA device";
  }
};

TEST_F(CudaBackendTest, Fp32OnTheGpuMatchesTheCpu) {
  const ModelSpec spec = Spec(8, 64);
  Clips clips(spec.input, 3, 1);
  BackendOptions cpu;
  cpu.warmup_batch_sizes = {};
  std::vector<float> want, got;
  ASSERT_TRUE(MustLoad(spec, cpu)->Run(clips.views, &want).ok());
  SetCudaTf32(false);
  std::unique_ptr<Backend> gpu = MustLoad(spec, Gpu());
  ASSERT_TRUE(gpu->Run(clips.views, &got).ok());
  ExpectClose(got, want, 1e-3, "fp32, TF32 off");
  SetCudaTf32(true);
  ASSERT_TRUE(gpu->Run(clips.views, &got).ok());
  ExpectClose(got, want, 2e-2, "fp32, TF32 on");
}

TEST_F(CudaBackendTest, StagingIsReusedAndCopiesAreTimedWithEvents) {
  const ModelSpec spec = Spec(8, 64);
  std::unique_ptr<Backend> gpu = MustLoad(spec, Gpu());
  EXPECT_EQ(gpu->max_concurrent_runs(), 2);
  Clips clips(spec.input, 8, 2);
  std::vector<float> logits;
  RunTimings t;
  ASSERT_TRUE(gpu->Run(clips.views, &logits, &t).ok());
  const int64_t allocations =
      dynamic_cast<TorchBackend&>(*gpu).staging_allocations();
  for (int64_t batch : {1, 5, 8, 3}) {
    ASSERT_TRUE(gpu->Run(clips.first(batch), &logits, &t).ok());
    EXPECT_TRUE(t.device_copies);
    EXPECT_GT(t.compute_us, 0);
    EXPECT_GE(t.upload_us, 0);
    EXPECT_GE(t.download_us, 0);
    EXPECT_EQ(logits.size(), static_cast<size_t>(batch * 400));
  }
  EXPECT_EQ(dynamic_cast<TorchBackend&>(*gpu).staging_allocations(),
            allocations);
}

TEST_F(CudaBackendTest, TwoLanesOfOneInstanceRunTogetherAndAnswerCorrectly) {
  const ModelSpec spec = Spec(8, 64);
  std::unique_ptr<Backend> gpu = MustLoad(spec, Gpu());
  Clips a(spec.input, 4, 3), b(spec.input, 4, 4);
  std::vector<float> want_a, want_b;
  ASSERT_TRUE(gpu->Run(a.views, &want_a).ok());
  ASSERT_TRUE(gpu->Run(b.views, &want_b).ok());
  auto lane = [&gpu](const Clips& clips, const std::vector<float>& want) {
    std::vector<float> got;
    for (int i = 0; i < 20; ++i) {
      if (!gpu->Run(clips.views, &got).ok() || got != want) return false;
    }
    return true;
  };
  auto x = std::async(std::launch::async, lane, std::cref(a), std::cref(want_a));
  auto y = std::async(std::launch::async, lane, std::cref(b), std::cref(want_b));
  EXPECT_TRUE(x.get());
  EXPECT_TRUE(y.get());
}

TEST_F(CudaBackendTest, GraphsReplayPaddedBucketsWithoutLeakingRows) {
  const ModelSpec spec = Spec(8, 64);
  BackendOptions eager = Gpu();
  eager.batch_buckets = {1, 2, 4, 8};
  BackendOptions graphs = eager;
  graphs.cuda_graphs = true;
  std::unique_ptr<Backend> reference = MustLoad(spec, eager);
  std::unique_ptr<Backend> captured = MustLoad(spec, graphs);
  ASSERT_NE(captured, nullptr);
  Clips full(spec.input, 8, 5), part(spec.input, 5, 6);
  std::vector<float> got, want;
  ASSERT_TRUE(captured->Run(full.views, &got).ok());  // stale rows behind
  for (int64_t batch : {1, 3, 5, 8}) {
    RunTimings t;
    ASSERT_TRUE(captured->Run(batch == 8 ? full.first(8) : part.first(batch),
                              &got, &t)
                    .ok());
    ASSERT_TRUE(reference->Run(batch == 8 ? full.first(8) : part.first(batch),
                               &want)
                    .ok());
    EXPECT_EQ(t.batch, BucketFor(batch, {1, 2, 4, 8}));
    ExpectClose(got, want, 1e-3, "graph vs eager, batch " + std::to_string(batch));
  }
}

TEST_F(CudaBackendTest, OutOfMemoryFreesTheCacheAndTheInstanceGoesOn) {
  const ModelSpec spec = Spec(8, 64);
  BackendOptions o = Gpu();
  bool fail_next = false;
  o.before_forward = [&fail_next](int64_t) {
    if (fail_next) {
      fail_next = false;
      TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory (injected)");
    }
  };
  std::unique_ptr<Backend> gpu = MustLoad(spec, o);
  Clips clips(spec.input, 4, 7);
  std::vector<float> logits;
  ASSERT_TRUE(gpu->Run(clips.views, &logits).ok());
  fail_next = true;
  const absl::Status s = gpu->Run(clips.views, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("on cuda:0 running a batch of 4"), std::string::npos) << s;
  EXPECT_TRUE(gpu->health().ok());
  ASSERT_TRUE(gpu->Run(clips.views, &logits).ok());
}

TEST_F(CudaBackendTest, HalfPrecisionsAgreeWithFp32OnServingSizedClips) {
  const ModelSpec spec = Spec(16, 224);
  Clips clips(spec.input, 8, 9);
  SetCudaTf32(false);
  std::vector<float> fp32;
  ASSERT_TRUE(MustLoad(spec, Gpu())->Run(clips.views, &fp32).ok());
  for (Precision p : {Precision::kFp16, Precision::kBf16}) {
    BackendOptions o = Gpu();
    o.precision = p;
    std::vector<float> half;
    ASSERT_TRUE(MustLoad(spec, o)->Run(clips.views, &half).ok());
    const LogitAgreement a = CompareLogits(fp32, half, 400);
    std::printf(
        "precision-check: {\"precision\": \"%s\", \"clips\": %lld, "
        "\"top1_agreement\": %.4f, \"max_abs_diff\": %.6f, "
        "\"max_abs_reference\": %.6f}\n",
        PrecisionName(p), static_cast<long long>(a.clips), a.top1_agreement,
        a.max_abs_diff, a.max_abs_reference);
    EXPECT_LE(a.max_abs_diff,
              (p == Precision::kBf16 ? 0.05 : 0.01) * a.max_abs_reference);
    EXPECT_GE(a.top1_agreement, 0.875);
  }
  SetCudaTf32(true);
}

}  // namespace
}  // namespace clipserve::runtime
