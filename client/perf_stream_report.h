// clipserve-perf --streams: its table on stdout, --json and --csv.
//
// Table: the run's settings and the definitions of the shares, then
//   per run of N streams: a row per stream (first column its index) and an
//   "all" row; with --find-max-streams one row per trial instead (first
//   column N, last "pass"/"fail"), then "max streams within budget: M".
// Columns: frames sent, windows answered, windows dropped, drop %, server
// latency p50/p99/max ms, client-observed p50/p99 ms ("-" when pulled),
// mean queue and compute ms per window, mean batch size, decode and compute
// share (perf_stream.h), most a frame's send lagged its schedule (ms), and
// how the streams ended (codes other than OK, unfinished).
//
// JSON (one object for the run):
//   {"tool": "clipserve-perf", "schema": 2, "mode": "streams", "server",
//    "model", "model_version", "transport": "push"|"pull", "width",
//    "height", "fps", "seconds", "window_frames", "stride_frames" (as
//    requested; 0: the server's default), "channels" (connections; with
//    --find-max-streams the most, a run of N using min(N, channels)),
//    "latency_budget_ms", "test_stream_frames", "test_stream_bytes",
//    "source_url" (pull, else null), "started", "finished" (ISO 8601 UTC),
//    "runs": [{"streams", "started", "passed", "overall": SUMMARY,
//              "per_stream": [SUMMARY + "index", "code", "message"]}],
//    "max_streams": M (--find-max-streams; else null)}
//   SUMMARY: the fields of StreamSummary: streams, frames_sent, windows,
//   dropped, drop_rate, p50_us, p99_us, max_us, client_count,
//   client_p50_us, client_p99_us (null when client_count is 0),
//   mean_decode_us, mean_queue_us, mean_compute_us, mean_batch,
//   decode_share, compute_share, max_send_lag_us, events {"KIND": count},
//   ended {"CODE": streams}, unfinished.
// CSV: a header row, then per run a row per stream and an "all" row:
//   run, streams, stream (index or "all"), passed, and SUMMARY's scalars;
//   events and ended as "KIND:n;KIND:n".
#ifndef CLIPSERVE_CLIENT_PERF_STREAM_REPORT_H_
#define CLIPSERVE_CLIENT_PERF_STREAM_REPORT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/perf_stream.h"

namespace clipserve::client {

struct StreamRunInfo {
  std::string server;
  std::string model;
  std::string model_version;
  bool pull = false;
  std::string source_url;  // pull
  int width = 0;
  int height = 0;
  double fps = 0;
  double seconds = 0;
  int window_frames = 0;  // requested; 0: server default
  int stride_frames = 0;
  int channels = 0;
  double latency_budget_ms = 0;
  int64_t test_stream_frames = 0;
  int64_t test_stream_bytes = 0;
  std::chrono::system_clock::time_point started;
  std::chrono::system_clock::time_point finished;
};

struct StreamRunRecord {
  StreamRunResult result;
  bool passed = false;  // WithinBudget
};

// The run's settings and the share definitions, several lines.
std::string StreamPreamble(const StreamRunInfo& run);
// The column header; `first` names the first column ("stream" or "streams").
std::string StreamTableHeader(const std::string& first, bool with_result);
// One row; `verdict` ("pass"/"fail") is appended when not empty.
std::string StreamTableRow(const std::string& label, const StreamSummary& s, bool pull,
                           const std::string& verdict);

std::string StreamReportJson(const StreamRunInfo& run, const std::vector<StreamRunRecord>& runs,
                             std::optional<int> max_streams);
std::string StreamReportCsv(const std::vector<StreamRunRecord>& runs);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_STREAM_REPORT_H_
