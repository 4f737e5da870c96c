// clipserve-perf's parts without the real server: quantiles, the Poisson
// arrivals, KServe request building and response parsing, the JSON and CSV
// reports, and the load engine (RunStep) against in-process fake servers of
// both protocols.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "client/clips.h"
#include "client/perf.h"
#include "client/perf_report.h"
#include "client/perf_target.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"

namespace clipserve::client {
namespace {

using std::chrono::milliseconds;

TEST(QuantileTest, NearestRank) {
  EXPECT_EQ(Quantile({}, 0.5), 0);
  EXPECT_EQ(Quantile({7}, 0.0), 7);
  EXPECT_EQ(Quantile({7}, 0.99), 7);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Quantile(v, 0.0), 1);
  EXPECT_EQ(Quantile(v, 0.5), 50);
  EXPECT_EQ(Quantile(v, 0.9), 90);
  EXPECT_EQ(Quantile(v, 0.95), 95);
  EXPECT_EQ(Quantile(v, 0.99), 99);
  EXPECT_EQ(Quantile(v, 1.0), 100);
  EXPECT_EQ(Quantile({1, 2, 3}, 0.5), 2);
  EXPECT_EQ(Quantile({1, 2, 3, 4}, 0.5), 2);
}

TEST(PoissonArrivalsTest, GapsAreExponentialWithMeanOneOverRate) {
  PoissonArrivals arrivals(20.0, 42);
  const int n = 100000;
  double sum = 0, sum_sq = 0, min = 1e9;
  for (int i = 0; i < n; ++i) {
    const double g = arrivals.NextGapSeconds();
    sum += g;
    sum_sq += g * g;
    min = std::min(min, g);
  }
  const double mean = sum / n;
  const double sd = std::sqrt(sum_sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.05, 0.05 * 0.02);
  // Exponential: standard deviation equals the mean.
  EXPECT_NEAR(sd / mean, 1.0, 0.03);
  EXPECT_GE(min, 0);
}

TEST(PoissonArrivalsTest, SeedReproducesTheSequence) {
  PoissonArrivals a(5, 7), b(5, 7), c(5, 8);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const double x = a.NextGapSeconds();
    EXPECT_EQ(x, b.NextGapSeconds());
    differs |= x != c.NextGapSeconds();
  }
  EXPECT_TRUE(differs);
}

std::vector<v1::Tensor> Clips(v1::DataType dtype, int n) {
  std::vector<v1::Tensor> clips;
  for (int i = 0; i < n; ++i) clips.push_back(RandomClip(dtype, 2, 3, 4, 1 + i));
  return clips;
}

TEST(KServeRequestTest, RawUint8StacksTheClips) {
  const auto clips = Clips(v1::UINT8, 3);
  auto r = BuildKServeRequest("m", "2", clips, KServeContents::kRaw, {"logits"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model_name(), "m");
  EXPECT_EQ(r->model_version(), "2");
  ASSERT_EQ(r->inputs_size(), 1);
  EXPECT_EQ(r->inputs(0).name(), "clip");
  EXPECT_EQ(r->inputs(0).datatype(), "UINT8");
  EXPECT_EQ(std::vector<int64_t>(r->inputs(0).shape().begin(), r->inputs(0).shape().end()),
            (std::vector<int64_t>{3, 2, 3, 4, 3}));
  EXPECT_FALSE(r->inputs(0).has_contents());
  ASSERT_EQ(r->raw_input_contents_size(), 1);
  EXPECT_EQ(r->raw_input_contents(0),
            clips[0].data() + clips[1].data() + clips[2].data());
  ASSERT_EQ(r->outputs_size(), 1);
  EXPECT_EQ(r->outputs(0).name(), "logits");
}

TEST(KServeRequestTest, TypedUint8UsesUintContents) {
  const auto clips = Clips(v1::UINT8, 2);
  auto r = BuildKServeRequest("m", "", clips, KServeContents::kTyped, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->raw_input_contents_size(), 0);
  EXPECT_EQ(r->outputs_size(), 0);
  const auto& values = r->inputs(0).contents().uint_contents();
  const std::string all = clips[0].data() + clips[1].data();
  ASSERT_EQ(values.size(), static_cast<int>(all.size()));
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(values[static_cast<int>(i)], static_cast<unsigned char>(all[i])) << i;
  }
  EXPECT_EQ(r->inputs(0).contents().fp32_contents_size(), 0);
}

