#include "runtime/tiny_video_net.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include "runtime/backend.h"
#include "runtime/clip.h"
#include "tests/runtime/test_models.h"

namespace clipserve::runtime {
namespace {

using ::clipserve::runtime::testing::TempPath;

ModelSpec Spec(int64_t classes, ClipShape input = ClipShape{3, 4, 16, 16}) {
  ModelSpec spec;
  spec.input = input;
  spec.num_classes = classes;
  return spec;
}

TinyVideoNetOptions Small(uint64_t seed) {
  TinyVideoNetOptions o;
  o.num_classes = 10;
  o.seed = seed;
  o.width = 8;
  return o;
}

std::vector<float> RunOnce(Backend& backend, const ClipShape& shape,
                           int64_t count) {
  std::vector<uint8_t> frames(static_cast<size_t>(count * shape.elements()));
  const size_t clip = static_cast<size_t>(shape.elements());
  for (size_t i = 0; i < frames.size(); ++i) {
    frames[i] = static_cast<uint8_t>((i * 7919 + (i / clip) * 53) % 256);
  }
  ClipView view;
  view.dtype = ClipDType::kUInt8;
  view.shape = shape;
  view.count = count;
  view.data = frames.data();
  std::vector<float> logits;
  absl::Status status = backend.Run({&view, 1}, &logits);
  EXPECT_TRUE(status.ok()) << status;
  return logits;
}

std::unique_ptr<Backend> MustCreate(const TinyVideoNetOptions& o,
                                    const ModelSpec& spec) {
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateTinyVideoNetBackend(o, spec, {});
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

TEST(TinyVideoNetTest, SameSeedGivesSameLogitsFromFileAndMemory) {
  const ModelSpec spec = Spec(10);
  const std::string path = TempPath("tiny_seed5.pt");
  ASSERT_TRUE(SaveTinyVideoNet(path, Small(5)).ok());
  // The weights come from the seed alone, not LibTorch's global generator.
  torch::manual_seed(1234);
  absl::StatusOr<std::unique_ptr<Backend>> from_file =
      LoadTorchScriptBackend(path, spec, {});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  torch::manual_seed(99);
  std::unique_ptr<Backend> in_memory = MustCreate(Small(5), spec);
  ASSERT_NE(in_memory, nullptr);

  const std::vector<float> a = RunOnce(**from_file, spec.input, 3);
  const std::vector<float> b = RunOnce(*in_memory, spec.input, 3);
  ASSERT_EQ(a.size(), 30u);
  EXPECT_EQ(a, b);

  // Not degenerate: the classes and the clips get different logits.
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[0], a[10]);
  std::remove(path.c_str());
}

TEST(TinyVideoNetTest, DifferentSeedGivesDifferentLogits) {
  const ModelSpec spec = Spec(10);
  std::unique_ptr<Backend> seed1 = MustCreate(Small(1), spec);
  std::unique_ptr<Backend> seed2 = MustCreate(Small(2), spec);
  ASSERT_NE(seed1, nullptr);
  ASSERT_NE(seed2, nullptr);
  const std::vector<float> a = RunOnce(*seed1, spec.input, 1);
  const std::vector<float> b = RunOnce(*seed2, spec.input, 1);
  ASSERT_EQ(a.size(), b.size());
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
  EXPECT_EQ(differing, static_cast<int>(a.size()));
}

TEST(TinyVideoNetTest, AnyClipSizeGivesBatchByClasses) {
  TinyVideoNetOptions defaults;  // 400 classes, width 32
  const ModelSpec spec = Spec(400, ClipShape{3, -1, -1, -1});
  std::unique_ptr<Backend> backend = MustCreate(defaults, spec);
  ASSERT_NE(backend, nullptr);
  for (const ClipShape& shape :
       {ClipShape{3, 1, 1, 1}, ClipShape{3, 2, 3, 5}, ClipShape{3, 5, 9, 4},
        ClipShape{3, 16, 112, 112}}) {
    const std::vector<float> logits = RunOnce(*backend, shape, 2);
    EXPECT_EQ(logits.size(), 800u) << shape.frames << "x" << shape.height
                                   << "x" << shape.width;
  }
}

TEST(TinyVideoNetTest, RejectsBadOptionsAndMismatchedSpec) {
  TinyVideoNetOptions no_classes = Small(0);
  no_classes.num_classes = 0;
  EXPECT_EQ(CreateTinyVideoNetBackend(no_classes, Spec(0), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SaveTinyVideoNet(TempPath("never.pt"), no_classes).code(),
            absl::StatusCode::kInvalidArgument);
  // Spec with another class count than the model.
  EXPECT_EQ(CreateTinyVideoNetBackend(Small(0), Spec(11), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Loading the file against the wrong spec fails at load.
  const std::string path = TempPath("tiny_wrong_spec.pt");
  ASSERT_TRUE(SaveTinyVideoNet(path, Small(0)).ok());
  EXPECT_EQ(LoadTorchScriptBackend(path, Spec(11), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::remove(path.c_str());
}

TEST(TinyVideoNetTest, SaveToMissingDirectoryIsInternal) {
  const absl::Status status =
      SaveTinyVideoNet(TempPath("no_such_dir/tiny.pt"), Small(0));
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr("no_such_dir/tiny.pt"));
}

}  // namespace
}  // namespace clipserve::runtime
