// HangWatchdog: finds batches that never end.
//
// A model's forward can hang (a deadlock in a custom op, a driver that stops
// answering). A thread stuck inside LibTorch cannot be cancelled or safely
// abandoned in-process, so the rule (docs/limits.md, "Hung models") is: a
// batch running longer than `limit` makes its model version unhealthy, as
// an unusable device does (ServedModel::CheckHung): the version is no
// longer ready, clipserve_model_hangs_total counts it, and the server's
// health turns NOT_SERVING, so that Kubernetes' probes take the pod out of
// service and restart it. Until then the model's other instances keep
// serving its queue, and the stuck batch's requests are answered if it ends.
//
// One thread, which wakes every min(limit / 4, 1 s) (at least every 10 ms)
// and checks every version `models()` returns. Ownership: `models` must stay
// callable until the watchdog is destroyed.
#ifndef CLIPSERVE_SERVER_LIFECYCLE_HANG_WATCHDOG_H_
#define CLIPSERVE_SERVER_LIFECYCLE_HANG_WATCHDOG_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/served_model.h"

namespace clipserve::server {

class HangWatchdog {
 public:
  using ModelList = std::function<std::vector<std::shared_ptr<ServedModel>>()>;

  // Starts watching; `limit` zero or less: watches nothing (no thread).
  HangWatchdog(ModelList models, std::chrono::milliseconds limit);
  // Stops the thread.
  ~HangWatchdog();

  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

 private:
  void Loop();

  const ModelList models_;
  const std::chrono::milliseconds limit_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // mu_
  std::thread thread_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_LIFECYCLE_HANG_WATCHDOG_H_
