// End to end: the real clipserve binary on loopback, called through the real
// gRPC stubs.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <thread>
#include <utility>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "client/npy.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/calls.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;
using std::chrono::milliseconds;

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 10;

v1::ClassifyRequest Request(const std::string& model, uint64_t seed,
                            v1::DataType dtype = v1::UINT8) {
  v1::ClassifyRequest r;
  r.set_model_name(model);
  r.set_top_k(3);
  r.set_return_logits(true);
  *r.mutable_clip() = client::RandomClip(dtype, kT, kH, kW, seed);
  return r;
}

// The logits the model gives for `clip` when run directly with LibTorch.
std::vector<float> DirectLogits(const std::string& model_path,
                                const v1::Tensor& clip) {
  return DirectModelLogits(model_path, clip.data(), kT, kH, kW);
}

void ExpectLogitsNear(const v1::ClassifyResponse& r, const std::vector<float>& want) {
  ASSERT_EQ(r.logits_size(), static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(r.logits(i), want[i], 1e-4 * (1 + std::abs(want[i]))) << i;
  }
}

// One server for most tests, with a repository of small models.
class ClassifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new TempDir();
    std::vector<std::string> labels;
    for (int i = 0; i < kClasses; ++i) labels.push_back(absl::StrCat("action ", i));
    // Batches up to 8, waits up to 50 ms for them to fill.
    WriteTinyModel(repo_->path(), "tiny",
                   ModelConfigText("tiny", 8, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 50000 }"),
                   7, labels);
    // Batches only of 4 (the delay is an hour), a queue of 3: requests
    // wait until the test completes a batch, whatever the machine's speed.
    WriteTinyModel(repo_->path(), "held",
                   ModelConfigText("held", 4, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 3600000000"
                                   " max_queue_size: 3 }"),
                   8);
    // Server-side default deadline of 200 ms; its batches never form.
    WriteTinyModel(repo_->path(), "timeout",
                   ModelConfigText("timeout", 8, kT, kH, kW, kClasses,
                                   "dynamic_batching { max_queue_delay_microseconds: 3600000000"
                                   " default_timeout_microseconds: 200000 }"),
                   9);
    WriteScriptModel(repo_->path(), "failing",
                     ModelConfigText("failing", 8, kT, kH, kW, kClasses,
                                     "dynamic_batching { max_queue_delay_microseconds: 100000 }"),
                     FailingForward(), kClasses);
    // Videos up to 1 MiB: requests over 2 MiB are refused by gRPC.
    server_ = ServerProcess::Start({"--model-repository", repo_->path(),
                                    "--video-max-bytes", "1048576"})
                  .release();
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
  std::string ModelPath(const std::string& name) {
    return absl::StrCat(repo_->path(), "/", name, "/1/model.pt");
  }
  // The server still answers a good request correctly.
  void ExpectStillServing() {
    CallResult r = Call(Channel(), Request("tiny", 99));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.classes_size(), 3);
  }

  // Completes the batch of 4 of "held" with `clips` clips sent over KServe
  // (a batch mixes protocols); that request's answer.
  InferResult FillHeld(int clips) {
    InferResult r = Infer(Channel(), InferRequest("held", clips, kT, kH, kW, 70));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    return r;
  }

  static TempDir* repo_;
  static ServerProcess* server_;
};

TempDir* ClassifyTest::repo_ = nullptr;
ServerProcess* ClassifyTest::server_ = nullptr;

TEST_F(ClassifyTest, ResultEqualsTheModelRunDirectly) {
  const v1::ClassifyRequest req = Request("tiny", 1);
  CallResult r = Call(Channel(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.model_name(), "tiny");
  EXPECT_EQ(r.response.model_version(), "1");
  const std::vector<float> want = DirectLogits(ModelPath("tiny"), req.clip());
  ExpectLogitsNear(r.response, want);

  // Top-3 by logit, with labels and softmax probabilities.
  std::vector<int> order(kClasses);
  for (int i = 0; i < kClasses; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return want[a] > want[b]; });
  double sum = 0;
  for (float v : want) sum += std::exp(v - want[order[0]]);
  ASSERT_EQ(r.response.classes_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.response.classes(i).class_index(), order[i]);
    EXPECT_EQ(r.response.classes(i).label(), absl::StrCat("action ", order[i]));
    EXPECT_NEAR(r.response.classes(i).probability(),
                std::exp(want[order[i]] - want[order[0]]) / sum, 1e-5);
  }
  EXPECT_GE(r.response.timings().batch_size(), 1);
  EXPECT_GT(r.response.timings().compute_us(), 0);
}

