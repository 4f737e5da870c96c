// Load generation against a clipserve server: closed-loop concurrency steps.
#ifndef CLIPSERVE_CLIENT_PERF_H_
#define CLIPSERVE_CLIENT_PERF_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "clipserve/v1/video_classifier.pb.h"

namespace clipserve::client {

struct StepOptions {
  int concurrency = 1;
  std::chrono::milliseconds warmup{1000};
  std::chrono::milliseconds window{5000};
};

// What one step measured. Latencies are client-side, in microseconds.
struct StepResult {
  int concurrency = 0;
  double seconds = 0;        // length of the measurement window
  int64_t ok = 0;            // successful calls completed inside the window
  std::map<std::string, int64_t> errors;  // failed calls by status code name
  double throughput = 0;     // ok / seconds
  double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0;
  double mean_queue_us = 0, mean_compute_us = 0;  // server-side split
  double mean_batch_size = 0;                     // as the responses report
};

// Runs `options.concurrency` callers, each sending `request` back to back
// over `channel`, for warm-up plus window; measures the window only.
StepResult RunStep(const std::shared_ptr<grpc::Channel>& channel,
                   const v1::ClassifyRequest& request,
                   const StepOptions& options);

// The q-quantile (0..1) of `sorted` by nearest rank; 0 when empty.
double Quantile(const std::vector<double>& sorted, double q);

// JSON for a list of steps (one object per step).
std::string StepsToJson(const std::vector<StepResult>& steps);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_H_
