#include "server/streams/stream_metrics.h"

namespace clipserve::server {
namespace {

constexpr const char* kOutcomes[] = {"classified", "superseded", "backlog",
                                     "queue_full", "failed", "answer_dropped"};
static_assert(sizeof(kOutcomes) / sizeof(kOutcomes[0]) ==
              static_cast<size_t>(WindowOutcome::kCount));

}  // namespace

StreamMetrics::StreamMetrics(prometheus::Registry& registry,
                             std::vector<double> latency_buckets)
    : buckets_(std::move(latency_buckets)),
      active_(prometheus::BuildGauge()
                  .Name("clipserve_streams_active")
                  .Help("Live streams open, by model.")
                  .Register(registry)),
      frames_(prometheus::BuildCounter()
                  .Name("clipserve_stream_frames_total")
                  .Help("Frames of live streams decoded (pushed raw frames "
                        "included).")
                  .Register(registry)),
      frames_lost_(prometheus::BuildCounter()
                       .Name("clipserve_stream_frames_lost_total")
                       .Help("Frames of live streams skipped after damaged "
                             "input, up to the next keyframe.")
                       .Register(registry)),
      reconnects_(prometheus::BuildCounter()
                      .Name("clipserve_stream_reconnects_total")
                      .Help("Pulled stream sources reconnected after a drop.")
                      .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("clipserve_stream_latency_seconds")
                   .Help("From the arrival of a window's last frame to its "
                         "answer.")
                   .Register(registry)),
      windows_(prometheus::BuildCounter()
                   .Name("clipserve_stream_windows_total")
                   .Help("Windows of live streams completed, by outcome "
                         "(classified or why dropped).")
                   .Register(registry)),
      ended_(prometheus::BuildCounter()
                 .Name("clipserve_streams_ended_total")
                 .Help("Live streams finished, by final gRPC status code.")
                 .Register(registry)) {
  // Every code a stream ends with is known up front: series exist at 0.
  for (absl::StatusCode code :
       {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kUnavailable,
        absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kCancelled}) {
    ended_by_code_[static_cast<size_t>(code)] =
        &ended_.Add({{"code", absl::StatusCodeToString(code)}});
  }
}

StreamModelMetrics* StreamMetrics::ForModel(const std::string& model,
                                            const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<StreamModelMetrics>& m = models_[{model, version}];
  if (m != nullptr) return m.get();
  m = std::make_unique<StreamModelMetrics>();
  const prometheus::Labels labels{{"model", model}, {"version", version}};
  m->active = &active_.Add(labels);
  m->frames = &frames_.Add(labels);
  m->frames_lost = &frames_lost_.Add(labels);
  m->reconnects = &reconnects_.Add(labels);
  m->latency = &latency_.Add(labels, buckets_);
  for (size_t i = 0; i < m->windows.size(); ++i) {
    prometheus::Labels l = labels;
    l["outcome"] = kOutcomes[i];
    m->windows[i] = &windows_.Add(l);
  }
  return m.get();
}

void StreamMetrics::CountEnded(absl::StatusCode code) {
  const size_t i = static_cast<size_t>(code);
  if (i >= ended_by_code_.size()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (ended_by_code_[i] == nullptr) {
    ended_by_code_[i] = &ended_.Add({{"code", absl::StatusCodeToString(code)}});
  }
  ended_by_code_[i]->Increment();
}

}  // namespace clipserve::server
