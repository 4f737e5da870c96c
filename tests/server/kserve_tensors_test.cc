// kserve_tensors: requests checked against a model without a server, and
// responses filled in the form asked.
#include "server/kserve_tensors.h"

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

namespace clipserve::server::kserve {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

ModelIo Io() {
  ModelIo io;
  io.model_name = "m";
  io.input_name = "clip";
  io.logits_name = "scores";
  io.spec.input = {3, 2, 4, 5};
  io.spec.num_classes = 3;
  io.max_batch_size = 4;
  return io;
}

constexpr int64_t kClipElements = 3 * 2 * 4 * 5;

ModelInferRequest Uint8Request(int64_t batch) {
  ModelInferRequest r;
  auto* in = r.add_inputs();
  in->set_name("clip");
  in->set_datatype("UINT8");
  for (int64_t d : {batch, int64_t{2}, int64_t{4}, int64_t{5}, int64_t{3}}) in->add_shape(d);
  r.add_raw_input_contents()->assign(batch * kClipElements, '\x7f');
  return r;
}

TEST(KServeTensorsTest, RawBatchIsViewedInPlace) {
  const ModelInferRequest r = Uint8Request(3);
  ParsedInfer p;
  ASSERT_TRUE(ParseInferRequest(r, Io(), &p).ok());
  EXPECT_TRUE(p.raw);
  EXPECT_EQ(p.clip.count, 3);
  EXPECT_EQ(p.clip.dtype, runtime::ClipDType::kUInt8);
  EXPECT_EQ(p.clip.shape, (runtime::ClipShape{3, 2, 4, 5}));
  EXPECT_EQ(p.clip.data, r.raw_input_contents(0).data());  // no copy
  EXPECT_TRUE(p.converted.empty());
  ASSERT_EQ(p.outputs.size(), 2u);  // none asked: all, logits first
  EXPECT_EQ(p.outputs[0], Output::kLogits);
  EXPECT_EQ(p.outputs[1], Output::kProbabilities);
}

TEST(KServeTensorsTest, TypedFp32IsViewedInPlaceAndTypedUint8Narrowed) {
  ModelInferRequest f;
  auto* in = f.add_inputs();
  in->set_name("clip");
  in->set_datatype("FP32");
  for (int64_t d : {1, 3, 2, 4, 5}) in->add_shape(d);
  in->mutable_contents()->mutable_fp32_contents()->Resize(kClipElements, 0.5f);
  ParsedInfer p;
  ASSERT_TRUE(ParseInferRequest(f, Io(), &p).ok());
  EXPECT_FALSE(p.raw);
  EXPECT_EQ(p.clip.dtype, runtime::ClipDType::kFloat32);
  EXPECT_EQ(p.clip.data, in->contents().fp32_contents().data());

  ModelInferRequest u = Uint8Request(1);
  u.clear_raw_input_contents();
  auto* values = u.mutable_inputs(0)->mutable_contents()->mutable_uint_contents();
  for (int i = 0; i < kClipElements; ++i) values->Add(i % 256);
  ASSERT_TRUE(ParseInferRequest(u, Io(), &p).ok());
  ASSERT_EQ(p.converted.size(), static_cast<size_t>(kClipElements));
  EXPECT_EQ(p.clip.data, p.converted.data());
  EXPECT_EQ(static_cast<unsigned char>(p.converted[100]), 100);
}

TEST(KServeTensorsTest, ErrorsNameTheInputAndTheProblem) {
  struct Case {
    const char* what;
    void (*edit)(ModelInferRequest*);
    const char* message;
  };
  const Case cases[] = {
      {"name", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_name("x"); },
       "unknown input 'x': model 'm' takes one input, 'clip'"},
      {"dtype", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_datatype("FP16"); },
       "input 'clip': datatype FP16 is not accepted"},
      {"rank", [](ModelInferRequest* r) { r->mutable_inputs(0)->mutable_shape()->RemoveLast(); },
       "input 'clip': shape must be [B, T, H, W, C] for UINT8, got [2, 2, 4, 5]"},
      {"frames", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_shape(1, 3); },
       "input 'clip' is 3 x 4 x 5 (T x H x W); model 'm' takes 2 x 4 x 5"},
      {"batch", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_shape(0, 5); },
       "a batch of 5 clips exceeds model 'm''s max_batch_size, 4"},
      {"bytes", [](ModelInferRequest* r) { r->mutable_raw_input_contents(0)->pop_back(); },
       "raw_input_contents[0] has 239 bytes; shape [2, 2, 4, 5, 3] of UINT8 needs 240"},
      {"mixed", [](ModelInferRequest* r) {
         r->mutable_inputs(0)->mutable_contents()->add_uint_contents(1);
       },
       "sets contents while the request uses raw_input_contents"},
      {"output", [](ModelInferRequest* r) { r->add_outputs()->set_name("logits"); },
       "unknown output 'logits': model 'm' has outputs 'scores' and 'probabilities'"},
      {"priority", [](ModelInferRequest* r) {
         (*r->mutable_parameters())["priority"].set_int64_param(-1);
       },
       "parameter 'priority' must be a non-negative int64 or uint64"},
  };
  for (const Case& c : cases) {
    ModelInferRequest r = Uint8Request(2);
    c.edit(&r);
    ParsedInfer p;
    const absl::Status s = ParseInferRequest(r, Io(), &p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(s.message().find(c.message), std::string::npos)
        << c.what << ": " << s.message();
  }
}