TEST(KServeRequestTest, Fp32RawAndTyped) {
  const auto clips = Clips(v1::FP32, 2);
  auto raw = BuildKServeRequest("m", "", clips, KServeContents::kRaw, {});
  auto typed = BuildKServeRequest("m", "", clips, KServeContents::kTyped, {});
  ASSERT_TRUE(raw.ok() && typed.ok());
  for (const auto* r : {&*raw, &*typed}) {
    EXPECT_EQ(r->inputs(0).datatype(), "FP32");
    EXPECT_EQ(std::vector<int64_t>(r->inputs(0).shape().begin(), r->inputs(0).shape().end()),
              (std::vector<int64_t>{2, 3, 2, 3, 4}));
  }
  const std::string all = clips[0].data() + clips[1].data();
  EXPECT_EQ(raw->raw_input_contents(0), all);
  const auto& values = typed->inputs(0).contents().fp32_contents();
  ASSERT_EQ(values.size() * sizeof(float), all.size());
  EXPECT_EQ(std::memcmp(values.data(), all.data(), all.size()), 0);
}

TEST(KServeRequestTest, RejectsNoClipsAndMixedClips) {
  EXPECT_FALSE(BuildKServeRequest("m", "", {}, KServeContents::kRaw, {}).ok());
  std::vector<v1::Tensor> mixed = Clips(v1::UINT8, 1);
  mixed.push_back(RandomClip(v1::UINT8, 2, 3, 5, 1));
  EXPECT_FALSE(BuildKServeRequest("m", "", mixed, KServeContents::kRaw, {}).ok());
  mixed = Clips(v1::UINT8, 1);
  mixed.push_back(Clips(v1::FP32, 1)[0]);
  EXPECT_FALSE(BuildKServeRequest("m", "", mixed, KServeContents::kTyped, {}).ok());
}

TEST(KServeRequestTest, RejectsAnUnspecifiedDtype) {
  std::vector<v1::Tensor> clips = Clips(v1::UINT8, 2);
  for (v1::Tensor& clip : clips) clip.set_dtype(v1::DATA_TYPE_UNSPECIFIED);
  const auto r = BuildKServeRequest("m", "", clips, KServeContents::kRaw, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KServeSplitTest, ReadsInt64AndUint64Parameters) {
  inference::ModelInferResponse response;
  EXPECT_FALSE(KServeSplit(response).present);
  (*response.mutable_parameters())["queue_us"].set_int64_param(12);
  (*response.mutable_parameters())["compute_us"].set_uint64_param(34);
  (*response.mutable_parameters())["batch_size"].set_int64_param(5);
  (*response.mutable_parameters())["other"].set_string_param("x");
  const ServerSplit s = KServeSplit(response);
  EXPECT_TRUE(s.present);
  EXPECT_EQ(s.queue_us, 12);
  EXPECT_EQ(s.compute_us, 34);
  EXPECT_EQ(s.batch_size, 5);
  EXPECT_EQ(s.decode_us, 0);
}

TEST(KServeSplitTest, IgnoresParametersOfAnotherType) {
  inference::ModelInferResponse response;
  (*response.mutable_parameters())["queue_us"].set_string_param("12");
  (*response.mutable_parameters())["compute_us"].set_bool_param(true);
  EXPECT_FALSE(KServeSplit(response).present);
  (*response.mutable_parameters())["batch_size"].set_uint64_param(4);
  const ServerSplit s = KServeSplit(response);
  EXPECT_TRUE(s.present);
  EXPECT_EQ(s.queue_us, 0);
  EXPECT_EQ(s.compute_us, 0);
  EXPECT_EQ(s.batch_size, 4);
}

TEST(KServeClipDimsTest, ReadsEitherLayout) {
  inference::ModelMetadataResponse f32_only;
  auto* f32 = f32_only.add_inputs();
  f32->set_name("clip");
  f32->set_datatype("FP32");
  for (int64_t d : {-1, 3, 8, 64, -1}) f32->add_shape(d);
  EXPECT_EQ(KServeClipDims(f32_only), (std::vector<int64_t>{8, 64, -1}));

  inference::ModelMetadataResponse u8_only;
  auto* u8 = u8_only.add_inputs();
  u8->set_name("clip");
  u8->set_datatype("UINT8");
  for (int64_t d : {-1, 16, 112, 96, 3}) u8->add_shape(d);
  EXPECT_EQ(KServeClipDims(u8_only), (std::vector<int64_t>{16, 112, 96}));

  inference::ModelMetadataResponse fp16;
  auto* half = fp16.add_inputs();
  half->set_name("clip");
  half->set_datatype("FP16");
  for (int64_t d : {-1, 3, 8, 64, 64}) half->add_shape(d);
  EXPECT_FALSE(KServeClipDims(fp16).has_value());
}

TEST(KServeClipDimsTest, SkipsOtherNamesAndRanks) {
  inference::ModelMetadataResponse m;
  auto* other = m.add_inputs();
  other->set_name("frames");
  other->set_datatype("FP32");
  for (int64_t d : {-1, 3, 1, 2, 3}) other->add_shape(d);
  auto* rank4 = m.add_inputs();
  rank4->set_name("clip");
  rank4->set_datatype("FP32");
  for (int64_t d : {3, 16, 112, 112}) rank4->add_shape(d);
  EXPECT_FALSE(KServeClipDims(m).has_value());
  auto* clip = m.add_inputs();
  clip->set_name("clip");
  clip->set_datatype("FP32");
  for (int64_t d : {-1, 3, 4, 5, 6}) clip->add_shape(d);
  EXPECT_EQ(KServeClipDims(m), (std::vector<int64_t>{4, 5, 6}));
}

TEST(StatusCodeNameTest, NamesTheCanonicalCodesAndOnlyThose) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(5), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(-1), "UNKNOWN");
  EXPECT_EQ(StatusCodeName(17), "UNKNOWN");
}

