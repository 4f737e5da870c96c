// End to end: the Open Inference Protocol (inference.GRPCInferenceService)
// on the real clipserve binary, through the real gRPC stubs: batch requests
// and the batcher, both protocols sharing batches, priority, timeouts,
// streaming, full queues and draining; the metadata a client builds its
// request from, and Triton's ModelConfig and ModelStatistics extensions
// counting what really ran. The protocol's every RPC and error is also
// exercised from Python (tests/python/kserve_client_test.py) and with
// Triton's own client (tests/python/tritonclient_test.py).
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"
#include "tests/integration/video_sources.h"

namespace clipserve::testing {
namespace {

using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using std::chrono::milliseconds;

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 10;
constexpr size_t kClipBytes = kT * kH * kW * 3;

// `batch` random UINT8 clips (seeds seed, seed + 1, ...), raw.
ModelInferRequest InferRequest(const std::string& model, int batch, uint64_t seed,
                               const std::string& id = "") {
  ModelInferRequest r = testing::InferRequest(model, batch, kT, kH, kW, seed);
  r.set_id(id);
  return r;
}

void SetPriority(ModelInferRequest* r, uint64_t priority) {
  (*r->mutable_parameters())["priority"].set_uint64_param(priority);
}

// Row `row` of the raw FP32 output `index` of `r`.
std::vector<float> RawRow(const ModelInferResponse& r, int index, int row) {
  const std::string& bytes = r.raw_output_contents(index);
  std::vector<float> out(kClasses);
  std::memcpy(out.data(), bytes.data() + row * kClasses * sizeof(float),
              kClasses * sizeof(float));
  return out;
}

// The logits our own API gives for clip `seed`.
std::vector<float> ClassifyLogits(const std::shared_ptr<grpc::Channel>& channel,
                                  const std::string& model, uint64_t seed) {
  v1::ClassifyRequest req;
  req.set_model_name(model);
  req.set_return_logits(true);
  *req.mutable_clip() = client::RandomClip(v1::UINT8, kT, kH, kW, seed);
  auto stub = v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ClassifyResponse response;
  const grpc::Status s = stub->Classify(&context, req, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {response.logits().begin(), response.logits().end()};
}

class KServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    // Batches of up to 8 that wait up to 1 s to fill.
    WriteTinyModel(repo_->path(), "tiny",
                   ModelConfigText("tiny", 8, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 1000000 }"),
                   7);
    // Batches only of 2 (a TorchScript model): a request of one clip waits
    // until another clip comes, whatever the machine's speed.
    WriteScriptModel(repo_->path(), "pair",
                     ModelConfigText("pair", 2, kT, kH, kW, kClasses,
                                     "dynamic_batching { max_queue_delay_microseconds: 3600000000"
                                     " max_queue_size: 3 }"),
                     LinearForward(), kClasses);
    // Batches only of 8 (never formed here), a queue of 3: requests wait
    // until the test ends them, whatever the machine's speed.
    WriteTinyModel(repo_->path(), "held",
                   ModelConfigText("held", 8, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 3600000000"
                                   " max_queue_size: 3 }"),
                   8);
    server_ = ServerProcess::Start({"--model-repository", repo_->path()}).release();
    ASSERT_NE(server_, nullptr);
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->Wait(), 0);
    }
    delete server_;
    delete repo_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  std::shared_ptr<grpc::Channel> Channel() { return server_->Channel(); }

  // Waits until `model`'s queue holds `n` requests (the server's gauge).
  void WaitForQueued(const std::string& model, int n) {
    const std::string series =
        absl::StrCat("clipserve_queue_depth{model=\"", model, "\",version=\"1\"}");
    ASSERT_EQ(server_->WaitForMetric(series, n), n)
        << "the server never queued " << n << " requests for " << model;
  }

  static TempDir* repo_;
  static ServerProcess* server_;
};

TempDir* KServeTest::repo_ = nullptr;
ServerProcess* KServeTest::server_ = nullptr;