TEST_F(ClassifyTest, Fp32ClipGivesTheSameAnswerAsItsUint8Frames) {
  const v1::ClassifyRequest u8 = Request("tiny", 2);
  // The same clip normalised on the client, channels first.
  v1::ClassifyRequest f32 = u8;
  v1::Tensor* t = f32.mutable_clip();
  t->set_dtype(v1::FP32);
  t->clear_shape();
  for (int d : {3, kT, kH, kW}) t->add_shape(d);
  std::string data(3 * kT * kH * kW * sizeof(float), '\0');
  const auto* frames = reinterpret_cast<const uint8_t*>(u8.clip().data().data());
  float* out = reinterpret_cast<float*>(data.data());
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < kT * kH * kW; ++i) out[c * kT * kH * kW + i] = frames[i * 3 + c] / 127.5f - 1;
  t->set_data(data);

  CallResult a = Call(Channel(), u8);
  CallResult b = Call(Channel(), f32);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  ExpectLogitsNear(b.response, std::vector<float>(a.response.logits().begin(),
                                                  a.response.logits().end()));
}

TEST_F(ClassifyTest, ConcurrentClientsShareBatchesAndEachGetsItsOwnAnswer) {
  constexpr int kClients = 16;
  std::vector<v1::ClassifyRequest> requests;
  std::vector<std::future<CallResult>> calls;
  for (int i = 0; i < kClients; ++i) requests.push_back(Request("tiny", 100 + i));
  for (int i = 0; i < kClients; ++i) calls.push_back(CallAsync(Channel(), requests[i]));
  int largest = 0;
  for (int i = 0; i < kClients; ++i) {
    CallResult r = calls[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    largest = std::max(largest, r.response.timings().batch_size());
    EXPECT_LE(r.response.timings().batch_size(), 8);
    ExpectLogitsNear(r.response, DirectLogits(ModelPath("tiny"), requests[i].clip()));
  }
  EXPECT_GT(largest, 1) << "16 concurrent clients never shared a batch";
}

TEST_F(ClassifyTest, FullQueueRefusesWithResourceExhaustedAndACancelledRequestFreesItsSlot) {
  // "held" queues at most 3, which its capacity gauge says.
  const std::string held = "model=\"held\",version=\"1\"";
  const std::string depth = "clipserve_queue_depth{" + held + "}";
  const std::string refused =
      "clipserve_requests_total{code=\"RESOURCE_EXHAUSTED\"," + held + "}";
  const std::string cancelled = "clipserve_requests_total{code=\"CANCELLED\"," + held + "}";
  const std::string before = server_->ScrapeMetrics();
  EXPECT_EQ(MetricValue(before, "clipserve_queue_capacity{" + held + "}"), 3);
  const double refused_before = std::max(0.0, MetricValue(before, refused));
  const double cancelled_before = std::max(0.0, MetricValue(before, cancelled));
  auto a = CallAsync(Channel(), Request("held", 1));
  auto b = CallAsync(Channel(), Request("held", 2));
  // The third, on a context the test cancels below.
  auto stub = v1::VideoClassifier::NewStub(Channel());
  grpc::ClientContext context;
  v1::ClassifyResponse c_response;
  const v1::ClassifyRequest c_request = Request("held", 3);
  auto c = std::async(std::launch::async, [&] {
    return stub->Classify(&context, c_request, &c_response);
  });
  // All three queued (the server's gauge says so): the fourth is refused at
  // once, counted, and its message names the limit.
  ASSERT_EQ(server_->WaitForMetric(depth, 3), 3);
  CallResult d = Call(Channel(), Request("held", 4));
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(d.status.error_message().find("max_queue_size 3"), std::string::npos)
      << d.status.error_message();
  EXPECT_EQ(MetricValue(server_->ScrapeMetrics(), refused), refused_before + 1);

  // The client gives up on the third: it leaves the queue at once (though
  // no batch would reach it for an hour), counted as CANCELLED.
  context.TryCancel();
  EXPECT_EQ(c.get().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(server_->WaitForMetric(cancelled, cancelled_before + 1), cancelled_before + 1);
  EXPECT_EQ(server_->WaitForMetricAtMost(depth, 2), 2);
  // Its slot is free: two clips more complete the batch of the queued two.
  InferResult fill = FillHeld(2);
  EXPECT_EQ(Param(fill.response, "batch_size"), 4);
  CallResult ra = a.get(), rb = b.get();
  ASSERT_TRUE(ra.status.ok()) << ra.status.error_message();
  ASSERT_TRUE(rb.status.ok()) << rb.status.error_message();
  EXPECT_EQ(ra.response.timings().batch_size(), 4);
  EXPECT_EQ(rb.response.timings().batch_size(), 4);
  ExpectStillServing();
}

TEST_F(ClassifyTest, MetricsShowQueuedAndInflightRequestsThenTheirBatch) {
  const std::string held = "model=\"held\",version=\"1\"";
  const std::string before = server_->ScrapeMetrics();
  const double batches_before =
      MetricValue(before, "clipserve_batch_size_count{" + held + "}");
  const double twos_before =
      MetricValue(before, "clipserve_batch_size_bucket{" + held + ",le=\"2\"}");
  const double fours_before =
      MetricValue(before, "clipserve_batch_size_bucket{" + held + ",le=\"4\"}");
  const double queued_seconds_before =
      MetricValue(before, "clipserve_queue_duration_seconds_sum{" + held + "}");
  ASSERT_GE(batches_before, 0);
  ASSERT_GE(twos_before, 0) << before;
  auto a = CallAsync(Channel(), Request("held", 11));
  auto b = CallAsync(Channel(), Request("held", 12));
  // Both wait for their batch to fill: seen queued, then everything else is
  // read while they still wait.
  ASSERT_EQ(server_->WaitForMetric("clipserve_queue_depth{" + held + "}", 2), 2);
  const auto queued = std::chrono::steady_clock::now();
  std::string scrape = server_->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, "clipserve_queue_depth{" + held + "}"), 2) << scrape;
  EXPECT_EQ(MetricValue(scrape, "clipserve_inflight_requests{" + held + "}"), 2);
  EXPECT_EQ(MetricValue(scrape, "clipserve_model_ready{" + held + "}"), 1);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - queued).count();
  FillHeld(2);
  ASSERT_TRUE(a.get().status.ok());
  ASSERT_TRUE(b.get().status.ok());
  scrape = server_->ScrapeMetrics();
  EXPECT_EQ(MetricValue(scrape, "clipserve_queue_depth{" + held + "}"), 0);
  EXPECT_EQ(MetricValue(scrape, "clipserve_inflight_requests{" + held + "}"), 0);
  // One more batch, of four clips: in the bucket le="4" but not le="2".
  EXPECT_EQ(MetricValue(scrape, "clipserve_batch_size_count{" + held + "}"),
            batches_before + 1);
  EXPECT_EQ(MetricValue(scrape, "clipserve_batch_size_bucket{" + held + ",le=\"2\"}"),
            twos_before);
  EXPECT_EQ(MetricValue(scrape, "clipserve_batch_size_bucket{" + held + ",le=\"4\"}"),
            fours_before + 1);
  // Each of the two waited at least while the test read the metrics.
  EXPECT_GE(MetricValue(scrape, "clipserve_queue_duration_seconds_sum{" + held + "}") -
                queued_seconds_before,
            2 * waited);
  EXPECT_GT(MetricValue(scrape, "clipserve_model_load_seconds{" + held + "}"), 0);
  EXPECT_GE(MetricValue(scrape, "process_resident_memory_bytes"), 1e6);
  EXPECT_GE(MetricValue(scrape, "process_open_fds"), 3);
}