StepResult SampleStep(LoadMode mode) {
  StepResult s;
  s.mode = mode;
  s.concurrency = 4;
  s.offered_rate = 12.5;
  s.seconds = 2;
  s.sent = 10;
  s.ok = 9;
  s.errors = {{"NOT_FOUND", 1}};
  s.p50_us = 1000;
  s.p99_us = 2500.5;
  s.batch_sizes = {{1, 3}, {8, 6}};
  s.started = std::chrono::system_clock::time_point(milliseconds(1700000000123));
  return s;
}

TEST(ReportTest, JsonIsValidAndCarriesTheRunAndItsSteps) {
  RunInfo run;
  run.server = "host:1";
  run.model = "tiny \"b8\"";
  run.protocol = "kserve";
  run.payload = "tensor";
  run.mode = LoadMode::kRequestRate;
  run.dtype = "uint8";
  run.shape = {3, 16, 112, 112, 3};
  run.batch = 3;
  run.kserve_contents = "raw";
  const std::string json = ReportJson(
      run, {SampleStep(LoadMode::kRequestRate), SampleStep(LoadMode::kRequestRate)});
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("model").string_value(), "tiny \"b8\"");
  EXPECT_EQ(f.at("protocol").string_value(), "kserve");
  EXPECT_EQ(f.at("mode").string_value(), "request-rate");
  EXPECT_EQ(f.at("video").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(f.at("shape").list_value().values_size(), 5);
  const auto& steps = f.at("steps").list_value();
  ASSERT_EQ(steps.values_size(), 2);
  const auto& s = steps.values(1).struct_value().fields();
  EXPECT_EQ(s.at("index").number_value(), 1);
  EXPECT_EQ(s.at("concurrency").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(s.at("offered_rate").number_value(), 12.5);
  EXPECT_EQ(s.at("p99_us").number_value(), 2500.5);
  EXPECT_EQ(s.at("errors").struct_value().fields().at("NOT_FOUND").number_value(), 1);
  EXPECT_EQ(s.at("error_count").number_value(), 1);
  EXPECT_EQ(s.at("batch_sizes").struct_value().fields().at("8").number_value(), 6);
  EXPECT_EQ(s.at("started").string_value(), "2023-11-14T22:13:20.123Z");
}

TEST(ReportTest, CsvHasAHeaderAndOneRowPerStep) {
  RunInfo run;
  run.model = "a,b";
  const std::string csv = ReportCsv(
      run, {SampleStep(LoadMode::kConcurrency), SampleStep(LoadMode::kConcurrency),
            SampleStep(LoadMode::kConcurrency)});
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  const size_t columns = std::count(lines[0].begin(), lines[0].end(), ',');
  for (const std::string& line : lines) {
    // The quoted model name holds one comma more.
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), &line == &lines[0] ? columns : columns + 1)
        << line;
  }
  EXPECT_NE(lines[1].find(",\"a,b\","), std::string::npos);
  EXPECT_NE(lines[1].find("1:3;8:6,NOT_FOUND:1"), std::string::npos);
}

