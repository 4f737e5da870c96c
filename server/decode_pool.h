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
  DecodePool(int threads, size_t max_pending);
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
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool closed_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_DECODE_POOL_H_