TEST_F(ClassifyTest, ServerSideDefaultTimeoutAnswersDeadlineExceeded) {
  // No client deadline: the model's default_timeout (200 ms) ends the
  // request in the server's queue (its batch would not form for an hour),
  // as the message says.
  auto stub = v1::VideoClassifier::NewStub(Channel());
  grpc::ClientContext context;
  v1::ClassifyResponse response;
  const grpc::Status s = stub->Classify(&context, Request("timeout", 1), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_NE(s.error_message().find("in the queue"), std::string::npos) << s.error_message();
  ExpectStillServing();
}

TEST_F(ClassifyTest, ExpiredRequestNeverTakesABatchSlot) {
  const std::string held = "model=\"held\",version=\"1\"";
  const std::string expired_count =
      "clipserve_requests_total{code=\"DEADLINE_EXCEEDED\"," + held + "}";
  const std::string before = server_->ScrapeMetrics();
  const double batches_before = MetricValue(before, "clipserve_batch_size_count{" + held + "}");
  const double expired_before = std::max(0.0, MetricValue(before, expired_count));
  // A client deadline of 100 ms on a model whose batch cannot form.
  CallResult expired = Call(Channel(), Request("held", 4), milliseconds(100));
  EXPECT_EQ(expired.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server's deadline counts from when the call reached it, so it may
  // come a little after the client's: wait until the server has dropped it.
  ASSERT_EQ(server_->WaitForMetric(expired_count, expired_before + 1), expired_before + 1);
  // A full batch after it runs alone: had the expired request stayed, it
  // would have gone first, in a batch of its own.
  InferResult next = FillHeld(4);
  EXPECT_EQ(Param(next.response, "batch_size"), 4);
  EXPECT_EQ(MetricValue(server_->ScrapeMetrics(), "clipserve_batch_size_count{" + held + "}"),
            batches_before + 1);
}

TEST_F(ClassifyTest, BadRequestsGetPreciseErrorsAndTheServerKeepsServing) {
  struct Case {
    std::string what;
    v1::ClassifyRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.mutable_clip()->set_dtype(v1::DATA_TYPE_UNSPECIFIED);
    cases.push_back({"no dtype", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "clip.dtype must be UINT8 or FP32"});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.set_priority(4);
    cases.push_back({"priority", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "priority 4 is out of range: model 'tiny' has levels 1 "
                     "(most urgent) to 3"});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.mutable_clip()->mutable_data()->pop_back();
    cases.push_back({"short data", r, grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("clip.data has ", kT * kH * kW * 3 - 1, " bytes")});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.mutable_clip()->set_shape(0, 0);
    r.mutable_clip()->clear_data();
    cases.push_back({"empty clip", r, grpc::StatusCode::INVALID_ARGUMENT, "clip is empty"});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.clear_clip();
    cases.push_back({"no clip", r, grpc::StatusCode::INVALID_ARGUMENT, "request has no clip"});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    *r.mutable_clip() = client::RandomClip(v1::UINT8, kT + 1, kH, kW, 1);
    cases.push_back({"wrong frames", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "clip is 5 x 16 x 16 (T x H x W); model 'tiny' takes 4 x 16 x 16"});
  }
  {
    v1::ClassifyRequest r = Request("tiny", 1, v1::FP32);
    r.mutable_clip()->set_dtype(v1::UINT8);
    cases.push_back({"fp32 bytes labelled uint8", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "channels"});
  }
  cases.push_back({"unknown model", Request("nope", 1), grpc::StatusCode::NOT_FOUND,
                   "unknown model 'nope'"});
  {
    v1::ClassifyRequest r = Request("tiny", 1);
    r.set_model_version("7");
    cases.push_back({"unknown version", r, grpc::StatusCode::NOT_FOUND,
                     "model 'tiny' has no version '7'"});
  }
  {
    // Past the server's message limit (largest clip or video + 1 MiB):
    // refused by gRPC before any of our code runs.
    v1::ClassifyRequest r = Request("tiny", 1);
    r.mutable_clip()->mutable_data()->resize(3 << 20);
    cases.push_back({"oversized message", r, grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "larger than max"});
  }
  for (const Case& c : cases) {
    CallResult r = Call(Channel(), c.request);
    EXPECT_EQ(r.status.error_code(), c.code) << c.what << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.message), std::string::npos)
        << c.what << ": " << r.status.error_message();
    ExpectStillServing();
  }
}