TEST(KServeTensorsTest, ResponseTakesTheRequestsFormAndOutputOrder) {
  ModelInferRequest r = Uint8Request(2);
  r.set_id("abc");
  r.add_outputs()->set_name("probabilities");
  r.add_outputs()->set_name("scores");
  ParsedInfer p;
  ASSERT_TRUE(ParseInferRequest(r, Io(), &p).ok());
  const float logits[] = {1, 2, 3, 0, 0, 0};
  ExecutionStats stats;
  stats.queue_us = 7;
  stats.compute_us = 11;
  stats.batch_size = 4;
  ModelInferResponse out;
  FillInferResponse(r, p, Io(), logits, 3, stats, &out);
  EXPECT_EQ(out.id(), "abc");
  ASSERT_EQ(out.outputs_size(), 2);
  EXPECT_EQ(out.outputs(0).name(), "probabilities");
  EXPECT_EQ(out.outputs(1).name(), "scores");
  ASSERT_EQ(out.raw_output_contents_size(), 2);
  float probs[6], scores[6];
  std::memcpy(probs, out.raw_output_contents(0).data(), sizeof probs);
  std::memcpy(scores, out.raw_output_contents(1).data(), sizeof scores);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(probs[2], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(probs[4], 1.0 / 3, 1e-6);
  EXPECT_EQ(scores[1], 2);
  EXPECT_EQ(out.parameters().at("queue_us").int64_param(), 7);
  EXPECT_EQ(out.parameters().at("compute_us").int64_param(), 11);
  EXPECT_EQ(out.parameters().at("batch_size").int64_param(), 4);

  // Typed in, typed out.
  r.clear_raw_input_contents();
  r.mutable_inputs(0)->mutable_contents()->mutable_uint_contents()->Resize(2 * kClipElements, 9);
  ASSERT_TRUE(ParseInferRequest(r, Io(), &p).ok());
  out.Clear();
  FillInferResponse(r, p, Io(), logits, 3, stats, &out);
  EXPECT_EQ(out.raw_output_contents_size(), 0);
  ASSERT_EQ(out.outputs(1).contents().fp32_contents_size(), 6);
  EXPECT_EQ(out.outputs(1).contents().fp32_contents(2), 3);
}

TEST(KServeTensorsTest, MetadataListsTheDeclaredInputOnceWithABatchDimension) {
  ModelIo io = Io();
  io.spec.input.width = -1;  // any width
  inference::ModelMetadataResponse m;
  FillTensorMetadata(io, &m);
  // Input names are unique: the config's FP32 form only.
  ASSERT_EQ(m.inputs_size(), 1);
  EXPECT_EQ(m.inputs(0).name(), "clip");
  EXPECT_EQ(m.inputs(0).datatype(), "FP32");
  EXPECT_EQ(std::vector<int64_t>(m.inputs(0).shape().begin(), m.inputs(0).shape().end()),
            (std::vector<int64_t>{-1, 3, 2, 4, -1}));
  ASSERT_EQ(m.outputs_size(), 2);
  EXPECT_EQ(m.outputs(0).name(), "scores");
  EXPECT_EQ(m.outputs(1).name(), "probabilities");
  for (const auto& out : m.outputs()) {
    EXPECT_EQ(out.datatype(), "FP32");
    EXPECT_EQ(std::vector<int64_t>(out.shape().begin(), out.shape().end()),
              (std::vector<int64_t>{-1, 3}));
  }
}

TEST(KServeTensorsTest, UnlistedUint8FormOfTheListedInputIsStillAccepted) {
  inference::ModelMetadataResponse m;
  FillTensorMetadata(Io(), &m);
  ASSERT_EQ(m.inputs_size(), 1);
  // A client building its tensor from the listed input...
  ModelInferRequest listed;
  auto* in = listed.add_inputs();
  in->set_name(m.inputs(0).name());
  in->set_datatype(m.inputs(0).datatype());
  int64_t bytes = 4;
  for (int64_t d : m.inputs(0).shape()) {
    in->add_shape(d == -1 ? 1 : d);
    bytes *= d == -1 ? 1 : d;
  }
  listed.add_raw_input_contents()->assign(bytes, '\0');
  ParsedInfer p;
  ASSERT_TRUE(ParseInferRequest(listed, Io(), &p).ok());
  EXPECT_EQ(p.clip.dtype, runtime::ClipDType::kFloat32);
  // ...and one sending frames under the same name.
  ASSERT_TRUE(ParseInferRequest(Uint8Request(1), Io(), &p).ok());
  EXPECT_EQ(p.clip.dtype, runtime::ClipDType::kUInt8);
  EXPECT_EQ(p.clip.shape.channels, 3);
  EXPECT_EQ(p.clip.shape.frames, 2);
}

config::ModelConfig TwoGroupConfig() {
  config::ModelConfig c;
  c.set_name("m");
  c.set_backend("torchscript");
  c.set_max_batch_size(4);
  auto* in = c.add_input();
  in->set_name("clip");
  in->set_data_type(config::TYPE_FP32);
  for (int64_t d : {3, 2, 4, 5}) in->add_dims(d);
  auto* out = c.add_output();
  out->set_name("scores");
  out->set_data_type(config::TYPE_FP32);
  out->add_dims(3);
  auto* auto_group = c.add_instance_group();
  auto_group->set_count(2);
  auto_group->set_kind(config::ModelInstanceGroup::KIND_AUTO);
  auto* gpu_group = c.add_instance_group();
  gpu_group->set_count(2);
  gpu_group->set_kind(config::ModelInstanceGroup::KIND_GPU);
  gpu_group->add_gpus(1);
  gpu_group->add_gpus(0);
  auto* b = c.mutable_dynamic_batching();
  b->set_max_queue_delay_microseconds(2000);
  b->add_preferred_batch_size(2);
  b->add_preferred_batch_size(4);
  b->set_max_queue_size(64);
  b->set_default_timeout_microseconds(500000);
  b->set_priority_levels(5);
  b->set_default_priority_level(3);
  (*c.mutable_parameters())["intra_op_threads"].set_string_value("2");
  return c;
}

TEST(KServeTensorsTest, ModelConfigCarriesTheServedConfigInTritonsTerms) {
  inference::ModelConfig m;
  const std::vector<std::string> devices = {"cpu", "cpu", "cuda:1", "cuda:0"};
  FillModelConfig(TwoGroupConfig(), Io(), /*has_labels=*/true, devices, &m);
  EXPECT_EQ(m.name(), "m");
  EXPECT_EQ(m.platform(), "torchscript");
  EXPECT_EQ(m.backend(), "torchscript");
  EXPECT_EQ(m.max_batch_size(), 4);
  EXPECT_EQ(m.version_policy().latest().num_versions(), 1u);

  ASSERT_EQ(m.input_size(), 1);
  EXPECT_EQ(m.input(0).name(), "clip");
  EXPECT_EQ(m.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(std::vector<int64_t>(m.input(0).dims().begin(), m.input(0).dims().end()),
            (std::vector<int64_t>{3, 2, 4, 5}));
  ASSERT_EQ(m.output_size(), 2);
  EXPECT_EQ(m.output(0).name(), "scores");
  EXPECT_EQ(m.output(1).name(), "probabilities");
  for (const auto& out : m.output()) {
    EXPECT_EQ(out.data_type(), inference::TYPE_FP32);
    ASSERT_EQ(out.dims_size(), 1);
    EXPECT_EQ(out.dims(0), 3);
    EXPECT_EQ(out.label_filename(), "labels.txt");
  }

  // KIND_AUTO as it was loaded; the GPU group's devices as placed.
  ASSERT_EQ(m.instance_group_size(), 2);
  EXPECT_EQ(m.instance_group(0).name(), "m_0");
  EXPECT_EQ(m.instance_group(0).count(), 2);
  EXPECT_EQ(m.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(m.instance_group(0).gpus_size(), 0);
  EXPECT_EQ(m.instance_group(1).name(), "m_1");
  EXPECT_EQ(m.instance_group(1).kind(), inference::ModelInstanceGroup::KIND_GPU);
  EXPECT_EQ(std::vector<int>(m.instance_group(1).gpus().begin(), m.instance_group(1).gpus().end()),
            (std::vector<int>{1, 0}));

  ASSERT_TRUE(m.has_dynamic_batching());
  const inference::ModelDynamicBatching& b = m.dynamic_batching();
  EXPECT_EQ(b.max_queue_delay_microseconds(), 2000u);
  EXPECT_EQ(std::vector<int>(b.preferred_batch_size().begin(), b.preferred_batch_size().end()),
            (std::vector<int>{2, 4}));
  EXPECT_EQ(b.priority_levels(), 5u);
  EXPECT_EQ(b.default_priority_level(), 3u);
  EXPECT_EQ(b.default_queue_policy().max_queue_size(), 64u);
  EXPECT_EQ(b.default_queue_policy().default_timeout_microseconds(), 500000u);
  EXPECT_EQ(b.default_queue_policy().timeout_action(), inference::ModelQueuePolicy::REJECT);
  EXPECT_TRUE(b.default_queue_policy().allow_timeout_override());
  ASSERT_EQ(m.parameters().count("intra_op_threads"), 1u);
  EXPECT_EQ(m.parameters().at("intra_op_threads").string_value(), "2");
}

TEST(KServeTensorsTest, ModelConfigKeepsTheConfigsKindsWhenDevicesDoNotMatch) {
  inference::ModelConfig m;
  // Three devices for four instances: nothing to resolve with.
  const std::vector<std::string> devices = {"cpu", "cpu", "cuda:1"};
  FillModelConfig(TwoGroupConfig(), Io(), /*has_labels=*/false, devices, &m);
  ASSERT_EQ(m.instance_group_size(), 2);
  EXPECT_EQ(m.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_AUTO);
  EXPECT_EQ(m.instance_group(1).kind(), inference::ModelInstanceGroup::KIND_GPU);
  EXPECT_EQ(m.instance_group(1).gpus_size(), 2);
  for (const auto& out : m.output()) EXPECT_EQ(out.label_filename(), "");
}

TEST(KServeTensorsTest, ModelStatisticsCarriesEveryCountAndDuration) {
  InferenceStatistics::Snapshot s;
  s.last_inference_ms = 1700000000123;
  s.inference_count = 7;
  s.execution_count = 3;
  s.success = {5, 50};
  s.fail = {2, 20};
  s.queue = {5, 51};
  s.compute_input = {5, 52};
  s.compute_infer = {5, 53};
  s.compute_output = {5, 54};
  s.batch_sizes = {{1, {2, 1}, {2, 2}, {2, 3}}, {5, {1, 4}, {1, 5}, {1, 6}}};
  inference::ModelStatistics m;
  FillModelStatistics(s, &m);
  EXPECT_EQ(m.last_inference(), 1700000000123u);
  EXPECT_EQ(m.inference_count(), 7u);
  EXPECT_EQ(m.execution_count(), 3u);
  const inference::InferStatistics& i = m.inference_stats();
  EXPECT_EQ(i.success().count(), 5u);
  EXPECT_EQ(i.success().ns(), 50u);
  EXPECT_EQ(i.fail().count(), 2u);
  EXPECT_EQ(i.fail().ns(), 20u);
  EXPECT_EQ(i.queue().ns(), 51u);
  EXPECT_EQ(i.compute_input().ns(), 52u);
  EXPECT_EQ(i.compute_infer().ns(), 53u);
  EXPECT_EQ(i.compute_output().ns(), 54u);
  EXPECT_EQ(i.compute_output().count(), 5u);
  ASSERT_EQ(m.batch_stats_size(), 2);
  EXPECT_EQ(m.batch_stats(0).batch_size(), 1u);
  EXPECT_EQ(m.batch_stats(0).compute_infer().count(), 2u);
  EXPECT_EQ(m.batch_stats(0).compute_output().ns(), 3u);
  EXPECT_EQ(m.batch_stats(1).batch_size(), 5u);
  EXPECT_EQ(m.batch_stats(1).compute_input().ns(), 4u);
  EXPECT_EQ(m.batch_stats(1).compute_infer().ns(), 5u);
}

}  // namespace
}  // namespace clipserve::server::kserve
