#include "server/clip_validation.h"

#include <gtest/gtest.h>

namespace clipserve::server {
namespace {

runtime::ModelSpec Spec(int64_t t, int64_t h, int64_t w) {
  runtime::ModelSpec spec;
  spec.input = {3, t, h, w};
  spec.num_classes = 10;
  return spec;
}

v1::Tensor Tensor(v1::DataType dtype, std::vector<int64_t> shape, size_t bytes) {
  v1::Tensor t;
  t.set_dtype(dtype);
  for (int64_t d : shape) t.add_shape(d);
  t.mutable_data()->resize(bytes);
  return t;
}

void ExpectInvalid(const v1::Tensor& t, const runtime::ModelSpec& spec,
                   const std::string& message) {
  absl::StatusOr<runtime::ClipView> v = ValidateClip(t, spec, "m");
  ASSERT_FALSE(v.ok()) << "accepted: " << message;
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(v.status().message().find(message), std::string::npos)
      << v.status().message();
}

TEST(ClipValidationTest, Uint8FramesViewedWithoutCopy) {
  v1::Tensor t = Tensor(v1::UINT8, {4, 6, 8, 3}, 4 * 6 * 8 * 3);
  absl::StatusOr<runtime::ClipView> v = ValidateClip(t, Spec(4, 6, 8), "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->dtype, runtime::ClipDType::kUInt8);
  EXPECT_EQ(v->shape, (runtime::ClipShape{3, 4, 6, 8}));
  EXPECT_EQ(v->count, 1);
  EXPECT_EQ(v->data, t.data().data());
  EXPECT_EQ(v->bytes(), t.data().size());
}

TEST(ClipValidationTest, Float32ChannelsFirst) {
  v1::Tensor t = Tensor(v1::FP32, {3, 4, 6, 8}, 3 * 4 * 6 * 8 * 4);
  absl::StatusOr<runtime::ClipView> v = ValidateClip(t, Spec(4, 6, 8), "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->dtype, runtime::ClipDType::kFloat32);
  EXPECT_EQ(v->shape, (runtime::ClipShape{3, 4, 6, 8}));
}

TEST(ClipValidationTest, AnySizeDimensionsAcceptAnything) {
  v1::Tensor t = Tensor(v1::UINT8, {7, 9, 11, 3}, 7 * 9 * 11 * 3);
  EXPECT_TRUE(ValidateClip(t, Spec(-1, -1, -1), "m").ok());
  ExpectInvalid(t, Spec(-1, 9, 12), "clip is 7 x 9 x 11 (T x H x W); model 'm' takes any x 9 x 12");
}

TEST(ClipValidationTest, RefusalsNameTheProblem) {
  const runtime::ModelSpec spec = Spec(4, 6, 8);
  ExpectInvalid(Tensor(v1::DATA_TYPE_UNSPECIFIED, {4, 6, 8, 3}, 576), spec,
                "clip.dtype must be UINT8 or FP32, got DATA_TYPE_UNSPECIFIED");
  ExpectInvalid(Tensor(v1::UINT8, {6, 8, 3}, 144), spec,
                "clip.shape must be [T, H, W, 3] for UINT8, got [6, 8, 3]");
  ExpectInvalid(Tensor(v1::UINT8, {0, 6, 8, 3}, 0), spec,
                "clip is empty or negative: shape [0, 6, 8, 3]");
  ExpectInvalid(Tensor(v1::UINT8, {4, 6, -8, 3}, 0), spec, "empty or negative");
  ExpectInvalid(Tensor(v1::UINT8, {4, 6, 8, 4}, 768), spec,
                "clip has 4 channels; model 'm' takes 3");
  // FP32 sent in the UINT8 layout: the channel check catches it.
  ExpectInvalid(Tensor(v1::FP32, {4, 6, 8, 3}, 2304), spec, "channels");
  ExpectInvalid(Tensor(v1::UINT8, {5, 6, 8, 3}, 720), spec,
                "clip is 5 x 6 x 8 (T x H x W); model 'm' takes 4 x 6 x 8");
  ExpectInvalid(Tensor(v1::UINT8, {4, 6, 8, 3}, 575), spec,
                "clip.data has 575 bytes; shape [4, 6, 8, 3] of UINT8 needs 576");
  ExpectInvalid(Tensor(v1::FP32, {3, 4, 6, 8}, 576), spec,
                "clip.data has 576 bytes; shape [3, 4, 6, 8] of FP32 needs 2304");
  ExpectInvalid(Tensor(v1::UINT8, {int64_t{1} << 21, 6, 8, 3}, 0), Spec(-1, -1, -1),
                "has a dimension over");
  // Huge declared sizes do not overflow into a match.
  ExpectInvalid(Tensor(v1::UINT8, {kMaxClipDim, kMaxClipDim, kMaxClipDim, 3}, 16),
                Spec(-1, -1, -1), "needs 3458754618225328125");
  ExpectInvalid(Tensor(v1::FP32, {3, kMaxClipDim, kMaxClipDim, kMaxClipDim}, 16),
                Spec(-1, -1, -1), "needs over 2^62");
}

TEST(ClipValidationTest, BatchKeySeparatesDtypeAndShape) {
  runtime::ClipView a{runtime::ClipDType::kUInt8, {3, 16, 112, 112}, 1, nullptr};
  runtime::ClipView b = a;
  EXPECT_EQ(ClipBatchKey(a), ClipBatchKey(b));
  b.dtype = runtime::ClipDType::kFloat32;
  EXPECT_NE(ClipBatchKey(a), ClipBatchKey(b));
  for (int i = 0; i < 3; ++i) {
    runtime::ClipView c = a;
    (i == 0 ? c.shape.frames : i == 1 ? c.shape.height : c.shape.width) += 1;
    EXPECT_NE(ClipBatchKey(a), ClipBatchKey(c)) << i;
  }
  // T and H swapped must not collide.
  runtime::ClipView s{runtime::ClipDType::kUInt8, {3, 112, 16, 112}, 1, nullptr};
  EXPECT_NE(ClipBatchKey(a), ClipBatchKey(s));
}

}  // namespace
}  // namespace clipserve::server
