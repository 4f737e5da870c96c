// ModelRepository: the models a server serves, and their lifecycle.
//
// Layout and version policy: server/lifecycle/repository_scan.h. Every served
// version of a model is its own ServedModel (instances, batcher, metrics
// series); a request names a version, a label of one, or nothing (the
// highest served version).
//
// Control modes (docs/lifecycle.md):
//   kNone      everything is loaded at start and never changes;
//   kPoll      the directory is read every poll_interval; a model whose
//              files changed and then stayed the same for one interval is
//              loaded again (a new model, version, config or labels.txt), a
//              removed model directory is unloaded;
//   kExplicit  only startup_models at start, then Load()/Unload() (the
//              repository RPCs).
// A load builds and warms up the new versions off the request path, then
// makes the model's new set of versions live in one step; versions whose
// files and config did not change are kept, not reloaded. A load that fails
// changes nothing that serves: it is logged, counted
// (clipserve_model_load_failures_total) and shown in Index(). A replaced or
// unloaded version stops being found at once, answers every request that
// found it, and is freed when the last is answered.
//
// Thread-safety: Find(), models() and the readers are safe from any thread
// (a shared lock held for a map lookup). Loads, unloads and polls run one at
// a time on the repository's lifecycle thread.
#ifndef CLIPSERVE_SERVER_LIFECYCLE_MODEL_REPOSITORY_H_
#define CLIPSERVE_SERVER_LIFECYCLE_MODEL_REPOSITORY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clipserve/config.pb.h"
#include "runtime/backend.h"
#include "server/lifecycle/repository_scan.h"
#include "server/metrics.h"
#include "server/served_model.h"

namespace clipserve::server {

// Name of the model served when no repository is given.
inline constexpr const char* kBuiltinModelName = "i3d";

// The instances of the model whose validated config is `config`, placed by
// InstanceOptionsFromConfig and loaded from `version_dir`: TorchScript
// <version_dir>/model.pt; I3D <version_dir>/model.safetensors or model.pth
// (an empty `version_dir`: random weights). Errors name the model.
absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> LoadInstances(
    const config::ModelConfig& config, const std::string& version_dir,
    int cuda_devices);

enum class ModelControlMode { kNone, kPoll, kExplicit };
// "none", "poll" or "explicit".
absl::StatusOr<ModelControlMode> ParseModelControlMode(absl::string_view text);

struct RepositoryOptions {
  // The repository directory.
  std::string root;
  ModelControlMode mode = ModelControlMode::kNone;
  // kPoll: how often the directory is read.
  std::chrono::milliseconds poll_interval{std::chrono::seconds(5)};
  // kExplicit: models loaded at start (may be empty).
  std::vector<std::string> startup_models;
};

// One line of the repository index (Triton's RepositoryIndex entry).
struct IndexEntry {
  std::string name;
  std::string version;  // empty: the model as a whole
  std::string state;    // READY, LOADING, UNLOADING or UNAVAILABLE
  std::string reason;   // why UNAVAILABLE
};

class ModelRepository {
 public:
  // Loads the models `options` names (every model, or startup_models in
  // kExplicit) and starts the lifecycle thread. Any model that fails stops
  // the start with an error naming its file and field. Each model's series
  // go to `metrics`, which must outlive the repository.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Open(
      const RepositoryOptions& options, Metrics* metrics);

