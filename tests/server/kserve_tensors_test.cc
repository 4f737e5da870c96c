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

TEST(KServeTensorsTest, MetadataListsBothInputFormsWithABatchDimension) {
  ModelIo io = Io();
  io.spec.input.width = -1;  // any width
  inference::ModelMetadataResponse m;
  FillTensorMetadata(io, &m);
  ASSERT_EQ(m.inputs_size(), 2);
  EXPECT_EQ(m.inputs(0).datatype(), "UINT8");
  EXPECT_EQ(std::vector<int64_t>(m.inputs(0).shape().begin(), m.inputs(0).shape().end()),
            (std::vector<int64_t>{-1, 2, 4, -1, 3}));
  EXPECT_EQ(m.inputs(1).datatype(), "FP32");
  EXPECT_EQ(std::vector<int64_t>(m.inputs(1).shape().begin(), m.inputs(1).shape().end()),
            (std::vector<int64_t>{-1, 3, 2, 4, -1}));
  ASSERT_EQ(m.outputs_size(), 2);
  EXPECT_EQ(m.outputs(0).name(), "scores");
  EXPECT_EQ(m.outputs(1).name(), "probabilities");
  EXPECT_EQ(m.outputs(1).shape(1), 3);
}

}  // namespace
}  // namespace clipserve::server::kserve
