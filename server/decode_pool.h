// DecodePool: a fixed set of threads for CPU-heavy request preparation
// (decoding encoded video), off gRPC's threads and off the batcher's.
#ifndef CLIPSERVE_SERVER_DECODE_POOL_H_
#define CLIPSERVE_SERVER_DECODE_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace clipserve::server {

class DecodePool {
 public:
  // `threads` >= 1 workers; at most `max_pending` jobs wait for one.
  // `on_waiting`, when set, is told the number of jobs waiting each time it
  // changes (under the pool's lock: it must be quick and must not call the
  // pool), e.g. to set a gauge.
  DecodePool(int threads, size_t max_pending,
             std::function<void(size_t waiting)> on_waiting = {});
  // Shutdown().
  ~DecodePool();

  DecodePool(const DecodePool&) = delete;
  DecodePool& operator=(const DecodePool&) = delete;

  // Runs `job` on a worker. RESOURCE_EXHAUSTED when max_pending jobs wait
  // already, UNAVAILABLE after Shutdown(); then `job` is not run.
  absl::Status Submit(std::function<void()> job);

  // Refuses new jobs, runs the waiting ones, joins the workers. Idempotent.
  void Shutdown();

  int threads() const { return static_cast<int>(workers_.size()); }

 private:
  void Work();

  const size_t max_pending_;
  const std::function<void(size_t)> on_waiting_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool closed_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_DECODE_POOL_H_