  // The built-in default model: Inception-I3D with random (untrained)
  // weights, 400 classes, 16 x 224 x 224 clips, so the server runs with
  // nothing to download. Mode kNone.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Builtin(
      Metrics* metrics);

  // Stops the lifecycle thread and drains every model (Shutdown()).
  ~ModelRepository();

  // The model `name` (empty: the first served model) at `version`: empty
  // (the highest served version), a version number or a label. NOT_FOUND
  // naming what exists otherwise. The caller holds the model for as long as
  // it uses it.
  absl::StatusOr<std::shared_ptr<ServedModel>> Find(
      const std::string& name, const std::string& version) const;

  // Every served version of every model, by name then version.
  std::vector<std::shared_ptr<ServedModel>> models() const;

  // Bytes of the largest single request any model served now accepts
  // (max_batch_size FP32 clips at its full shape), or 0 when some model
  // accepts any size.
  size_t largest_request_bytes() const;

  ModelControlMode mode() const { return options_.mode; }
  // The repository directory; empty for the built-in model.
  const std::string& root() const { return options_.root; }

  // Readiness. The server: not draining, and every model it must serve
  // (loaded at start, or since, and not unloaded) has served versions, all
  // healthy. A model: its version (as Find) is served and healthy; a model
  // the repository knows but does not serve (loading, failed, unloaded), or
  // a version being loaded, is not ready; NOT_FOUND for a name it has never
  // seen, and for a served model's version that is neither served nor
  // loading.
  bool ready() const;
  absl::StatusOr<bool> ModelReady(const std::string& name,
                                  const std::string& version) const;

  // Every model on disk or ever loaded, by name, one entry per version in
  // each state; `ready_only`: READY entries only.
  std::vector<IndexEntry> Index(bool ready_only) const;

  // kExplicit: loads (or loads again from disk) the model `name`, or
  // unloads it; `done` is called with the result on the lifecycle thread.
  // FAILED_PRECONDITION in other modes, UNAVAILABLE once shutting down.
  void Load(const std::string& name, std::function<void(absl::Status)> done);
  void Unload(const std::string& name, std::function<void(absl::Status)> done);

  // Called on the lifecycle thread when a model gets its first served
  // version (true) or loses its last (false). Set before serving.
  void SetServingListener(std::function<void(const std::string&, bool)> listener);
  // Called once per model version whose device becomes unusable. Set
  // before serving.
  void SetDeviceFailureHandler(
      std::function<void(const std::string&, const absl::Status&)> handler);

  // From now on draining() is true: every protocol refuses new requests
  // (UNAVAILABLE) and reports not ready, while queued ones still complete.
  void StartDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // Stops the lifecycle thread (queued loads and unloads get UNAVAILABLE),
  // then answers every queued request and stops every model's instances.
  // Idempotent.
  void Shutdown();

 private:
  // A model's served versions and labels: what Find() reads.
  struct Served {
    std::map<int64_t, std::shared_ptr<ServedModel>> versions;
    std::map<std::string, int64_t> labels;
  };
  // What the lifecycle knows of a model (state_mu_).
  struct ModelState {
    std::string applied;         // fingerprint last acted on (kPoll)
    std::string seen;            // fingerprint read at the last poll
    std::string model_key;       // ModelOnDisk::model_key of what serves
    std::map<int64_t, std::string> version_fingerprints;  // of what serves
    std::set<int64_t> loading;   // versions being loaded now
    std::string failure;         // the last load's error, until one succeeds
    bool required = false;       // counts for the server's readiness
  };
  struct Op {
    enum Kind { kLoad, kUnload } kind;
    std::string name;
    std::function<void(absl::Status)> done;
  };

  ModelRepository(RepositoryOptions options, Metrics* metrics)
      : options_(std::move(options)), metrics_(metrics) {}

  // Reads <root>/<name> and makes what it holds live (lifecycle thread, or
  // before it starts).
  absl::Status LoadFromDisk(const std::string& name);
  // Makes `disk` the model's served set, loading what changed.
  absl::Status Apply(const ModelOnDisk& disk);
  absl::Status UnloadNow(const std::string& name);
  // Find() with mu_ held (shared at least); *served: whether `name` has
  // served versions now.
  absl::StatusOr<std::shared_ptr<ServedModel>> FindLocked(const std::string& name,
                                                          const std::string& version,
                                                          bool* served) const;
  // One poll pass (kPoll).
  void Poll();
  // Frees retired versions nobody holds any more.
  void Reap();
  void Retire(std::shared_ptr<ServedModel> model);
  void Enqueue(Op op);
  void LifecycleLoop();
  void Goes(const std::string& name, bool serving);
  void RecordFailure(const std::string& name, const absl::Status& error);
  void Install(const std::shared_ptr<ServedModel>& model);

  const RepositoryOptions options_;
  Metrics* const metrics_;
  std::atomic<bool> draining_{false};

  mutable std::shared_mutex mu_;
  std::map<std::string, Served> served_;  // mu_

  mutable std::mutex state_mu_;
  std::map<std::string, ModelState> states_;               // state_mu_
  std::vector<std::shared_ptr<ServedModel>> retired_;      // state_mu_
  std::deque<Op> ops_;                                     // state_mu_
  bool stop_ = false;                                      // state_mu_
  std::condition_variable wake_;
  std::function<void(const std::string&, bool)> listener_;  // state_mu_
  std::function<void(const std::string&, const absl::Status&)>
      on_device_failure_;  // state_mu_
  std::thread lifecycle_;
  bool shut_down_ = false;  // Shutdown() has run (caller's thread)
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_LIFECYCLE_MODEL_REPOSITORY_H_