TEST_F(ClassifyTest, ModelErrorFailsOnlyItsOwnBatch) {
  v1::ClassifyRequest bad = Request("failing", 1);
  std::fill(bad.mutable_clip()->mutable_data()->begin(),
            bad.mutable_clip()->mutable_data()->end(), '\xff');
  v1::ClassifyRequest good = Request("failing", 2);
  for (char& c : *good.mutable_clip()->mutable_data()) c = static_cast<char>(static_cast<uint8_t>(c) % 200);

  CallResult r = Call(Channel(), bad);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(r.status.error_message().find("boom: saturated pixels"), std::string::npos)
      << r.status.error_message();
  CallResult ok = Call(Channel(), good);
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  ExpectStillServing();
}

TEST_F(ClassifyTest, HealthIsServingOverallAndPerModel) {
  grpc::Status s;
  EXPECT_EQ(Health(Channel(), "", &s), HealthCheckResponse::SERVING);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(Health(Channel(), "tiny", &s), HealthCheckResponse::SERVING);
  EXPECT_TRUE(s.ok());
  Health(Channel(), "no-such-model", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClassifyTest, ReflectionListsTheService) {
  // grpc.reflection.v1alpha.ServerReflectionRequest{list_services: ""}:
  // field 7, length-delimited, empty.
  const std::string request("\x3a\x00", 2);
  grpc::GenericStub stub(Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_NE(bytes.find("clipserve.v1.VideoClassifier"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
  call->WritesDone(reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// SIGTERM with requests queued: every one is answered and the process exits
// 0. (What the server says while it drains, and new requests
// refused then, are ShutdownTest.DrainFinishesWaitingVideosAndCutsOffOpenCalls…
// and KServeShutdownTest, which hold the drain open: this one's drain may
// end before a client could look.)
TEST(ShutdownTest, SigtermAnswersEveryRequestInFlight) {
  TempDir repo;
  // Batches of 16 after an hour: the 8 requests wait until the signal,
  // whatever the machine's speed; the drain then runs them, together.
  WriteTinyModel(repo.path(), "held",
                 ModelConfigText("held", 16, kT, kH, kW, kClasses,
                                 "dynamic_batching { max_queue_delay_microseconds: 3600000000 }"),
                 5);
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start({"--model-repository", repo.path()});
  ASSERT_NE(server, nullptr);
  std::vector<std::future<CallResult>> calls;
  for (int i = 0; i < 8; ++i) calls.push_back(CallAsync(server->Channel(), Request("held", i)));
  const std::string depth = "clipserve_queue_depth{model=\"held\",version=\"1\"}";
  ASSERT_EQ(server->WaitForMetric(depth, 8), 8) << "the server never queued all 8 requests";

  server->Signal(SIGTERM);
  for (auto& c : calls) {
    CallResult r = c.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.response.classes_size(), 3);
    EXPECT_EQ(r.response.timings().batch_size(), 8);
  }
  EXPECT_EQ(server->Wait(), 0);
  EXPECT_NE(server->Log().find("all queued requests answered"), std::string::npos);
}

TEST(StartupTest, BadConfigStopsStartupNamingFileAndField) {
  TempDir repo;
  WriteTinyModel(repo.path(), "m",
                 ModelConfigText("m", 0, kT, kH, kW, kClasses, ""), 1);
  ServerProcess::Output out = ServerProcess::RunCommand(
      absl::StrCat(CLIPSERVE_BINARY, " --grpc-port 0 --model-repository ", repo.path()));
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.text.find(absl::StrCat(repo.path(), "/m/config.pbtxt: max_batch_size: "
                                                    "must be at least 1, got 0")),
            std::string::npos)
      << out.text;
}

TEST(StartupTest, GpuInstancesWithoutAGpuStopStartupClearly) {
  TempDir repo;
  WriteTinyModel(repo.path(), "m",
                 ModelConfigText("m", 4, kT, kH, kW, kClasses,
                                 "instance_group { count: 2 kind: KIND_GPU }"),
                 1);
  // No GPU visible, on any machine.
  ServerProcess::Output out = ServerProcess::RunCommand(
      absl::StrCat("CUDA_VISIBLE_DEVICES= ", CLIPSERVE_BINARY,
                   " --grpc-port 0 --model-repository ", repo.path()));
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.text.find("model 'm': instance_group[0] is KIND_GPU but no CUDA "
                          "device is visible"),
            std::string::npos)
      << out.text;
}

TEST(StartupTest, UsageErrorsAndHelp) {
  ServerProcess::Output help = ServerProcess::RunCommand(absl::StrCat(CLIPSERVE_BINARY, " --help"));
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.text.find("--model-repository"), std::string::npos);
  ServerProcess::Output bad =
      ServerProcess::RunCommand(absl::StrCat(CLIPSERVE_BINARY, " --grpc-port x"));
  EXPECT_EQ(bad.exit_code, 64);
  EXPECT_NE(bad.text.find("--grpc-port must be a number"), std::string::npos) << bad.text;
  for (const auto& [flags, message] :
       {std::pair<std::string, std::string>{" --decode-device gpu",
                                            "--decode-device must be cpu or cuda"},
        {" --allow-tf32 yes", "--allow-tf32 must be true or false"}}) {
    ServerProcess::Output out =
        ServerProcess::RunCommand(absl::StrCat(CLIPSERVE_BINARY, flags));
    EXPECT_EQ(out.exit_code, 64) << flags;
    EXPECT_NE(out.text.find(message), std::string::npos) << out.text;
  }
  ServerProcess::Output missing =
      ServerProcess::RunCommand(absl::StrCat(CLIPSERVE_BINARY, " --model-repository /nonexistent"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.text.find("/nonexistent is not a directory"), std::string::npos)
      << missing.text;
}

TEST_F(ClassifyTest, CommandLineClientPrintsTopKAndExitsWithTheStatusCode) {
  const std::string base = absl::StrCat(CLIPSERVE_CLIENT_BINARY, " --server ",
                                        server_->address(), " --model tiny");
  ServerProcess::Output ok = ServerProcess::RunCommand(
      absl::StrCat(base, " --frames 4 --height 16 --width 16 --top-k 2"));
  EXPECT_EQ(ok.exit_code, 0) << ok.text;
  EXPECT_NE(ok.text.find("model tiny version 1"), std::string::npos) << ok.text;
  EXPECT_NE(ok.text.find("action "), std::string::npos) << ok.text;
  EXPECT_NE(ok.text.find("batch size"), std::string::npos) << ok.text;

  // A .npy clip: the same answer as the same clip sent directly.
  const v1::ClassifyRequest req = Request("tiny", 5);
  client::NpyArray npy{"|u1", {kT, kH, kW, 3}, req.clip().data()};
  const std::string npy_path = absl::StrCat(repo_->path(), "/clip.npy");
  std::ofstream(npy_path, std::ios::binary) << client::SerializeNpy(npy);
  ServerProcess::Output from_file =
      ServerProcess::RunCommand(absl::StrCat(base, " --top-k 1 ", npy_path));
  EXPECT_EQ(from_file.exit_code, 0) << from_file.text;
  CallResult direct = Call(Channel(), req);
  ASSERT_TRUE(direct.status.ok());
  EXPECT_NE(from_file.text.find(absl::StrCat(
                "class ", direct.response.classes(0).class_index(), " ")),
            std::string::npos)
      << from_file.text;

  ServerProcess::Output wrong = ServerProcess::RunCommand(
      absl::StrCat(CLIPSERVE_CLIENT_BINARY, " --server ", server_->address(),
                   " --model nope --frames 4 --height 16 --width 16"));
  EXPECT_EQ(wrong.exit_code, 5) << wrong.text;  // NOT_FOUND
  EXPECT_NE(wrong.text.find("NOT_FOUND"), std::string::npos) << wrong.text;

  ServerProcess::Output health = ServerProcess::RunCommand(
      absl::StrCat(CLIPSERVE_CLIENT_BINARY, " --server ", server_->address(),
                   " health --service tiny"));
  EXPECT_EQ(health.exit_code, 0) << health.text;
  EXPECT_NE(health.text.find("SERVING"), std::string::npos) << health.text;
}

}  // namespace
}  // namespace clipserve::testing