// The same TinyVideoNet served in fp32, in bf16, and in fp32 padded to
// batch buckets: padding leaves every answered row as it was, bf16 stays
// within its rounding of fp32 and picks the same classes.
TEST(PrecisionServingTest, Bf16AndBucketedModelsAnswerLikeFp32) {
  TempDir repo;
  WriteTinyModel(repo.path(), "fp32",
                 ModelConfigText("fp32", 8, kT, kH, kW, kClasses, ""), 7);
  WriteTinyModel(repo.path(), "bf16",
                 ModelConfigText("bf16", 8, kT, kH, kW, kClasses,
                                 "parameters { key: \"precision\" value { "
                                 "string_value: \"bf16\" } }"),
                 7);
  WriteTinyModel(repo.path(), "padded",
                 ModelConfigText("padded", 8, kT, kH, kW, kClasses,
                                 "parameters { key: \"batch_buckets\" value { "
                                 "string_value: \"2,4\" } }"),
                 7);
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start({"--model-repository", repo.path()});
  ASSERT_NE(server, nullptr);
  InferResult fp32 = Infer(server->Channel(), InferRequest("fp32", 3, 40));
  InferResult bf16 = Infer(server->Channel(), InferRequest("bf16", 3, 40));
  InferResult padded = Infer(server->Channel(), InferRequest("padded", 3, 40));
  ASSERT_TRUE(fp32.status.ok()) << fp32.status.error_message();
  ASSERT_TRUE(bf16.status.ok()) << bf16.status.error_message();
  ASSERT_TRUE(padded.status.ok()) << padded.status.error_message();
  for (int row = 0; row < 3; ++row) {
    const std::vector<float> want = RawRow(fp32.response, 0, row);
    const std::vector<float> half = RawRow(bf16.response, 0, row);
    const std::vector<float> pad = RawRow(padded.response, 0, row);
    float scale = 0;
    for (float v : want) scale = std::max(scale, std::abs(v));
    for (int k = 0; k < kClasses; ++k) {
      EXPECT_NEAR(pad[k], want[k], 1e-4 * (1 + std::abs(want[k]))) << row;
      EXPECT_NEAR(half[k], want[k], 0.05 * scale) << row;
    }
    EXPECT_EQ(std::max_element(half.begin(), half.end()) - half.begin(),
              std::max_element(want.begin(), want.end()) - want.begin())
        << row;
  }
  // The padded model ran its batch of 3 at bucket 4 yet answered 3 rows.
  EXPECT_EQ(padded.response.outputs(0).shape(0), 3);
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

TEST_F(KServeTest, BatchOfThreeComesBackInOrderAndAgreesWithOurApi) {
  ModelInferRequest req = InferRequest("tiny", 3, 100, "batch-3");
  req.add_outputs()->set_name("probabilities");
  InferResult r = Infer(Channel(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.id(), "batch-3");
  EXPECT_EQ(r.response.model_name(), "tiny");
  EXPECT_EQ(r.response.model_version(), "1");
  ASSERT_EQ(r.response.outputs_size(), 2);
  ASSERT_EQ(r.response.raw_output_contents_size(), 2);
  EXPECT_EQ(r.response.outputs(0).name(), "logits");
  EXPECT_EQ(r.response.outputs(1).name(), "probabilities");
  for (const auto& out : r.response.outputs()) {
    EXPECT_EQ(out.datatype(), "FP32");
    ASSERT_EQ(out.shape_size(), 2);
    EXPECT_EQ(out.shape(0), 3);
    EXPECT_EQ(out.shape(1), kClasses);
    EXPECT_FALSE(out.has_contents());  // raw in, raw out
  }
  for (int row = 0; row < 3; ++row) {
    const std::vector<float> want = ClassifyLogits(Channel(), "tiny", 100 + row);
    const std::vector<float> got = RawRow(r.response, 0, row);
    const std::vector<float> probs = RawRow(r.response, 1, row);
    double sum = 0, denom = 0;
    const float max = *std::max_element(want.begin(), want.end());
    for (float v : want) denom += std::exp(v - max);
    for (int c = 0; c < kClasses; ++c) {
      EXPECT_NEAR(got[c], want[c], 1e-4 * (1 + std::abs(want[c]))) << row << "," << c;
      EXPECT_NEAR(probs[c], std::exp(want[c] - max) / denom, 1e-5);
      sum += probs[c];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
  EXPECT_GE(Param(r.response, "batch_size"), 3);
  EXPECT_GE(Param(r.response, "queue_us"), 0);
  EXPECT_GT(Param(r.response, "compute_us"), 0);
}

TEST_F(KServeTest, BatchRequestsFillOneBatchTogetherAndAreNeverSplit) {
  // 3 + 5 clips fill "tiny"'s batch of 8 at once: one execution for both,
  // long before the 1 s delay.
  auto a = InferAsync(Channel(), InferRequest("tiny", 3, 1));
  WaitForQueued("tiny", 1);
  const auto start = std::chrono::steady_clock::now();
  auto b = InferAsync(Channel(), InferRequest("tiny", 5, 4));
  InferResult ra = a.get(), rb = b.get();
  ASSERT_TRUE(ra.status.ok()) << ra.status.error_message();
  ASSERT_TRUE(rb.status.ok()) << rb.status.error_message();
  EXPECT_EQ(Param(ra.response, "batch_size"), 8);
  EXPECT_EQ(Param(rb.response, "batch_size"), 8);
  EXPECT_LT(rb.done - start, milliseconds(900));

  // 5 + 5 do not fit in 8: the first five run alone, the next five alone
  // (each after the delay), neither split.
  auto c = InferAsync(Channel(), InferRequest("tiny", 5, 20));
  auto d = InferAsync(Channel(), InferRequest("tiny", 5, 30));
  InferResult rc = c.get(), rd = d.get();
  ASSERT_TRUE(rc.status.ok()) << rc.status.error_message();
  ASSERT_TRUE(rd.status.ok()) << rd.status.error_message();
  EXPECT_EQ(Param(rc.response, "batch_size"), 5);
  EXPECT_EQ(Param(rd.response, "batch_size"), 5);
  ASSERT_EQ(rc.response.raw_output_contents(0).size(), 5 * kClasses * sizeof(float));
}

TEST_F(KServeTest, BothProtocolsShareTheModelsBatches) {
  // Five Classify calls and one KServe batch of three: one batch of 8.
  std::vector<std::future<std::vector<float>>> ours;
  for (int i = 0; i < 5; ++i) {
    ours.push_back(std::async(std::launch::async, [this, i] {
      return ClassifyLogits(Channel(), "tiny", 500 + i);
    }));
  }
  WaitForQueued("tiny", 5);
  InferResult r = Infer(Channel(), InferRequest("tiny", 3, 600));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(Param(r.response, "batch_size"), 8);
  for (auto& f : ours) EXPECT_EQ(f.get().size(), static_cast<size_t>(kClasses));
}

TEST_F(KServeTest, UrgentRequestOvertakesQueuedOnes) {
  // "pair" runs batches of exactly 2 clips. One clip at the least urgent
  // level waits; then two clips at the most urgent level come: they fill a
  // batch on their own, ahead of it (in arrival order it would run first,
  // alone in its batch, as the two do not fit beside it).
  const std::string depth = "clipserve_queue_depth{model=\"pair\",version=\"1\"}";
  ModelInferRequest low = InferRequest("pair", 1, 2);
  SetPriority(&low, 3);
  auto waiting = InferAsync(Channel(), low);
  WaitForQueued("pair", 1);
  ModelInferRequest high = InferRequest("pair", 2, 3);
  SetPriority(&high, 1);
  InferResult ru = Infer(Channel(), high);
  ASSERT_TRUE(ru.status.ok()) << ru.status.error_message();
  EXPECT_EQ(Param(ru.response, "batch_size"), 2);
  // The less urgent one is still queued, unanswered.
  EXPECT_EQ(MetricValue(server_->ScrapeMetrics(), depth), 1);
  EXPECT_EQ(waiting.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  // Another clip of its level completes its batch.
  auto partner = InferAsync(Channel(), low);
  InferResult rl = waiting.get(), rp = partner.get();
  ASSERT_TRUE(rl.status.ok()) << rl.status.error_message();
  ASSERT_TRUE(rp.status.ok()) << rp.status.error_message();
  EXPECT_EQ(Param(rl.response, "batch_size"), 2);
  EXPECT_LT(ru.done, rl.done);

  ModelInferRequest bad = InferRequest("pair", 1, 4);
  SetPriority(&bad, 4);
  InferResult rbad = Infer(Channel(), bad);
  EXPECT_EQ(rbad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(rbad.status.error_message().find("priority 4 is out of range"),
            std::string::npos)
      << rbad.status.error_message();
}

// The timeout parameter must be an integer count of microseconds. (That a
// request's timeout expires it in the queue, counted and never computed, is
// DeadlineTest.AnExpiredRequestIsDroppedBeforeComputeAndCounted, on a model
// whose batch cannot form: no assumption on how long a model runs.)
TEST_F(KServeTest, TimeoutParameterMustBeAnIntegerOfMicroseconds) {
  ModelInferRequest bad = InferRequest("tiny", 1, 3);
  (*bad.mutable_parameters())["timeout"].set_string_param("100ms");
  InferResult rbad = Infer(Channel(), bad);
  EXPECT_EQ(rbad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(rbad.status.error_message().find("parameter 'timeout'"), std::string::npos)
      << rbad.status.error_message();
}

TEST_F(KServeTest, FullQueueIsUnavailableAndCountedOnce) {
  const std::string unavailable =
      "clipserve_requests_total{code=\"UNAVAILABLE\",model=\"held\",version=\"1\"}";
  const std::string expired =
      "clipserve_requests_total{code=\"DEADLINE_EXCEEDED\",model=\"held\",version=\"1\"}";
  const std::string before = server_->ScrapeMetrics();
  const double unavailable_before = std::max(0.0, MetricValue(before, unavailable));
  const double expired_before = std::max(0.0, MetricValue(before, expired));
  // A queue of 3 full (the batch of 8 never forms): the next request is
  // refused at once with UNAVAILABLE, Triton's code for it.
  std::vector<std::future<InferResult>> queued;
  for (int i = 0; i < 3; ++i) {
    queued.push_back(InferAsync(Channel(), InferRequest("held", 1, 10 + i), milliseconds(3000)));
  }
  WaitForQueued("held", 3);
  InferResult full = Infer(Channel(), InferRequest("held", 1, 20));
  EXPECT_EQ(full.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << full.status.error_message();
  EXPECT_NE(full.status.error_message().find("max_queue_size 3"), std::string::npos)
      << full.status.error_message();
  EXPECT_EQ(MetricValue(server_->ScrapeMetrics(), unavailable), unavailable_before + 1);
  // The three queued end at their deadlines, each counted once.
  for (auto& q : queued) {
    EXPECT_EQ(q.get().status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  EXPECT_EQ(server_->WaitForMetric(expired, expired_before + 3), expired_before + 3);
  EXPECT_EQ(MetricValue(server_->ScrapeMetrics(), unavailable), unavailable_before + 1);
}

TEST_F(KServeTest, StreamAnswersEachRequestByIdAndSurvivesABadOne) {
  auto stub = GRPCInferenceService::NewStub(Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub->ModelStreamInfer(&context);
  constexpr int kRequests = 6;
  for (int i = 0; i < kRequests; ++i) {
    ModelInferRequest r = InferRequest(i == 2 ? "no-such-model" : "tiny", 1 + i % 2,
                                       700 + i, absl::StrCat("req-", i));
    if (i == 4) r.mutable_inputs(0)->set_datatype("INT32");
    ASSERT_TRUE(stream->Write(r));
  }
  ASSERT_TRUE(stream->WritesDone());
  std::map<std::string, inference::ModelStreamInferResponse> answers;
  inference::ModelStreamInferResponse answer;
  while (stream->Read(&answer)) {
    EXPECT_EQ(answers.count(answer.infer_response().id()), 0u)
        << "answered twice: " << answer.infer_response().id();
    answers[answer.infer_response().id()] = answer;
  }
  const grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(answers.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    const auto& a = answers[absl::StrCat("req-", i)];
    if (i == 2) {
      EXPECT_NE(a.error_message().find("NOT_FOUND"), std::string::npos) << a.error_message();
      EXPECT_NE(a.error_message().find("no-such-model"), std::string::npos);
    } else if (i == 4) {
      EXPECT_NE(a.error_message().find("INVALID_ARGUMENT"), std::string::npos)
          << a.error_message();
      EXPECT_NE(a.error_message().find("datatype INT32"), std::string::npos);
    } else {
      EXPECT_EQ(a.error_message(), "") << i;
      ASSERT_EQ(a.infer_response().outputs_size(), 1);
      EXPECT_EQ(a.infer_response().outputs(0).shape(0), 1 + i % 2);
      const std::vector<float> want = ClassifyLogits(Channel(), "tiny", 700 + i);
      const std::vector<float> got = RawRow(a.infer_response(), 0, 0);
      for (int c = 0; c < kClasses; ++c) EXPECT_NEAR(got[c], want[c], 1e-4 * (1 + std::abs(want[c])));
    }
  }
}

TEST_F(KServeTest, CancelledStreamDropsItsQueuedRequestsAndLeavesNothingBehind) {
  const std::string series = "{model=\"held\",version=\"1\"}";
  const std::string inflight = "clipserve_inflight_requests" + series;
  const std::string depth = "clipserve_queue_depth" + series;
  const std::string cancelled = "clipserve_requests_total{code=\"CANCELLED\",model=\"held\",version=\"1\"}";
  const std::string ok = "clipserve_requests_total{code=\"OK\",model=\"held\",version=\"1\"}";
  const std::string before = server_->ScrapeMetrics();
  const double cancelled_before = std::max(0.0, MetricValue(before, cancelled));
  const double ok_before = std::max(0.0, MetricValue(before, ok));
  {
    auto stub = GRPCInferenceService::NewStub(Channel());
    grpc::ClientContext context;
    auto stream = stub->ModelStreamInfer(&context);
    // Three requests wait for a batch of 8 that will not form; then the
    // client goes away.
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(stream->Write(InferRequest("held", 1, 900 + i, absl::StrCat("s", i))));
    }
    WaitForQueued("held", 3);
    context.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // All three leave the queue at once (no batch will reach them: the
  // cancellation sweeps them out), each counted once as CANCELLED and
  // released; none ran.
  EXPECT_EQ(server_->WaitForMetric(cancelled, cancelled_before + 3), cancelled_before + 3)
      << server_->ScrapeMetrics();
  EXPECT_EQ(server_->WaitForMetricAtMost(inflight, 0), 0);
  const std::string after = server_->ScrapeMetrics();
  EXPECT_EQ(MetricValue(after, depth), 0);
  EXPECT_EQ(std::max(0.0, MetricValue(after, ok)), ok_before);
  // The queue is whole again: a full batch runs alone.
  InferResult r = Infer(Channel(), InferRequest("held", 8, 990));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(Param(r.response, "batch_size"), 8);
}

TEST_F(KServeTest, TypedContentsAreAnsweredTyped) {
  ModelInferRequest raw = InferRequest("tiny", 1, 800);
  ModelInferRequest typed = raw;
  typed.clear_raw_input_contents();
  auto* values = typed.mutable_inputs(0)->mutable_contents()->mutable_uint_contents();
  for (unsigned char b : raw.raw_input_contents(0)) values->Add(b);
  InferResult r = Infer(Channel(), typed);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.raw_output_contents_size(), 0);
  ASSERT_EQ(r.response.outputs(0).contents().fp32_contents_size(), kClasses);
  const std::vector<float> want = ClassifyLogits(Channel(), "tiny", 800);
  for (int c = 0; c < kClasses; ++c) {
    EXPECT_NEAR(r.response.outputs(0).contents().fp32_contents(c), want[c],
                1e-4 * (1 + std::abs(want[c])));
  }
  ASSERT_EQ(raw.raw_input_contents(0).size(), kClipBytes);
}

// ---- metadata, Triton's extensions -----------------------------------------

template <typename Response, typename Request, typename Method>
grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel, Method method,
                  const Request& request, Response* response) {
  auto stub = GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ((*stub).*method)(&context, request, response);
}

inference::ModelStatistics Stats(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& model) {
  inference::ModelStatisticsRequest req;
  req.set_name(model);
  inference::ModelStatisticsResponse resp;
  const grpc::Status s =
      Call(channel, &GRPCInferenceService::Stub::ModelStatistics, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.model_stats_size(), 1);
  return resp.model_stats_size() == 1 ? resp.model_stats(0) : inference::ModelStatistics();
}

// batch_stats' execution count for `size` (0: absent).
uint64_t Executions(const inference::ModelStatistics& s, uint64_t size) {
  for (const auto& b : s.batch_stats()) {
    if (b.batch_size() == size) return b.compute_infer().count();
  }
  return 0;
}

uint64_t NowMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

TEST_F(KServeTest, ServerMetadataListsTheExtensionsServed) {
  inference::ServerMetadataResponse r;
  const grpc::Status s =
      Call(Channel(), &GRPCInferenceService::Stub::ServerMetadata,
           inference::ServerMetadataRequest(), &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.name(), "clipserve");
  EXPECT_EQ(std::vector<std::string>(r.extensions().begin(), r.extensions().end()),
            (std::vector<std::string>{"model_configuration", "statistics", "model_repository"}));
}

TEST_F(KServeTest, MetadataListsOneInputAndARequestBuiltFromItRuns) {
  inference::ModelMetadataRequest req;
  req.set_name("tiny");
  inference::ModelMetadataResponse m;
  const grpc::Status s = Call(Channel(), &GRPCInferenceService::Stub::ModelMetadata, req, &m);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(m.inputs_size(), 1);
  EXPECT_EQ(m.inputs(0).name(), "clip");
  EXPECT_EQ(m.inputs(0).datatype(), "FP32");
  EXPECT_EQ(std::vector<int64_t>(m.inputs(0).shape().begin(), m.inputs(0).shape().end()),
            (std::vector<int64_t>{-1, 3, kT, kH, kW}));

  // One tensor per listed input, -1 made 1, zeros: what generic clients do.
  ModelInferRequest r;
  r.set_model_name("tiny");
  auto* in = r.add_inputs();
  in->set_name(m.inputs(0).name());
  in->set_datatype(m.inputs(0).datatype());
  size_t values = 1;
  for (int64_t d : m.inputs(0).shape()) {
    in->add_shape(d < 0 ? 1 : d);
    values *= d < 0 ? 1 : static_cast<size_t>(d);
  }
  r.add_raw_input_contents()->assign(values * sizeof(float), '\0');
  InferResult fp32 = Infer(Channel(), r);
  ASSERT_TRUE(fp32.status.ok()) << fp32.status.error_message();
  ASSERT_EQ(fp32.response.outputs_size(), 2);
  EXPECT_EQ(fp32.response.outputs(0).shape(0), 1);

  // The unlisted UINT8 form of the same input is accepted too: frames of 0
  // are -1 after the server's normalisation, so they match FP32 -1.
  std::string minus_one;
  for (size_t i = 0; i < values; ++i) {
    const float v = -1.0f;
    minus_one.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  *r.mutable_raw_input_contents(0) = minus_one;
  InferResult f = Infer(Channel(), r);
  ModelInferRequest u8 = InferRequest("tiny", 1, 0);
  u8.clear_outputs();
  u8.mutable_raw_input_contents(0)->assign(kClipBytes, '\0');
  InferResult u = Infer(Channel(), u8);
  ASSERT_TRUE(f.status.ok()) << f.status.error_message();
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  for (int c = 0; c < kClasses; ++c) {
    EXPECT_NEAR(RawRow(u.response, 0, 0)[c], RawRow(f.response, 0, 0)[c], 1e-5) << c;
  }
}

TEST_F(KServeTest, ModelConfigDescribesTheServedModel) {
  inference::ModelConfigRequest req;
  req.set_name("pair");
  inference::ModelConfigResponse r;
  grpc::Status s = Call(Channel(), &GRPCInferenceService::Stub::ModelConfig, req, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const inference::ModelConfig& c = r.config();
  EXPECT_EQ(c.name(), "pair");
  EXPECT_EQ(c.backend(), "torchscript");
  EXPECT_EQ(c.platform(), "torchscript");
  EXPECT_EQ(c.max_batch_size(), 2);
  ASSERT_EQ(c.input_size(), 1);
  EXPECT_EQ(c.input(0).name(), "clip");
  EXPECT_EQ(c.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(std::vector<int64_t>(c.input(0).dims().begin(), c.input(0).dims().end()),
            (std::vector<int64_t>{3, kT, kH, kW}));
  ASSERT_EQ(c.output_size(), 2);
  EXPECT_EQ(c.output(0).name(), "logits");
  EXPECT_EQ(c.output(1).name(), "probabilities");
  EXPECT_EQ(c.output(1).dims(0), kClasses);
  // No instance_group in its config.pbtxt: the default, one CPU instance.
  ASSERT_EQ(c.instance_group_size(), 1);
  EXPECT_EQ(c.instance_group(0).count(), 1);
  EXPECT_EQ(c.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  ASSERT_TRUE(c.has_dynamic_batching());
  EXPECT_EQ(c.dynamic_batching().default_queue_policy().max_queue_size(), 3u);
  EXPECT_EQ(c.dynamic_batching().priority_levels(), 3u);  // the default
  EXPECT_EQ(c.dynamic_batching().default_priority_level(), 2u);

  req.set_name("tiny");
  req.set_version("1");
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelConfig, req, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.config().max_batch_size(), 8);
  EXPECT_EQ(r.config().dynamic_batching().max_queue_delay_microseconds(), 1000000u);

  req.set_version("7");
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelConfig, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("'7'"), std::string::npos) << s.error_message();
  req.set_name("no-such-model");
  req.clear_version();
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelConfig, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("no-such-model"), std::string::npos) << s.error_message();
}

TEST_F(KServeTest, ModelStatisticsCountWhatRanOnBothProtocols) {
  const inference::ModelStatistics before = Stats(Channel(), "tiny");
  EXPECT_EQ(before.name(), "tiny");
  EXPECT_EQ(before.version(), "1");
  const uint64_t start_ms = NowMillis();

  // 3 + 5 clips: one execution of 8 (see BatchRequestsFillOneBatchTogether).
  auto a = InferAsync(Channel(), InferRequest("tiny", 3, 1));
  WaitForQueued("tiny", 1);
  // `a` waits in the queue from before `queued` until `b` completes its
  // batch: at least `gap`, whatever the machine's speed.
  const auto queued = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(milliseconds(300));
  const auto gap = std::chrono::steady_clock::now() - queued;
  auto b = InferAsync(Channel(), InferRequest("tiny", 5, 4));
  InferResult ra = a.get(), rb = b.get();
  ASSERT_TRUE(ra.status.ok()) << ra.status.error_message();
  ASSERT_TRUE(rb.status.ok()) << rb.status.error_message();
  ASSERT_EQ(Param(rb.response, "batch_size"), 8);

  // Counted as soon as the answers are in.
  inference::ModelStatistics s = Stats(Channel(), "tiny");
  const auto& i = s.inference_stats();
  const auto& i0 = before.inference_stats();
  EXPECT_EQ(s.execution_count(), before.execution_count() + 1);
  EXPECT_EQ(s.inference_count(), before.inference_count() + 8);
  EXPECT_EQ(i.success().count(), i0.success().count() + 2);
  EXPECT_EQ(i.fail().count(), i0.fail().count());
  for (const auto* d : {&i.queue(), &i.compute_input(), &i.compute_infer(), &i.compute_output()}) {
    EXPECT_GE(d->count(), 2u);
  }
  EXPECT_EQ(i.queue().count(), i0.queue().count() + 2);
  EXPECT_EQ(i.compute_infer().count(), i0.compute_infer().count() + 2);
  EXPECT_EQ(Executions(s, 8), Executions(before, 8) + 1);
  // Both requests were charged the batch's run; the first also waited for
  // the second, sent `gap` after it was seen queued.
  EXPECT_GT(i.compute_infer().ns(), i0.compute_infer().ns());
  EXPECT_GE(i.queue().ns() - i0.queue().ns(),
            static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(gap).count()));
  EXPECT_GE(i.success().ns() - i0.success().ns(),
            i.queue().ns() - i0.queue().ns() + i.compute_infer().ns() - i0.compute_infer().ns());
  EXPECT_GE(s.last_inference(), start_ms);
  EXPECT_LE(s.last_inference(), NowMillis());

  // Our own API counts in the same statistics; a refused request counts as
  // a failure; a request for an unknown model counts nowhere.
  EXPECT_EQ(ClassifyLogits(Channel(), "tiny", 5).size(), static_cast<size_t>(kClasses));
  ModelInferRequest bad = InferRequest("tiny", 1, 6);
  bad.mutable_inputs(0)->set_datatype("INT32");
  EXPECT_EQ(Infer(Channel(), bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Infer(Channel(), InferRequest("no-such-model", 1, 6)).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  const inference::ModelStatistics after = Stats(Channel(), "tiny");
  EXPECT_EQ(after.execution_count(), s.execution_count() + 1);
  EXPECT_EQ(after.inference_count(), s.inference_count() + 1);
  EXPECT_EQ(after.inference_stats().success().count(), i.success().count() + 1);
  EXPECT_EQ(after.inference_stats().fail().count(), i.fail().count() + 1);
  EXPECT_EQ(Executions(after, 1), Executions(s, 1) + 1);
}

TEST_F(KServeTest, ModelStatisticsCountAnExpiredRequestAsAFailure) {
  // "held" never forms a batch here: the request waits out its timeout.
  const inference::ModelStatistics before = Stats(Channel(), "held");
  ModelInferRequest hurried = InferRequest("held", 1, 2);
  (*hurried.mutable_parameters())["timeout"].set_int64_param(50000);
  EXPECT_EQ(Infer(Channel(), hurried).status.error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  const inference::ModelStatistics after = Stats(Channel(), "held");
  EXPECT_EQ(after.inference_stats().fail().count(),
            before.inference_stats().fail().count() + 1);
  // At least its 50 ms in the queue, counted as the failure's time.
  EXPECT_GE(after.inference_stats().fail().ns() - before.inference_stats().fail().ns(),
            50u * 1000 * 1000);
  // Nothing ran, nothing succeeded, and no queue time of a computed
  // request was recorded.
  EXPECT_EQ(after.inference_stats().success().count(),
            before.inference_stats().success().count());
  EXPECT_EQ(after.execution_count(), before.execution_count());
  EXPECT_EQ(after.inference_stats().queue().count(),
            before.inference_stats().queue().count());
}

TEST_F(KServeTest, ModelStatisticsSelectModelsByNameAndVersion) {
  inference::ModelStatisticsRequest req;
  inference::ModelStatisticsResponse r;
  grpc::Status s = Call(Channel(), &GRPCInferenceService::Stub::ModelStatistics, req, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(r.model_stats_size(), 3);  // every model, in name order
  EXPECT_EQ(r.model_stats(0).name(), "held");
  EXPECT_EQ(r.model_stats(1).name(), "pair");
  EXPECT_EQ(r.model_stats(2).name(), "tiny");
  for (const auto& m : r.model_stats()) EXPECT_EQ(m.version(), "1");

  req.set_version("1");
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelStatistics, req, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.model_stats_size(), 3);
  req.set_version("7");
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelStatistics, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("version '7'"), std::string::npos) << s.error_message();
  req.set_name("tiny");
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelStatistics, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("'7'"), std::string::npos) << s.error_message();
  req.set_name("no-such-model");
  req.clear_version();
  s = Call(Channel(), &GRPCInferenceService::Stub::ModelStatistics, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("no-such-model"), std::string::npos) << s.error_message();
}

// SIGTERM while requests wait: queued ones are answered, new ones get
// UNAVAILABLE, ServerReady and ModelReady turn false, the process exits 0.
// The four requests wait for a batch of eight that never fills; the drain
// is held open, whatever the machine's speed, by a video whose decoder
// reads from a source that never answers, until the test has looked.
TEST(KServeShutdownTest, DrainingRefusesNewRequestsAndAnswersQueuedOnes) {
  TempDir dir;
  SilentSource source;
  // Batches only of 8, or when the drain makes every queued request ready.
  WriteTinyModel(absl::StrCat(dir.path(), "/models"), "eight",
                 ModelConfigText("eight", 8, kT, kH, kW, kClasses,
                                 "dynamic_batching { max_queue_delay_microseconds: 3600000000 }"),
                 5);
  std::unique_ptr<ServerProcess> server = StartTinyVideoServer(
      dir, {"--video-uri-prefix", source.prefix(), "--video-uri-timeout-seconds", "600",
            "--decode-threads", "1"});
  ASSERT_NE(server, nullptr);
  auto stub = GRPCInferenceService::NewStub(server->Channel());
  {
    grpc::ClientContext context;
    inference::ServerReadyResponse ready;
    ASSERT_TRUE(stub->ServerReady(&context, {}, &ready).ok());
    EXPECT_TRUE(ready.ready());
  }
  std::future<CallResult> held =
      CallAsync(server->Channel(), UriRequest("tiny", source.prefix() + "a.mp4"));
  ASSERT_TRUE(source.Accept(std::chrono::seconds(60))) << "the decoder never read the source";
  std::vector<std::future<InferResult>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(InferAsync(server->Channel(), InferRequest("eight", 1, i)));
  ASSERT_EQ(server->WaitForMetric("clipserve_queue_depth{model=\"eight\",version=\"1\"}", 4), 4);
  server->Signal(SIGTERM);
  // Logged once new requests are refused.
  ASSERT_TRUE(server->WaitForLog("shutting down: refusing new requests", milliseconds(30000)));
  InferResult late =
      Infer(server->Channel(), InferRequest("eight", 1, 9));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << late.status.error_message();
  EXPECT_EQ(late.status.error_message(), "server is shutting down");
  {
    grpc::ClientContext context;
    inference::ServerReadyResponse ready;
    ASSERT_TRUE(stub->ServerReady(&context, {}, &ready).ok());
    EXPECT_FALSE(ready.ready());
  }
  {
    grpc::ClientContext context;
    inference::ModelReadyRequest req;
    req.set_name("eight");
    inference::ModelReadyResponse ready;
    ASSERT_TRUE(stub->ModelReady(&context, req, &ready).ok());
    EXPECT_FALSE(ready.ready());
  }
  // The decoders finish first (a video being decoded still joins its
  // model's queue), then every queued request is answered.
  source.Release();
  EXPECT_FALSE(held.get().status.ok());
  for (auto& c : calls) {
    InferResult r = c.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  EXPECT_EQ(server->Wait(), 0);
}

}  // namespace
}  // namespace clipserve::testing
