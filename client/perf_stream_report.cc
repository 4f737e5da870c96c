#include "client/perf_stream_report.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/perf_report.h"

namespace clipserve::client {
namespace {

std::string Ms(double us) { return absl::StrFormat("%.2f", us / 1000); }

template <typename Map>
std::string CountsJson(const Map& counts) {
  std::vector<std::string> parts;
  for (const auto& [key, n] : counts) parts.push_back(absl::StrCat(JsonQuote(key), ": ", n));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

template <typename Map>
std::string CountsCsv(const Map& counts) {
  std::vector<std::string> parts;
  for (const auto& [key, n] : counts) parts.push_back(absl::StrCat(key, ":", n));
  return absl::StrJoin(parts, ";");
}

// SUMMARY's members, without braces.
std::string SummaryMembers(const StreamSummary& s) {
  const bool client = s.client_count > 0;
  return absl::StrCat(
      "\"streams\": ", s.streams, ", \"frames_sent\": ", s.frames_sent,
      ", \"windows\": ", s.windows, ", \"dropped\": ", s.dropped,
      ", \"drop_rate\": ", JsonNumber(s.drop_rate), ", \"p50_us\": ", JsonNumber(s.p50_us),
      ", \"p99_us\": ", JsonNumber(s.p99_us), ", \"max_us\": ", JsonNumber(s.max_us),
      ", \"client_count\": ", s.client_count,
      ", \"client_p50_us\": ", client ? JsonNumber(s.client_p50_us) : "null",
      ", \"client_p99_us\": ", client ? JsonNumber(s.client_p99_us) : "null",
      ", \"mean_decode_us\": ", JsonNumber(s.mean_decode_us),
      ", \"mean_queue_us\": ", JsonNumber(s.mean_queue_us),
      ", \"mean_compute_us\": ", JsonNumber(s.mean_compute_us),
      ", \"mean_batch\": ", JsonNumber(s.mean_batch),
      ", \"decode_share\": ", JsonNumber(s.decode_share),
      ", \"compute_share\": ", JsonNumber(s.compute_share),
      ", \"max_send_lag_us\": ", JsonNumber(s.max_send_lag_us),
      ", \"events\": ", CountsJson(s.events), ", \"ended\": ", CountsJson(s.ended),
      ", \"unfinished\": ", s.unfinished);
}

std::string SummaryCsv(const StreamSummary& s) {
  const bool client = s.client_count > 0;
  return absl::StrJoin(
      {absl::StrCat(s.frames_sent), absl::StrCat(s.windows), absl::StrCat(s.dropped),
       JsonNumber(s.drop_rate), JsonNumber(s.p50_us), JsonNumber(s.p99_us),
       JsonNumber(s.max_us), absl::StrCat(s.client_count),
       client ? JsonNumber(s.client_p50_us) : "", client ? JsonNumber(s.client_p99_us) : "",
       JsonNumber(s.mean_decode_us), JsonNumber(s.mean_queue_us),
       JsonNumber(s.mean_compute_us), JsonNumber(s.mean_batch), JsonNumber(s.decode_share),
       JsonNumber(s.compute_share), JsonNumber(s.max_send_lag_us), CountsCsv(s.events),
       CountsCsv(s.ended), absl::StrCat(s.unfinished)},
      ",");
}

StreamSummary OneStream(const StreamStats& st, double fps) { return Summarise({&st}, fps); }

}  // namespace

std::string StreamPreamble(const StreamRunInfo& run) {
  std::string out = absl::StrFormat(
      "# streams: %dx%d H.264 at %.3g fps, %.3g s per run, %s, channels: %d (at most one per "
      "stream)\n", run.width,
      run.height, run.fps, run.seconds,
      run.pull ? absl::StrCat("pulled by the server from ", run.source_url)
               : "pushed, one access unit per message, starts staggered over one frame",
      run.channels);
  const double clip_s = run.test_stream_frames / run.fps;
  absl::StrAppend(
      &out,
      absl::StrFormat("# test stream: %d frames looped (%.2f s), %d bytes (%.2f Mbit/s)\n",
                      run.test_stream_frames, clip_s, run.test_stream_bytes,
                      clip_s > 0 ? run.test_stream_bytes * 8 / clip_s / 1e6 : 0.0));
  absl::StrAppend(
      &out, "# model ", run.model.empty() ? "(default)" : run.model,
      run.model_version.empty() ? "" : absl::StrCat(" version ", run.model_version),
      ", window ",
      run.window_frames > 0 ? absl::StrCat(run.window_frames) : std::string("model's T"),
      ", stride ",
      run.stride_frames > 0 ? absl::StrCat(run.stride_frames) : std::string("= window"),
      absl::StrFormat("; latency budget %.0f ms (p99 of the server-measured latency)\n",
                      run.latency_budget_ms));
  absl::StrAppend(
      &out,
      absl::StrFormat(
          "# latency: server-measured, last frame's arrival -> answer; client: frame "
          "written -> answer received\n"
          "# dec share = mean decode_us / frame interval (%.1f ms); comp share = mean "
          "compute_us / window interval (stride / fps)\n",
          1000 / run.fps));
  return out;
}

std::string StreamTableHeader(const std::string& first, bool with_result) {
  std::string out = absl::StrFormat(
      "%7s %7s %7s %7s %6s %8s %8s %8s %8s %8s %8s %8s %6s %9s %9s %8s  %s", first, "frames",
      "windows", "dropped", "drop%", "p50 ms", "p99 ms", "max ms", "c-p50 ms", "c-p99 ms",
      "queue ms", "comp ms", "batch", "dec share", "comp shr", "lag ms", "ended");
  if (with_result) absl::StrAppend(&out, "  result");
  return out + "\n";
}

std::string StreamTableRow(const std::string& label, const StreamSummary& s, bool pull,
                           const std::string& verdict) {
  const bool client = !pull && s.client_count > 0;
  std::string ended;
  for (const auto& [code, n] : s.ended) {
    if (code == "OK") continue;
    absl::StrAppend(&ended, ended.empty() ? "" : ";", code, ":", n);
  }
  if (ended.empty()) ended = "OK";
  if (s.unfinished > 0) absl::StrAppend(&ended, " unfinished:", s.unfinished);
  std::string out = absl::StrFormat(
      "%7s %7d %7d %7d %6.2f %8s %8s %8s %8s %8s %8s %8s %6.2f %9.3f %9.3f %8s  %s", label,
      s.frames_sent, s.windows, s.dropped, s.drop_rate * 100, Ms(s.p50_us), Ms(s.p99_us),
      Ms(s.max_us), client ? Ms(s.client_p50_us) : "-", client ? Ms(s.client_p99_us) : "-",
      Ms(s.mean_queue_us), Ms(s.mean_compute_us), s.mean_batch, s.decode_share,
      s.compute_share, Ms(s.max_send_lag_us), ended);
  if (!verdict.empty()) absl::StrAppend(&out, "  ", verdict);
  return out + "\n";
}

std::string StreamReportJson(const StreamRunInfo& run, const std::vector<StreamRunRecord>& runs,
                             std::optional<int> max_streams) {
  std::vector<std::string> run_json;
  for (const StreamRunRecord& r : runs) {
    std::vector<std::string> streams;
    for (size_t i = 0; i < r.result.per_stream.size(); ++i) {
      const StreamStats& st = r.result.per_stream[i];
      streams.push_back(absl::StrCat("{\"index\": ", i, ", \"code\": ", JsonQuote(st.code),
                                     ", \"message\": ", JsonQuote(st.message), ", ",
                                     SummaryMembers(OneStream(st, r.result.fps)), "}"));
    }
    run_json.push_back(absl::StrCat(
        "{\"streams\": ", r.result.streams, ", \"started\": ", JsonQuote(Iso8601(r.result.started)),
        ", \"passed\": ", r.passed ? "true" : "false", ",\n      \"overall\": {",
        SummaryMembers(r.result.overall), "},\n      \"per_stream\": [",
        streams.empty() ? "" : absl::StrCat("\n        ", absl::StrJoin(streams, ",\n        ")),
        "]}"));
  }
  std::vector<std::string> m = {
      absl::StrCat("\"tool\": \"clipserve-perf\""),
      "\"schema\": 2",
      "\"mode\": \"streams\"",
      absl::StrCat("\"server\": ", JsonQuote(run.server)),
      absl::StrCat("\"model\": ", JsonQuote(run.model)),
      absl::StrCat("\"model_version\": ", JsonQuote(run.model_version)),
      absl::StrCat("\"transport\": ", run.pull ? "\"pull\"" : "\"push\""),
      absl::StrCat("\"width\": ", run.width),
      absl::StrCat("\"height\": ", run.height),
      absl::StrCat("\"fps\": ", JsonNumber(run.fps)),
      absl::StrCat("\"seconds\": ", JsonNumber(run.seconds)),
      absl::StrCat("\"window_frames\": ", run.window_frames),
      absl::StrCat("\"stride_frames\": ", run.stride_frames),
      absl::StrCat("\"channels\": ", run.channels),
      absl::StrCat("\"latency_budget_ms\": ", JsonNumber(run.latency_budget_ms)),
      absl::StrCat("\"test_stream_frames\": ", run.test_stream_frames),
      absl::StrCat("\"test_stream_bytes\": ", run.test_stream_bytes),
      absl::StrCat("\"source_url\": ", run.pull ? JsonQuote(run.source_url) : "null"),
      absl::StrCat("\"started\": ", JsonQuote(Iso8601(run.started))),
      absl::StrCat("\"finished\": ", JsonQuote(Iso8601(run.finished))),
      absl::StrCat("\"runs\": [",
                   run_json.empty() ? ""
                                    : absl::StrCat("\n    ", absl::StrJoin(run_json, ",\n    "),
                                                   "\n  "),
                   "]"),
      absl::StrCat("\"max_streams\": ",
                   max_streams.has_value() ? absl::StrCat(*max_streams) : "null")};
  return absl::StrCat("{\n  ", absl::StrJoin(m, ",\n  "), "\n}\n");
}

std::string StreamReportCsv(const std::vector<StreamRunRecord>& runs) {
  std::string out =
      "run,streams,stream,passed,frames_sent,windows,dropped,drop_rate,p50_us,p99_us,"
      "max_us,client_count,client_p50_us,client_p99_us,mean_decode_us,mean_queue_us,"
      "mean_compute_us,mean_batch,decode_share,compute_share,max_send_lag_us,events,ended,"
      "unfinished\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const StreamRunResult& r = runs[i].result;
    const char* passed = runs[i].passed ? "true" : "false";
    for (size_t s = 0; s < r.per_stream.size(); ++s) {
      absl::StrAppend(&out, i, ",", r.streams, ",", s, ",", passed, ",",
                      SummaryCsv(OneStream(r.per_stream[s], r.fps)), "\n");
    }
    absl::StrAppend(&out, i, ",", r.streams, ",all,", passed, ",", SummaryCsv(r.overall), "\n");
  }
  return out;
}

}  // namespace clipserve::client
