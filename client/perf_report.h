// clipserve-perf's outputs: the table on stdout, --json and --csv.
//
// JSON (one object for the run):
//   {"tool": "clipserve-perf", "schema": 2, "server", "model",
//    "model_version", "protocol": "clipserve"|"kserve",
//    "payload": "tensor"|"video", "video" (path or null), "video_bytes",
//    "mode": "concurrency"|"request-rate", "dtype": "uint8"|"fp32"|null,
//    "shape": the input tensor as sent ([T,H,W,3] / [3,T,H,W] for clipserve,
//             [B,...] for kserve; null for video),
//    "batch": clips per request, "kserve_contents": "raw"|"typed"|null,
//    "warmup_seconds", "window_seconds", "drain_seconds", "max_outstanding",
//    "seed", "timeout_ms", "started", "finished" (ISO 8601 UTC),
//    "steps": [one object per step, the fields of StepResult (perf.h):
//      index, mode, concurrency (null in request-rate mode), offered_rate
//      (null in concurrency mode), clips_per_request, started, seconds,
//      sent, ok, errors {"CODE_NAME": n}, error_count, dropped,
//      in_flight_at_window_end, unfinished, ok_received, achieved_rate,
//      requests_per_second, clips_per_second, throughput (= clips_per_second),
//      max_send_lag_us, min_us, mean_us, p50_us, p90_us, p95_us, p99_us,
//      max_us, split_count, mean_queue_us, mean_compute_us, mean_decode_us,
//      mean_batch_size, batch_sizes {"size": responses}]}
// CSV: a header row, then one row per step with the step's scalar fields
// and the run's protocol, payload, model; errors and batch_sizes as
// "CODE:n;CODE:n" and "size:n;size:n".
#ifndef CLIPSERVE_CLIENT_PERF_REPORT_H_
#define CLIPSERVE_CLIENT_PERF_REPORT_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/perf.h"

namespace clipserve::client {

struct RunInfo {
  std::string server;
  std::string model;
  std::string model_version;
  std::string protocol;  // "clipserve" or "kserve"
  std::string payload;   // "tensor" or "video"
  std::string video;     // the file, for video
  int64_t video_bytes = 0;
  LoadMode mode = LoadMode::kConcurrency;
  std::string dtype;            // "uint8" or "fp32"; empty for video
  std::vector<int64_t> shape;   // the input tensor as sent; empty for video
  int batch = 1;
  std::string kserve_contents;  // "raw" or "typed"; empty for clipserve
  double warmup_seconds = 0;
  double window_seconds = 0;
  double drain_seconds = 0;
  int max_outstanding = 0;
  uint64_t seed = 0;
  int64_t timeout_ms = 0;
  std::chrono::system_clock::time_point started;
  std::chrono::system_clock::time_point finished;
};

std::string ReportJson(const RunInfo& run, const std::vector<StepResult>& steps);
std::string ReportCsv(const RunInfo& run, const std::vector<StepResult>& steps);

// The table: a header, then a row per step (each ends in a newline).
std::string TableHeader(LoadMode mode, bool video);
std::string TableRow(const StepResult& step, bool video);

// Helpers, exposed for the tests.
std::string JsonQuote(absl::string_view s);
std::string JsonNumber(double v);  // "null" for NaN and infinities
std::string CsvField(absl::string_view s);
std::string Iso8601(std::chrono::system_clock::time_point t);  // ...T..Z, ms

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_REPORT_H_
