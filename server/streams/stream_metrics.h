// The live streams' Prometheus series (docs/metrics.md, "Streams"). Each
// model version's series are made on the first stream that opens on it and
// kept; recording is then atomic operations and one histogram observation.
#ifndef CLIPSERVE_SERVER_STREAMS_STREAM_METRICS_H_
#define CLIPSERVE_SERVER_STREAMS_STREAM_METRICS_H_

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"

namespace clipserve::server {

// What became of a completed window.
enum class WindowOutcome {
  kClassified = 0,   // answered
  kSuperseded,       // still queued when the stream's next window was ready
  kBacklog,          // every window buffer of the stream was in flight
  kQueueFull,        // the model's queue refused it (RESOURCE_EXHAUSTED)
  kFailed,           // the model failed on its batch
  kAnswerDropped,    // classified, but the client was not reading answers
  kCount,
};

// The series of one model version.
struct StreamModelMetrics {
  prometheus::Gauge* active = nullptr;       // clipserve_streams_active
  prometheus::Counter* frames = nullptr;     // clipserve_stream_frames_total
  prometheus::Counter* frames_lost = nullptr;  // ..._stream_frames_lost_total
  prometheus::Counter* reconnects = nullptr;   // ..._stream_reconnects_total
  prometheus::Histogram* latency = nullptr;  // clipserve_stream_latency_seconds
  std::array<prometheus::Counter*, static_cast<size_t>(WindowOutcome::kCount)>
      windows{};                             // clipserve_stream_windows_total
  prometheus::Counter& window(WindowOutcome o) {
    return *windows[static_cast<size_t>(o)];
  }
};

class StreamMetrics {
 public:
  StreamMetrics(prometheus::Registry& registry, std::vector<double> latency_buckets);

  // Made once per model version, owned here. Thread-safe.
  StreamModelMetrics* ForModel(const std::string& model, const std::string& version);
  // clipserve_streams_ended_total{code}: streams finished, by status.
  void CountEnded(absl::StatusCode code);

 private:
  const std::vector<double> buckets_;
  prometheus::Family<prometheus::Gauge>& active_;
  prometheus::Family<prometheus::Counter>& frames_;
  prometheus::Family<prometheus::Counter>& frames_lost_;
  prometheus::Family<prometheus::Counter>& reconnects_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& windows_;
  prometheus::Family<prometheus::Counter>& ended_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<StreamModelMetrics>>
      models_;
  std::array<prometheus::Counter*, 17> ended_by_code_{};
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_STREAMS_STREAM_METRICS_H_
