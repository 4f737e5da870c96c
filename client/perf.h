// Load generation against a clipserve server: one step at a fixed
// concurrency (closed loop) or at a fixed request rate (open loop, Poisson
// arrivals), with what it measured.
//
// A step runs warm-up, then the measurement window, then a drain:
//   [start, start + warmup)                  warm-up: sent, not counted
//   [window_start, window_end)               the window
//   [window_end, window_end + drain)         no new requests; the window's
//                                            requests may still finish
// Which requests count:
//   - sent, ok, errors, dropped, the latency percentiles, the server-side
//     split and the batch-size histogram describe the requests *sent* (or,
//     for dropped, due to be sent) inside the window, whenever they finish
//     before the drain ends. The ones still unanswered then are cancelled and
//     counted as `unfinished` (not as errors, not in the latencies).
//   - throughput (requests_per_second, clips_per_second) counts the OK
//     responses *received* inside the window, whenever they were sent, over
//     the window's length: under overload the drain cannot inflate it.
// In a steady state the two sets have the same size.
#ifndef CLIPSERVE_CLIENT_PERF_H_
#define CLIPSERVE_CLIENT_PERF_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "client/perf_target.h"

namespace clipserve::client {

enum class LoadMode {
  kConcurrency,  // closed loop: `concurrency` calls always in flight
  kRequestRate,  // open loop: Poisson arrivals at `request_rate` per second
};

struct StepOptions {
  LoadMode mode = LoadMode::kConcurrency;
  int concurrency = 1;            // kConcurrency
  double request_rate = 10;       // kRequestRate: requests per second
  int max_outstanding = 1024;     // kRequestRate: arrivals beyond are dropped
  uint64_t seed = 1;              // kRequestRate: the arrival process
  std::chrono::milliseconds warmup{1000};
  std::chrono::milliseconds window{5000};
  std::chrono::milliseconds drain{10000};
  std::chrono::milliseconds timeout{0};  // per-call deadline; 0: none
  // A live line on stderr (elapsed, sent, ok, errors, rate), at most 4 times
  // a second, cleared when the step ends. For terminals only.
  bool progress = false;
  std::string progress_label;  // e.g. "concurrency 8"
};

// What one step measured. Latencies are client-side, in microseconds, from
// the call's start to its end.
struct StepResult {
  LoadMode mode = LoadMode::kConcurrency;
  int concurrency = 0;        // kConcurrency
  double offered_rate = 0;    // kRequestRate: requests per second
  int clips_per_request = 1;
  std::chrono::system_clock::time_point started;  // the step's start
  double seconds = 0;         // length of the window

  int64_t sent = 0;           // requests sent inside the window
  int64_t ok = 0;             // ... that succeeded
  std::map<std::string, int64_t> errors;  // ... that failed, by code name
  int64_t dropped = 0;        // arrivals in the window not sent: max_outstanding
  int64_t in_flight_at_window_end = 0;  // the window's requests then unanswered
  int64_t unfinished = 0;     // ... still unanswered when the drain ended
  int64_t ok_received = 0;    // OK responses received inside the window

  double achieved_rate = 0;        // sent / seconds
  double requests_per_second = 0;  // ok_received / seconds
  double clips_per_second = 0;     // requests_per_second * clips_per_request
  double max_send_lag_us = 0;      // kRequestRate: latest send vs. schedule

  double min_us = 0, mean_us = 0, p50_us = 0, p90_us = 0, p95_us = 0,
         p99_us = 0, max_us = 0;

  // Server-side, means over the OK responses that reported them.
  int64_t split_count = 0;
  double mean_queue_us = 0, mean_compute_us = 0, mean_decode_us = 0,
         mean_batch_size = 0;
  // Server-reported batch size -> OK responses.
  std::map<int64_t, int64_t> batch_sizes;

  int64_t error_count() const;
};

// Runs one step against `target`. Blocks for warm-up + window (+ drain while
// calls are still in flight).
StepResult RunStep(LoadTarget& target, const StepOptions& options);

// The q-quantile (0..1) of `sorted` by nearest rank; 0 when empty.
double Quantile(const std::vector<double>& sorted, double q);

// Inter-arrival gaps of a Poisson process: exponential with mean 1 / rate,
// reproducible from the seed.
class PoissonArrivals {
 public:
  PoissonArrivals(double rate_per_second, uint64_t seed)
      : rng_(seed), gap_(rate_per_second) {}
  double NextGapSeconds() { return gap_(rng_); }

 private:
  std::mt19937_64 rng_;
  std::exponential_distribution<double> gap_;
};

const char* LoadModeName(LoadMode mode);  // "concurrency", "request-rate"

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_PERF_H_