TEST(ReportTest, Helpers) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(JsonNumber(1.5), "1.5");
  EXPECT_EQ(JsonNumber(3), "3");
  EXPECT_EQ(JsonNumber(std::nan("")), "null");
  EXPECT_EQ(JsonNumber(INFINITY), "null");
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(Iso8601(std::chrono::system_clock::time_point(milliseconds(5))),
            "1970-01-01T00:00:00.005Z");
}

// ---- the engine against fake servers ---------------------------------------

// Answers after `delay_ms` (or with `code`), reporting a fixed split.
class FakeClassifier final : public v1::VideoClassifier::Service {
 public:
  std::atomic<int> delay_ms{5};
  std::atomic<int> code{0};
  std::atomic<int> calls{0};

  grpc::Status Classify(grpc::ServerContext* context, const v1::ClassifyRequest*,
                        v1::ClassifyResponse* response) override {
    ++calls;
    const auto until = std::chrono::steady_clock::now() + milliseconds(delay_ms.load());
    while (std::chrono::steady_clock::now() < until) {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      std::this_thread::sleep_for(milliseconds(1));
    }
    if (code != 0) return grpc::Status(static_cast<grpc::StatusCode>(code.load()), "fake");
    response->mutable_timings()->set_queue_us(100);
    response->mutable_timings()->set_compute_us(200);
    response->mutable_timings()->set_batch_size(1);
    return grpc::Status::OK;
  }
};

// ModelInfer: the batch is the request's first dimension.
class FakeInference final : public inference::GRPCInferenceService::Service {
 public:
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override {
    if (request->inputs_size() != 1 || request->inputs(0).shape_size() != 5) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "fake wants one 5-D input");
    }
    std::this_thread::sleep_for(milliseconds(2));
    (*response->mutable_parameters())["queue_us"].set_int64_param(10);
    (*response->mutable_parameters())["compute_us"].set_int64_param(30);
    (*response->mutable_parameters())["batch_size"].set_int64_param(request->inputs(0).shape(0));
    return grpc::Status::OK;
  }
};

class FakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&classifier_);
    builder.RegisterService(&inference_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    v1::ClassifyRequest request;
    *request.mutable_clip() = RandomClip(v1::UINT8, 2, 8, 8, 1);
    target_ = MakeClipserveTarget(channel_, request);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
  }

  static void ExpectOrdered(const StepResult& r) {
    EXPECT_LE(r.min_us, r.p50_us);
    EXPECT_LE(r.p50_us, r.p90_us);
    EXPECT_LE(r.p90_us, r.p95_us);
    EXPECT_LE(r.p95_us, r.p99_us);
    EXPECT_LE(r.p99_us, r.max_us);
  }

  FakeClassifier classifier_;
  FakeInference inference_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<LoadTarget> target_;
};

TEST_F(FakeServerTest, ClosedLoopCountsTheWindowsRequests) {
  classifier_.delay_ms = 20;
  StepOptions o;
  o.mode = LoadMode::kConcurrency;
  o.concurrency = 2;
  o.warmup = milliseconds(100);
  o.window = milliseconds(600);
  const StepResult r = RunStep(*target_, o);
  // At most 2 calls per 20 ms: 60 in 600 ms; generous below for a busy host.
  EXPECT_GT(r.ok, 5);
  EXPECT_LE(r.ok, 62);
  EXPECT_EQ(r.sent, r.ok);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.unfinished, 0);
  EXPECT_LE(r.in_flight_at_window_end, 2);
  EXPECT_EQ(r.split_count, r.ok);
  EXPECT_EQ(r.mean_queue_us, 100);
  EXPECT_EQ(r.mean_compute_us, 200);
  EXPECT_EQ(r.batch_sizes, (std::map<int64_t, int64_t>{{1, r.ok}}));
  EXPECT_GE(r.min_us, 19000);
  ExpectOrdered(r);
  EXPECT_NEAR(r.requests_per_second, r.ok / 0.6, 2 / 0.6 + 1e-9);
  EXPECT_EQ(r.clips_per_second, r.requests_per_second);
}

