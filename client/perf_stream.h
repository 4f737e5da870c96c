// clipserve-perf --streams: N simulated cameras on ClassifyStream, and the
// search for the most streams a server keeps within a latency budget.
//
// A run (RunStreams): every stream opens its own ClassifyStream call (stream
// s on channel s % channels) and sends its StreamOpen.
//   Push (the default): then one H.264 access unit per message, frame i of
//   stream s due at start + (i + s / N) / fps (FrameDueUs: the streams'
//   starts staggered over one frame interval), for i < round(fps * seconds),
//   cycling through the pre-encoded units (each stream starts with unit 0, a
//   keyframe). One thread paces every stream; a frame whose time comes while
//   that stream's previous write is still held by flow control goes as soon
//   as the write completes (late: max_send_lag_us). After its last frame a
//   stream half-closes.
//   Pull: the StreamOpen names source_url instead; nothing follows.
// Then the run waits up to `drain` past the end for every stream to end;
// those still open are cancelled (unfinished).
//
// What a stream measures, from its answers:
//   windows            WindowResults received
//   dropped            the sum of its WINDOWS_DROPPED events' counts
//   drop rate          dropped / (windows + dropped)
//   latency            WindowResult.latency_us: server-measured, from the
//                      arrival of the window's last frame to the answer
//   client latency     push only: from the write of frame last_frame (each
//                      message is one frame, so message i is decoded frame
//                      i) to the WindowResult's arrival here
//   decode share       mean timings.decode_us (decoding and converting the
//                      window's last frame: one frame's decode) / the frame
//                      interval (1 / fps): the share of one core's time the
//                      stream's decoding takes
//   compute share      mean timings.compute_us / the window interval
//                      (stride_frames / fps, stride from StreamStarted): the
//                      share of wall time the model runs batches holding one
//                      of the stream's windows (a batch of B windows counts
//                      for each of them)
// Overall: counts summed, percentiles over every stream's windows together,
// means over all windows.
#ifndef CLIPSERVE_CLIENT_PERF_STREAM_H_
#define CLIPSERVE_CLIENT_PERF_STREAM_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "clipserve/v1/video_classifier.pb.h"

namespace clipserve::client {

struct StreamRunOptions {
  int streams = 1;
  double fps = 25;
  double seconds = 20;
  // Model, window and stride, top_k, ...: every stream's StreamOpen. Push
  // sets input H264; pull sets source_url (replay_speed 1).
  v1::StreamOpen open;
  // Push: the messages, one `data` access unit each, built once and shared
  // read-only by every stream. Pull: empty.
  const std::vector<v1::StreamRequest>* units = nullptr;
  std::string source_url;  // pull
  std::chrono::milliseconds drain{10000};
};

// One stream's raw measurements.
struct StreamStats {
  int64_t frames_sent = 0;
  double max_send_lag_us = 0;
  int32_t window_frames = 0;  // from StreamStarted
  int32_t stride_frames = 0;
  int64_t windows = 0;
  int64_t dropped = 0;
  std::map<std::string, int64_t> events;  // kind -> sum of counts (all kinds)
  std::vector<double> latency_us;         // server-measured, per window
  std::vector<double> client_latency_us;  // push: per window
  double decode_us_sum = 0, queue_us_sum = 0, compute_us_sum = 0, batch_sum = 0;
  std::string code = "OK";  // how the call ended
  std::string message;
  bool unfinished = false;  // cancelled after the drain
};

// What one stream, or all of a run's streams, add up to.
struct StreamSummary {
  int streams = 0;
  int64_t frames_sent = 0;
  int64_t windows = 0;
  int64_t dropped = 0;
  double drop_rate = 0;  // dropped / (windows + dropped); 0 when none
  double p50_us = 0, p99_us = 0, max_us = 0;  // server-measured latency
  int64_t client_count = 0;                   // windows with a client latency
  double client_p50_us = 0, client_p99_us = 0;
  double mean_decode_us = 0, mean_queue_us = 0, mean_compute_us = 0, mean_batch = 0;
  double decode_share = 0, compute_share = 0;
  double max_send_lag_us = 0;
  std::map<std::string, int64_t> events;  // kind -> sum of counts
  std::map<std::string, int64_t> ended;   // code name -> streams
  int64_t unfinished = 0;
  int64_t failed() const;  // streams that did not end OK
};

// `stats` (one stream's, or every stream's) at `fps`.
StreamSummary Summarise(const std::vector<const StreamStats*>& stats, double fps);

struct StreamRunResult {
  int streams = 0;
  double fps = 0;
  double seconds = 0;
  std::chrono::system_clock::time_point started;
  std::vector<StreamStats> per_stream;
  StreamSummary overall;
};

// Runs N streams over `channels` (at least one); blocks for the run and its
// drain.
StreamRunResult RunStreams(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                           const StreamRunOptions& options);

// When frame `frame` of stream `stream` (of `streams`) is due, in
// microseconds from the run's start.
int64_t FrameDueUs(int stream, int streams, int64_t frame, double fps);

// A run passes when every stream ended OK, some window was answered, none
// was dropped and the p99 of the server-measured latency is within
// `budget_us`.
bool WithinBudget(const StreamSummary& overall, double budget_us);

// --find-max-streams: `trial(n)` runs n streams and says whether they
// passed. Tries 1, 2, 4, ... while they pass (never above `limit`), then
// bisects between the last pass and the first failure. max_streams is the
// largest n that passed (0: not even one).
struct StreamSearch {
  int max_streams = 0;
  std::vector<std::pair<int, bool>> trials;  // n, passed; in order
};
StreamSearch FindMaxStreams(const std::function<bool(int)>& trial, int limit);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_STREAM_H_
