#include "server/model_config.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace clipserve::server {
namespace {

constexpr const char* kGood = R"pb(
  name: "tiny"
  backend: "torchscript"
  max_batch_size: 8
  input { name: "clip" data_type: TYPE_FP32 dims: [ 3, 16, 112, -1 ] }
  output { name: "logits" data_type: TYPE_FP32 dims: [ 400 ] }
  dynamic_batching {
    max_queue_delay_microseconds: 2500
    preferred_batch_size: [ 4, 8 ]
    default_timeout_microseconds: 100000
  }
  instance_group { count: 2 kind: KIND_CPU }
  parameters { key: "intra_op_threads" value { string_value: "3" } }
)pb";

absl::StatusOr<config::ModelConfig> Parse(const std::string& text,
                                          const std::string& dir = "tiny") {
  absl::StatusOr<config::ModelConfig> c = ParseModelConfig(text, "m/config.pbtxt");
  if (!c.ok()) return c.status();
  if (absl::Status s = ValidateModelConfig(&*c, "m/config.pbtxt", dir); !s.ok()) {
    return s;
  }
  return c;
}

// The good config with `field_text` appended (repeated fields only).
std::string GoodWith(const std::string& field_text) {
  return absl::StrCat(kGood, "\n", field_text);
}

// The good config with a fixed input shape and `field_text` appended.
std::string FixedWith(const std::string& field_text) {
  std::string text = kGood;
  text.replace(text.find("112, -1"), 7, "112, 112");
  return absl::StrCat(text, "\n", field_text);
}

// The good config with its first `from` replaced by `to`.
std::string GoodReplacing(const std::string& from, const std::string& to) {
  std::string text = kGood;
  return text.replace(text.find(from), from.size(), to);
}

TEST(ModelConfigTest, GoodConfigDerivesSpecQueueAndInstances) {
  absl::StatusOr<config::ModelConfig> c = Parse(kGood);
  ASSERT_TRUE(c.ok()) << c.status();
  runtime::ModelSpec spec = SpecFromConfig(*c);
  EXPECT_EQ(spec.input.channels, 3);
  EXPECT_EQ(spec.input.frames, 16);
  EXPECT_EQ(spec.input.height, 112);
  EXPECT_EQ(spec.input.width, -1);
  EXPECT_EQ(spec.num_classes, 400);

  batching::BatchQueueOptions q = QueueOptionsFromConfig(*c);
  EXPECT_EQ(q.max_batch_size, 8);
  EXPECT_EQ(q.preferred_batch_sizes, (std::vector<int>{4, 8}));
  EXPECT_EQ(q.max_queue_delay, std::chrono::microseconds(2500));
  EXPECT_EQ(q.max_queue_size, kDefaultMaxQueueSize);

  absl::StatusOr<std::vector<runtime::BackendOptions>> placed =
      InstanceOptionsFromConfig(*c, 0, 4);
  ASSERT_TRUE(placed.ok()) << placed.status();
  const std::vector<runtime::BackendOptions>& inst = *placed;
  ASSERT_EQ(inst.size(), 2u);
  for (const auto& o : inst) {
    EXPECT_EQ(o.device, "cpu");
    EXPECT_EQ(o.intra_op_threads, 3);
    EXPECT_EQ(o.warmup_batch_sizes, (std::vector<int64_t>{1, 8}));
  }
}

TEST(ModelConfigTest, DefaultsFilledIn) {
  absl::StatusOr<config::ModelConfig> c = Parse(R"pb(
    backend: "torchscript"
    max_batch_size: 1
    input { name: "x" data_type: TYPE_FP32 dims: [ 3, 8, 32, 32 ] }
    output { name: "y" data_type: TYPE_FP32 dims: [ 10 ] }
  )pb");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name(), "tiny");  // from the directory
  ASSERT_EQ(c->instance_group_size(), 1);
  EXPECT_EQ(c->instance_group(0).count(), 1);
  EXPECT_EQ(c->dynamic_batching().max_queue_size(), kDefaultMaxQueueSize);
  EXPECT_EQ(c->dynamic_batching().priority_levels(), kDefaultPriorityLevels);
  EXPECT_EQ(c->dynamic_batching().default_priority_level(), 2u);  // the middle
  // Without intra_op_threads, CPU instances share the cores.
  absl::StatusOr<std::vector<runtime::BackendOptions>> placed =
      InstanceOptionsFromConfig(*c, 0, 4);
  ASSERT_TRUE(placed.ok()) << placed.status();
  const std::vector<runtime::BackendOptions>& inst = *placed;
  ASSERT_EQ(inst.size(), 1u);
  EXPECT_EQ(inst[0].precision, runtime::Precision::kFp32);
  EXPECT_TRUE(inst[0].batch_buckets.empty());  // no padding on the CPU
  EXPECT_FALSE(inst[0].cuda_graphs);
  EXPECT_EQ(inst[0].max_batch_size, 1);
  EXPECT_EQ(inst[0].intra_op_threads, 4);
  EXPECT_EQ(inst[0].warmup_batch_sizes, (std::vector<int64_t>{1}));
}