TEST_F(FakeServerTest, OpenLoopSendsAtTheOfferedRate) {
  classifier_.delay_ms = 2;
  StepOptions o;
  o.mode = LoadMode::kRequestRate;
  o.request_rate = 100;
  o.seed = 3;
  o.warmup = milliseconds(200);
  o.window = milliseconds(1500);
  const StepResult r = RunStep(*target_, o);
  EXPECT_EQ(r.offered_rate, 100);
  EXPECT_EQ(r.dropped, 0);
  EXPECT_NEAR(r.achieved_rate, 100, 30);
  EXPECT_EQ(r.ok, r.sent);
  EXPECT_TRUE(r.errors.empty());
  ExpectOrdered(r);
  // The warm-up's calls were sent too, but not counted.
  EXPECT_GT(classifier_.calls.load(), r.sent);
}

TEST_F(FakeServerTest, OpenLoopDropsArrivalsBeyondMaxOutstanding) {
  classifier_.delay_ms = 300;
  StepOptions o;
  o.mode = LoadMode::kRequestRate;
  o.request_rate = 100;
  o.max_outstanding = 3;
  o.warmup = milliseconds(0);
  o.window = milliseconds(600);
  const StepResult r = RunStep(*target_, o);
  EXPECT_GT(r.dropped, 20);
  EXPECT_LE(r.sent, 3 * 3 + 1);
  EXPECT_NEAR(r.sent + r.dropped, 60, 25);  // the arrivals
  EXPECT_EQ(r.ok + r.unfinished, r.sent);
}

TEST_F(FakeServerTest, DrainCancelsWhatIsLeftAndCountsItUnfinished) {
  classifier_.delay_ms = 10000;
  StepOptions o;
  o.mode = LoadMode::kConcurrency;
  o.concurrency = 2;
  o.warmup = milliseconds(0);
  o.window = milliseconds(200);
  o.drain = milliseconds(200);
  const auto start = std::chrono::steady_clock::now();
  const StepResult r = RunStep(*target_, o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(r.sent, 2);
  EXPECT_EQ(r.unfinished, 2);
  EXPECT_EQ(r.in_flight_at_window_end, 2);
  EXPECT_EQ(r.ok, 0);
  EXPECT_TRUE(r.errors.empty());
}

TEST_F(FakeServerTest, ErrorsAreCountedByCodeName) {
  classifier_.delay_ms = 1;
  classifier_.code = static_cast<int>(grpc::StatusCode::NOT_FOUND);
  StepOptions o;
  o.mode = LoadMode::kRequestRate;
  o.request_rate = 50;
  o.warmup = milliseconds(0);
  o.window = milliseconds(400);
  const StepResult r = RunStep(*target_, o);
  EXPECT_EQ(r.ok, 0);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors.begin()->first, "NOT_FOUND");
  EXPECT_EQ(r.errors.begin()->second, r.sent);
  EXPECT_GT(r.sent, 0);
  EXPECT_EQ(r.requests_per_second, 0);
}

TEST_F(FakeServerTest, TimeoutIsADeadline) {
  classifier_.delay_ms = 2000;
  StepOptions o;
  o.concurrency = 1;
  o.warmup = milliseconds(0);
  o.window = milliseconds(300);
  o.timeout = milliseconds(50);
  const StepResult r = RunStep(*target_, o);
  ASSERT_EQ(r.errors.count("DEADLINE_EXCEEDED"), 1u);
  EXPECT_GT(r.errors.at("DEADLINE_EXCEEDED"), 0);
  EXPECT_EQ(r.ok, 0);
}

TEST_F(FakeServerTest, KServeRequestsCountTheirClips) {
  auto request = BuildKServeRequest("m", "", Clips(v1::UINT8, 3), KServeContents::kTyped, {});
  ASSERT_TRUE(request.ok());
  auto target = MakeKServeTarget(channel_, *request);
  EXPECT_EQ(target->clips_per_request(), 3);
  StepOptions o;
  o.concurrency = 2;
  o.warmup = milliseconds(50);
  o.window = milliseconds(400);
  const StepResult r = RunStep(*target, o);
  EXPECT_GT(r.ok, 0);
  EXPECT_TRUE(r.errors.empty()) << r.errors.begin()->first;
  EXPECT_EQ(r.clips_per_request, 3);
  EXPECT_DOUBLE_EQ(r.clips_per_second, 3 * r.requests_per_second);
  EXPECT_EQ(r.batch_sizes, (std::map<int64_t, int64_t>{{3, r.ok}}));
  EXPECT_EQ(r.mean_queue_us, 10);
  EXPECT_EQ(r.mean_compute_us, 30);
}

}  // namespace
}  // namespace clipserve::client
