#include "client/perf_report.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clipserve::client {
namespace {

// An object's members, rendered on one line or one per line.
class JsonObject {
 public:
  JsonObject& Raw(absl::string_view key, std::string json) {
    members_.emplace_back(std::string(key), std::move(json));
    return *this;
  }
  JsonObject& Str(absl::string_view key, absl::string_view s) {
    return Raw(key, JsonQuote(s));
  }
  JsonObject& StrOrNull(absl::string_view key, absl::string_view s) {
    return Raw(key, s.empty() ? "null" : JsonQuote(s));
  }
  JsonObject& Num(absl::string_view key, double v) { return Raw(key, JsonNumber(v)); }
  JsonObject& Int(absl::string_view key, int64_t v) { return Raw(key, absl::StrCat(v)); }

  std::string Inline() const {
    std::vector<std::string> parts;
    for (const auto& [k, v] : members_) parts.push_back(absl::StrCat(JsonQuote(k), ": ", v));
    return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
  }
  std::string Lines(const std::string& indent) const {
    std::vector<std::string> parts;
    for (const auto& [k, v] : members_) {
      parts.push_back(absl::StrCat(indent, "  ", JsonQuote(k), ": ", v));
    }
    return absl::StrCat("{\n", absl::StrJoin(parts, ",\n"), "\n", indent, "}");
  }

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

template <typename Map>
std::string CountsJson(const Map& counts) {
  JsonObject o;
  for (const auto& [key, n] : counts) o.Int(absl::StrCat(key), n);
  return o.Inline();
}

template <typename Map>
std::string CountsCsv(const Map& counts) {
  std::vector<std::string> parts;
  for (const auto& [key, n] : counts) parts.push_back(absl::StrCat(key, ":", n));
  return absl::StrJoin(parts, ";");
}

std::string StepJson(const StepResult& s, size_t index) {
  JsonObject o;
  o.Int("index", static_cast<int64_t>(index))
      .Str("mode", LoadModeName(s.mode))
      .Raw("concurrency", s.mode == LoadMode::kConcurrency ? absl::StrCat(s.concurrency) : "null")
      .Raw("offered_rate", s.mode == LoadMode::kRequestRate ? JsonNumber(s.offered_rate) : "null")
      .Int("clips_per_request", s.clips_per_request)
      .Str("started", Iso8601(s.started))
      .Num("seconds", s.seconds)
      .Int("sent", s.sent)
      .Int("ok", s.ok)
      .Raw("errors", CountsJson(s.errors))
      .Int("error_count", s.error_count())
      .Int("dropped", s.dropped)
      .Int("in_flight_at_window_end", s.in_flight_at_window_end)
      .Int("unfinished", s.unfinished)
      .Int("ok_received", s.ok_received)
      .Num("achieved_rate", s.achieved_rate)
      .Num("requests_per_second", s.requests_per_second)
      .Num("clips_per_second", s.clips_per_second)
      .Num("throughput", s.clips_per_second)
      .Num("max_send_lag_us", s.max_send_lag_us)
      .Num("min_us", s.min_us)
      .Num("mean_us", s.mean_us)
      .Num("p50_us", s.p50_us)
      .Num("p90_us", s.p90_us)
      .Num("p95_us", s.p95_us)
      .Num("p99_us", s.p99_us)
      .Num("max_us", s.max_us)
      .Int("split_count", s.split_count)
      .Num("mean_queue_us", s.mean_queue_us)
      .Num("mean_compute_us", s.mean_compute_us)
      .Num("mean_decode_us", s.mean_decode_us)
      .Num("mean_batch_size", s.mean_batch_size)
      .Raw("batch_sizes", CountsJson(s.batch_sizes));
  return o.Lines("    ");
}

std::string Ms(double us) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", us / 1000);
  return buf;
}

}  // namespace

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\n\r") == absl::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Iso8601(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

std::string ReportJson(const RunInfo& run, const std::vector<StepResult>& steps) {
  std::vector<std::string> step_json;
  for (size_t i = 0; i < steps.size(); ++i) step_json.push_back(StepJson(steps[i], i));
  JsonObject o;
  o.Str("tool", "clipserve-perf")
      .Int("schema", 2)
      .Str("server", run.server)
      .Str("model", run.model)
      .Str("model_version", run.model_version)
      .Str("protocol", run.protocol)
      .Str("payload", run.payload)
      .StrOrNull("video", run.video)
      .Int("video_bytes", run.video_bytes)
      .Str("mode", LoadModeName(run.mode))
      .StrOrNull("dtype", run.dtype)
      .Raw("shape", run.shape.empty() ? "null"
                                      : absl::StrCat("[", absl::StrJoin(run.shape, ", "), "]"))
      .Int("batch", run.batch)
      .StrOrNull("kserve_contents", run.kserve_contents)
      .Num("warmup_seconds", run.warmup_seconds)
      .Num("window_seconds", run.window_seconds)
      .Num("drain_seconds", run.drain_seconds)
      .Int("max_outstanding", run.max_outstanding)
      .Raw("seed", absl::StrCat(run.seed))
      .Int("timeout_ms", run.timeout_ms)
      .Str("started", Iso8601(run.started))
      .Str("finished", Iso8601(run.finished))
      .Raw("steps", step_json.empty()
                        ? "[]"
                        : absl::StrCat("[\n    ", absl::StrJoin(step_json, ",\n    "), "\n  ]"));
  return o.Lines("") + "\n";
}