TEST(ModelConfigTest, GpuGroupsPlaceCountInstancesOnEachListedGpu) {
  // Two CPU instances from kGood's group, then 3 on each of GPUs 1 and 2.
  absl::StatusOr<config::ModelConfig> c =
      Parse(GoodWith("instance_group { count: 3 kind: KIND_GPU gpus: [1, 2] }"));
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::vector<runtime::BackendOptions>> inst =
      InstanceOptionsFromConfig(*c, 4, 4);
  ASSERT_TRUE(inst.ok()) << inst.status();
  std::vector<std::string> devices;
  for (const auto& o : *inst) devices.push_back(o.device);
  EXPECT_EQ(devices, (std::vector<std::string>{"cpu", "cpu", "cuda:1", "cuda:1",
                                               "cuda:1", "cuda:2", "cuda:2",
                                               "cuda:2"}));
  // intra_op_threads, when set, applies to every instance.
  EXPECT_EQ((*inst)[0].intra_op_threads, 3);
  EXPECT_EQ((*inst)[2].intra_op_threads, 3);  // set explicitly in kGood
}

TEST(ModelConfigTest, GpuGroupWithoutGpusUsesEveryVisibleGpu) {
  absl::StatusOr<config::ModelConfig> c = Parse(R"pb(
    backend: "torchscript" max_batch_size: 8
    input { name: "x" data_type: TYPE_FP32 dims: [ 3, 8, 32, 32 ] }
    output { name: "y" data_type: TYPE_FP32 dims: [ 10 ] }
    instance_group { count: 2 kind: KIND_GPU }
  )pb");
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::vector<runtime::BackendOptions>> inst =
      InstanceOptionsFromConfig(*c, 2, 4);
  ASSERT_TRUE(inst.ok()) << inst.status();
  std::vector<std::string> devices;
  for (const auto& o : *inst) devices.push_back(o.device);
  EXPECT_EQ(devices, (std::vector<std::string>{"cuda:0", "cuda:0", "cuda:1",
                                               "cuda:1"}));
  // On a GPU batches are padded to power-of-two buckets by default, and
  // every bucket is warmed up (cuDNN's algorithm search at load).
  for (const auto& o : *inst) {
    EXPECT_EQ(o.batch_buckets, (std::vector<int64_t>{1, 2, 4, 8}));
    EXPECT_EQ(o.warmup_batch_sizes, (std::vector<int64_t>{1, 2, 4, 8}));
    EXPECT_EQ(o.max_batch_size, 8);
  }
}

