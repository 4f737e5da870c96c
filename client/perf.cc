#include "client/perf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/clips.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"

namespace clipserve::client {
namespace {

using Clock = std::chrono::steady_clock;

struct CallerStats {
  std::vector<double> latencies_us;
  std::map<std::string, int64_t> errors;
  double queue_us = 0, compute_us = 0, batch = 0;
};

}  // namespace

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

StepResult RunStep(const std::shared_ptr<grpc::Channel>& channel,
                   const v1::ClassifyRequest& request,
                   const StepOptions& options) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point window_start = start + options.warmup;
  const Clock::time_point window_end = window_start + options.window;
  std::vector<CallerStats> stats(options.concurrency);
  std::vector<std::thread> callers;
  for (int c = 0; c < options.concurrency; ++c) {
    callers.emplace_back([&, c] {
      auto stub = v1::VideoClassifier::NewStub(channel);
      CallerStats& mine = stats[c];
      v1::ClassifyResponse response;
      for (;;) {
        const Clock::time_point sent = Clock::now();
        if (sent >= window_end) break;
        grpc::ClientContext context;
        response.Clear();
        const grpc::Status status = stub->Classify(&context, request, &response);
        const Clock::time_point done = Clock::now();
        // Count calls sent inside the window and answered before its end.
        if (sent < window_start || done > window_end) continue;
        if (!status.ok()) {
          ++mine.errors[StatusCodeName(status.error_code())];
          continue;
        }
        mine.latencies_us.push_back(
            std::chrono::duration<double, std::micro>(done - sent).count());
        mine.queue_us += response.timings().queue_us();
        mine.compute_us += response.timings().compute_us();
        mine.batch += response.timings().batch_size();
      }
    });
  }
  for (std::thread& t : callers) t.join();

  StepResult r;
  r.concurrency = options.concurrency;
  r.seconds = std::chrono::duration<double>(options.window).count();
  std::vector<double> all;
  double queue = 0, compute = 0, batch = 0;
  for (const CallerStats& s : stats) {
    all.insert(all.end(), s.latencies_us.begin(), s.latencies_us.end());
    for (const auto& [code, n] : s.errors) r.errors[code] += n;
    queue += s.queue_us;
    compute += s.compute_us;
    batch += s.batch;
  }
  std::sort(all.begin(), all.end());
  r.ok = static_cast<int64_t>(all.size());
  r.throughput = r.ok / r.seconds;
  r.p50_us = Quantile(all, 0.50);
  r.p90_us = Quantile(all, 0.90);
  r.p99_us = Quantile(all, 0.99);
  r.max_us = all.empty() ? 0 : all.back();
  if (r.ok > 0) {
    r.mean_queue_us = queue / r.ok;
    r.mean_compute_us = compute / r.ok;
    r.mean_batch_size = batch / r.ok;
  }
  return r;
}

std::string StepsToJson(const std::vector<StepResult>& steps) {
  std::vector<std::string> objects;
  for (const StepResult& s : steps) {
    std::vector<std::string> errors;
    for (const auto& [code, n] : s.errors) {
      errors.push_back(absl::StrCat("\"", code, "\": ", n));
    }
    objects.push_back(absl::StrCat(
        "{\"concurrency\": ", s.concurrency, ", \"seconds\": ", s.seconds,
        ", \"ok\": ", s.ok, ", \"throughput\": ", s.throughput,
        ", \"p50_us\": ", s.p50_us, ", \"p90_us\": ", s.p90_us,
        ", \"p99_us\": ", s.p99_us, ", \"max_us\": ", s.max_us,
        ", \"mean_queue_us\": ", s.mean_queue_us,
        ", \"mean_compute_us\": ", s.mean_compute_us,
        ", \"mean_batch_size\": ", s.mean_batch_size, ", \"errors\": {",
        absl::StrJoin(errors, ", "), "}}"));
  }
  return absl::StrCat("[\n  ", absl::StrJoin(objects, ",\n  "), "\n]\n");
}

}  // namespace clipserve::client