std::string ReportCsv(const RunInfo& run, const std::vector<StepResult>& steps) {
  std::string out =
      "index,mode,concurrency,offered_rate,protocol,payload,model,"
      "clips_per_request,seconds,sent,ok,error_count,dropped,"
      "in_flight_at_window_end,unfinished,ok_received,achieved_rate,"
      "requests_per_second,clips_per_second,max_send_lag_us,min_us,mean_us,"
      "p50_us,p90_us,p95_us,p99_us,max_us,split_count,mean_queue_us,"
      "mean_compute_us,mean_decode_us,mean_batch_size,batch_sizes,errors\n";
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepResult& s = steps[i];
    const bool closed = s.mode == LoadMode::kConcurrency;
    std::vector<std::string> f = {
        absl::StrCat(i), LoadModeName(s.mode),
        closed ? absl::StrCat(s.concurrency) : "",
        closed ? "" : JsonNumber(s.offered_rate), CsvField(run.protocol),
        CsvField(run.payload), CsvField(run.model), absl::StrCat(s.clips_per_request),
        JsonNumber(s.seconds), absl::StrCat(s.sent), absl::StrCat(s.ok),
        absl::StrCat(s.error_count()), absl::StrCat(s.dropped),
        absl::StrCat(s.in_flight_at_window_end), absl::StrCat(s.unfinished),
        absl::StrCat(s.ok_received), JsonNumber(s.achieved_rate),
        JsonNumber(s.requests_per_second), JsonNumber(s.clips_per_second),
        JsonNumber(s.max_send_lag_us), JsonNumber(s.min_us), JsonNumber(s.mean_us),
        JsonNumber(s.p50_us), JsonNumber(s.p90_us), JsonNumber(s.p95_us),
        JsonNumber(s.p99_us), JsonNumber(s.max_us), absl::StrCat(s.split_count),
        JsonNumber(s.mean_queue_us), JsonNumber(s.mean_compute_us),
        JsonNumber(s.mean_decode_us), JsonNumber(s.mean_batch_size),
        CountsCsv(s.batch_sizes), CountsCsv(s.errors)};
    absl::StrAppend(&out, absl::StrJoin(f, ","), "\n");
  }
  return out;
}

std::string TableHeader(LoadMode mode, bool video) {
  char buf[256];
  if (mode == LoadMode::kConcurrency) {
    std::snprintf(buf, sizeof(buf), "%11s ", "concurrency");
  } else {
    std::snprintf(buf, sizeof(buf), "%8s %8s %7s ", "rate/s", "sent/s", "dropped");
  }
  std::string out = buf;
  std::snprintf(buf, sizeof(buf), "%8s %8s %8s %8s %8s %8s %8s %8s %8s ",
                "req/s", "clips/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms",
                "max ms", "queue ms", "comp ms");
  out += buf;
  if (video) {
    std::snprintf(buf, sizeof(buf), "%8s ", "dec ms");
    out += buf;
  }
  std::snprintf(buf, sizeof(buf), "%6s %7s  %s\n", "batch", "errors", "batch sizes (size:responses)");
  return out + buf;
}

std::string TableRow(const StepResult& s, bool video) {
  char buf[256];
  if (s.mode == LoadMode::kConcurrency) {
    std::snprintf(buf, sizeof(buf), "%11d ", s.concurrency);
  } else {
    std::snprintf(buf, sizeof(buf), "%8.2f %8.2f %7lld ", s.offered_rate,
                  s.achieved_rate, static_cast<long long>(s.dropped));
  }
  std::string out = buf;
  std::snprintf(buf, sizeof(buf), "%8.2f %8.2f %8s %8s %8s %8s %8s %8s %8s ",
                s.requests_per_second, s.clips_per_second, Ms(s.p50_us).c_str(),
                Ms(s.p90_us).c_str(), Ms(s.p95_us).c_str(), Ms(s.p99_us).c_str(),
                Ms(s.max_us).c_str(), Ms(s.mean_queue_us).c_str(),
                Ms(s.mean_compute_us).c_str());
  out += buf;
  if (video) {
    std::snprintf(buf, sizeof(buf), "%8s ", Ms(s.mean_decode_us).c_str());
    out += buf;
  }
  std::vector<std::string> sizes;
  for (const auto& [size, n] : s.batch_sizes) sizes.push_back(absl::StrCat(size, ":", n));
  std::snprintf(buf, sizeof(buf), "%6.2f %7lld  ", s.mean_batch_size,
                static_cast<long long>(s.error_count()));
  out += buf;
  out += absl::StrJoin(sizes, " ");
  if (!s.errors.empty()) absl::StrAppend(&out, "  errors: ", CountsCsv(s.errors));
  if (s.unfinished > 0) absl::StrAppend(&out, "  unfinished: ", s.unfinished);
  return out + "\n";
}

}  // namespace clipserve::client