TEST(ModelConfigTest, GpuGroupWithoutAGpuFailsTheLoadClearly) {
  absl::StatusOr<config::ModelConfig> c =
      Parse(GoodWith("instance_group { count: 1 kind: KIND_GPU }"));
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::vector<runtime::BackendOptions>> inst =
      InstanceOptionsFromConfig(*c, 0, 4);
  ASSERT_EQ(inst.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(inst.status().message().find(
                "instance_group[1] is KIND_GPU but no CUDA device is visible"),
            std::string::npos)
      << inst.status();

  absl::StatusOr<config::ModelConfig> missing =
      Parse(GoodWith("instance_group { count: 1 kind: KIND_GPU gpus: [0, 3] }"));
  ASSERT_TRUE(missing.ok()) << missing.status();
  inst = InstanceOptionsFromConfig(*missing, 2, 4);
  ASSERT_EQ(inst.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(inst.status().message().find(
                "lists GPU 3 but only 2 CUDA device(s) are visible"),
            std::string::npos)
      << inst.status();
}

TEST(ModelConfigTest, AutoKindRunsOnTheGpuWhenThereIsOne) {
  absl::StatusOr<config::ModelConfig> a = Parse(R"pb(
    backend: "torchscript" max_batch_size: 2
    input { name: "x" data_type: TYPE_FP32 dims: [ 3, 8, 32, 32 ] }
    output { name: "y" data_type: TYPE_FP32 dims: [ 10 ] }
    instance_group { kind: KIND_AUTO }
  )pb");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*InstanceOptionsFromConfig(*a, 0, 2))[0].device, "cpu");
  EXPECT_EQ((*InstanceOptionsFromConfig(*a, 1, 2))[0].device, "cuda:0");
}

TEST(ModelConfigTest, PrecisionBucketsAndGraphsReachEveryInstance) {
  // CUDA graphs need a fixed shape: kGood's width is free (-1).
  absl::StatusOr<config::ModelConfig> c = Parse(FixedWith(R"pb(
    parameters { key: "precision" value { string_value: "bf16" } }
    parameters { key: "batch_buckets" value { string_value: "2,4" } }
    parameters { key: "cuda_graphs" value { string_value: "true" } }
  )pb"));
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::vector<runtime::BackendOptions>> inst =
      InstanceOptionsFromConfig(*c, 0, 4);
  ASSERT_TRUE(inst.ok()) << inst.status();
  for (const auto& o : *inst) {
    EXPECT_EQ(o.precision, runtime::Precision::kBf16);
    // max_batch_size (8) is always a bucket.
    EXPECT_EQ(o.batch_buckets, (std::vector<int64_t>{2, 4, 8}));
    EXPECT_EQ(o.warmup_batch_sizes, (std::vector<int64_t>{2, 4, 8}));
    EXPECT_TRUE(o.cuda_graphs);
  }
  // "none" turns padding off, on a GPU too.
  absl::StatusOr<config::ModelConfig> none = Parse(GoodWith(R"pb(
    instance_group { count: 1 kind: KIND_GPU }
    parameters { key: "batch_buckets" value { string_value: "none" } }
  )pb"));
  ASSERT_TRUE(none.ok()) << none.status();
  inst = InstanceOptionsFromConfig(*none, 1, 4);
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_TRUE(inst->back().batch_buckets.empty());
  EXPECT_EQ(inst->back().warmup_batch_sizes, (std::vector<int64_t>{1, 8}));
}

TEST(ModelConfigTest, BucketListsParse) {
  EXPECT_EQ(*ParseBuckets("auto", 12), (std::vector<int64_t>{1, 2, 4, 8, 12}));
  EXPECT_EQ(*ParseBuckets("none", 12), (std::vector<int64_t>{}));
  EXPECT_EQ(*ParseBuckets("1,6,12", 12), (std::vector<int64_t>{1, 6, 12}));
  for (const char* bad : {"", "0,4", "4,2", "4,4", "1,13", "x", "1,,2"}) {
    EXPECT_EQ(ParseBuckets(bad, 12).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

struct BadCase {
  std::string text;
  std::string dir;
  std::string message;  // expected substring
};

TEST(ModelConfigTest, BadConfigsAreRefusedNamingFileAndField) {
  const BadCase cases[] = {
      {"name: \"tiny\"\nmax_batch_size: eight", "tiny", ":2:"},
      {"nmae: \"x\"", "tiny", "nmae"},
      {kGood, "other", "name: \"tiny\" differs from the model's directory \"other\""},
      {GoodReplacing("\"torchscript\"", "\"onnx\""), "tiny", "backend: unknown backend \"onnx\""},
      {GoodReplacing("max_batch_size: 8", "max_batch_size: 0"), "tiny",
       "max_batch_size: must be at least 1"},
      {GoodWith("input { name: \"b\" data_type: TYPE_FP32 dims: [3,1,1,1] }"), "tiny",
       "input: exactly one input"},
      {GoodWith("output { name: \"b\" data_type: TYPE_FP32 dims: [3] }"), "tiny",
       "output: exactly one output"},
      {GoodReplacing("[ 4, 8 ]", "[ 4, 16 ]"), "tiny",
       "dynamic_batching.preferred_batch_size: 16 is outside"},
      {GoodReplacing("[ 4, 8 ]", "[ 4, 8 ] priority_levels: 2 default_priority_level: 3"),
       "tiny", "dynamic_batching.default_priority_level: 3 is outside 1..priority_levels (2)"},
      {GoodReplacing("[ 4, 8 ]", "[ 4, 8 ] priority_levels: 5000"), "tiny",
       "dynamic_batching.priority_levels: 5000 is over 1000"},
      {GoodWith("instance_group { count: -1 }"), "tiny", "instance_group.count"},
      {GoodWith("parameters { key: \"intra_op_threads\" value { string_value: \"many\" } }"),
       "tiny", "parameters[intra_op_threads]"},
      {GoodWith("parameters { key: \"precision\" value { string_value: \"fp8\" } }"),
       "tiny", "parameters[precision]: unknown precision \"fp8\" (known: fp32, fp16, bf16)"},
      {GoodWith("parameters { key: \"cuda_graphs\" value { string_value: \"yes\" } }"),
       "tiny", "parameters[cuda_graphs]: must be \"true\" or \"false\""},
      {GoodWith("parameters { key: \"batch_buckets\" value { string_value: \"4,2\" } }"),
       "tiny", "parameters[batch_buckets]: must be \"auto\", \"none\" or ascending"},
      {FixedWith("parameters { key: \"cuda_graphs\" value { string_value: \"true\" } } "
                 "parameters { key: \"batch_buckets\" value { string_value: \"none\" } }"),
       "tiny", "parameters[cuda_graphs]: needs batch buckets"},
      {GoodWith("parameters { key: \"cuda_graphs\" value { string_value: \"true\" } }"),
       "tiny", "parameters[cuda_graphs]: needs a fixed input shape"},
      {GoodWith("parameters { key: \"device\" value { string_value: \"tpu\" } }"), "tiny",
       "parameters[device]"},
      {GoodWith("parameters { key: \"colour\" value { string_value: \"red\" } }"), "tiny",
       "unknown key \"colour\""},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<config::ModelConfig> parsed = Parse(c.text, c.dir);
    ASSERT_FALSE(parsed.ok()) << c.message;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("m/config.pbtxt"), std::string::npos)
        << parsed.status();
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos)
        << parsed.status();
  }
}

TEST(ModelConfigTest, BadInputAndOutputDims) {
  auto config = [](const std::string& in, const std::string& out) {
    return absl::StrCat("backend: \"torchscript\" max_batch_size: 2\n", in, "\n", out);
  };
  const std::string out = R"(output { name: "y" data_type: TYPE_FP32 dims: [10] })";
  const std::string in = R"(input { name: "x" data_type: TYPE_FP32 dims: [3, 8, 32, 32] })";
  struct Case {
    std::string text, message;
  } cases[] = {
      {config(R"(input { name: "x" data_type: TYPE_FP32 dims: [8, 32, 32] })", out),
       "input.dims: must be [C, T, H, W]"},
      {config(R"(input { name: "x" data_type: TYPE_FP32 dims: [1, 8, 32, 32] })", out),
       "channels (dims[0]) must be 3"},
      {config(R"(input { name: "x" data_type: TYPE_FP32 dims: [3, 0, 32, 32] })", out),
       "dims[1] must be in 1..65535 or -1"},
      {config(R"(input { name: "x" data_type: TYPE_UINT8 dims: [3, 8, 32, 32] })", out),
       "input.data_type: must be TYPE_FP32"},
      {config(R"(input { data_type: TYPE_FP32 dims: [3, 8, 32, 32] })", out),
       "input.name: is empty"},
      {config(in, R"(output { name: "y" data_type: TYPE_FP32 dims: [0] })"),
       "output.dims: must be [num_classes]"},
      {config(in, R"(output { name: "y" data_type: TYPE_INT64 dims: [10] })"),
       "output.data_type: must be TYPE_FP32"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<config::ModelConfig> parsed = Parse(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos)
        << parsed.status();
  }
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<config::ModelConfig> c =
      LoadModelConfig("/nonexistent/tiny/config.pbtxt", "tiny");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/tiny/config.pbtxt"),
            std::string::npos);
}

}  // namespace
}  // namespace clipserve::server
