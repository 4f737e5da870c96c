#include "server/lifecycle/model_repository.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/device.h"
#include "runtime/i3d_backend.h"
#include "server/log.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

namespace fs = std::filesystem;

// How often retired versions are checked for their last holder.
constexpr auto kReapInterval = std::chrono::milliseconds(20);

int CpuCores() {
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string PrecisionOf(const config::ModelConfig& config) {
  auto it = config.parameters().find("precision");
  return it == config.parameters().end() ? "fp32" : it->second.string_value();
}

std::string Describe(const ServedModel& m, double seconds) {
  const auto& b = m.config().dynamic_batching();
  return absl::StrCat(
      "loaded model '", m.name(), "' version ", m.version(), " (",
      m.config().backend(), ", ", m.num_instances(), " instance(s) on ",
      absl::StrJoin(m.devices(), ", "), ", ", m.num_lanes(),
      " batch(es) in flight, ", PrecisionOf(m.config()), ", input 3 x ",
      m.spec().input.frames, " x ", m.spec().input.height, " x ",
      m.spec().input.width, ", ", m.spec().num_classes,
      " classes, max_batch_size ", m.config().max_batch_size(),
      ", max_queue_delay ", b.max_queue_delay_microseconds(),
      " us, max_queue_size ", b.max_queue_size(), ") in ",
      absl::StrCat(static_cast<int64_t>(seconds * 1000)), " ms");
}

// Loads and warms up one version of `disk`.
absl::StatusOr<std::unique_ptr<ServedModel>> LoadVersion(
    const ModelOnDisk& disk, const VersionOnDisk& version, Metrics* metrics) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> instances =
      LoadInstances(disk.config, version.dir, runtime::CudaDeviceCount());
  if (!instances.ok()) return instances.status();
  if (instances->front()->untrained()) {
    LogWarning(absl::StrCat("model '", disk.name, "' version ", version.number,
                            " has no weights file",
                            version.dir.empty() ? "" : " in ", version.dir,
                            ": serving RANDOM, UNTRAINED weights (answers are "
                            "meaningless)"));
  }
  absl::StatusOr<std::unique_ptr<ServedModel>> model = ServedModel::Create(
      disk.config, absl::StrCat(version.number), disk.labels,
      *std::move(instances), metrics);
  if (model.ok()) {
    const double seconds = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - start)
                               .count();
    (*model)->metrics().load_seconds().Set(seconds);
    LogInfo(Describe(**model, seconds));
  }
  return model;
}

std::string ServedList(const std::map<int64_t, std::shared_ptr<ServedModel>>& v,
                       const std::map<std::string, int64_t>& labels) {
  std::vector<std::string> parts;
  for (const auto& [n, m] : v) parts.push_back(absl::StrCat(n));
  std::string out = absl::StrCat("serving version(s) ", absl::StrJoin(parts, ", "));
  if (!labels.empty()) {
    absl::StrAppend(&out, "; labels ",
                    absl::StrJoin(labels, ", ", absl::PairFormatter("=")));
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelControlMode> ParseModelControlMode(absl::string_view text) {
  if (text == "none") return ModelControlMode::kNone;
  if (text == "poll") return ModelControlMode::kPoll;
  if (text == "explicit") return ModelControlMode::kExplicit;
  return absl::InvalidArgumentError(absl::StrCat(
      "--model-control-mode must be none, poll or explicit, got \"", text, "\""));
}

absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> LoadInstances(
    const config::ModelConfig& config, const std::string& version_dir,
    int cuda_devices) {
  absl::StatusOr<std::vector<runtime::BackendOptions>> options =
      InstanceOptionsFromConfig(config, cuda_devices, CpuCores());
  absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> instances =
      !options.ok() ? options.status()
      : config.backend() == kI3dBackend
          ? runtime::LoadI3dBackends(version_dir, SpecFromConfig(config),
                                     *options)
          : runtime::LoadTorchScriptBackends(
                (fs::path(version_dir) / "model.pt").string(),
                SpecFromConfig(config), *options);
  if (!instances.ok()) {
    return absl::Status(instances.status().code(),
                        absl::StrCat("model '", config.name(), "': ",
                                     instances.status().message()));
  }
  return instances;
}


absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Open(
    const RepositoryOptions& options, Metrics* metrics) {
  absl::StatusOr<std::vector<std::string>> names = ListModels(options.root);
  if (!names.ok()) return names.status();
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository(options, metrics));
  std::vector<std::string> load;
  if (options.mode == ModelControlMode::kExplicit) {
    for (const std::string& name : options.startup_models) {
      if (!std::binary_search(names->begin(), names->end(), name)) {
        return absl::NotFoundError(absl::StrCat(
            "--load-model ", name, ": no such model in ", options.root,
            " (found: ", names->empty() ? "none" : absl::StrJoin(*names, ", "), ")"));
      }
      load.push_back(name);
    }
  } else {
    if (names->empty() && options.mode == ModelControlMode::kNone) {
      return absl::NotFoundError(absl::StrCat(
          "model repository ", options.root,
          " holds no model (expected <repository>/<model>/config.pbtxt)"));
    }
    load = *names;
  }
  for (const std::string& name : load) {
    const std::string fingerprint = ModelFingerprint(options.root, name);
    if (absl::Status s = repo->LoadFromDisk(name); !s.ok()) return s;
    ModelState& state = repo->states_[name];
    state.applied = state.seen = fingerprint;
  }
  if (options.mode != ModelControlMode::kNone) {
    repo->lifecycle_ = std::thread([r = repo.get()] { r->LifecycleLoop(); });
  }
  return repo;
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Builtin(
    Metrics* metrics) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<config::ModelConfig> config = ParseModelConfig(
      absl::StrCat("name: \"", kBuiltinModelName, "\"\n",
                   R"pb(
                     backend: "i3d"
                     max_batch_size: 4
                     input { name: "clip" data_type: TYPE_FP32 dims: [ 3, 16, 224, 224 ] }
                     output { name: "logits" data_type: TYPE_FP32 dims: [ 400 ] }
                     dynamic_batching { max_queue_delay_microseconds: 10000 max_queue_size: 64 }
                     instance_group { count: 1 kind: KIND_AUTO }
                   )pb"),
      "<built-in>");
  if (!config.ok()) return config.status();
  if (absl::Status s =
          ValidateModelConfig(&*config, "<built-in>", kBuiltinModelName);
      !s.ok()) {
    return s;
  }
  const runtime::ModelSpec spec = SpecFromConfig(*config);
  absl::StatusOr<std::vector<runtime::BackendOptions>> options =
      InstanceOptionsFromConfig(*config, runtime::CudaDeviceCount(),
                                CpuCores());
  if (!options.ok()) return options.status();
  // Start quickly: warm up batch 1 only.
  for (runtime::BackendOptions& o : *options) o.warmup_batch_sizes = {1};
  absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> instances =
      runtime::LoadI3dBackends("", spec, *options);
  if (!instances.ok()) return instances.status();
  LogWarning(absl::StrCat("no --model-repository given: serving the built-in '",
                          kBuiltinModelName,
                          "' (Inception-I3D, 400 classes, 16 x 224 x 224) with "
                          "RANDOM, UNTRAINED weights: its answers are "
                          "meaningless; for trying the server only"));
  absl::StatusOr<std::unique_ptr<ServedModel>> model = ServedModel::Create(
      *std::move(config), "1", {}, *std::move(instances), metrics);
  if (!model.ok()) return model.status();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  (*model)->metrics().load_seconds().Set(seconds);
  LogInfo(Describe(**model, seconds));
  auto repo = std::unique_ptr<ModelRepository>(
      new ModelRepository(RepositoryOptions{}, metrics));
  std::shared_ptr<ServedModel> served = *std::move(model);
  repo->Install(served);
  repo->served_[kBuiltinModelName].versions[1] = std::move(served);
  ModelState& state = repo->states_[kBuiltinModelName];
  state.required = true;
  return repo;
}

ModelRepository::~ModelRepository() { Shutdown(); }

absl::StatusOr<std::shared_ptr<ServedModel>> ModelRepository::Find(
    const std::string& name, const std::string& version) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  bool served = false;
  return FindLocked(name, version, &served);
}

absl::StatusOr<std::shared_ptr<ServedModel>> ModelRepository::FindLocked(
    const std::string& name, const std::string& version, bool* served) const {
  auto it = name.empty() ? served_.begin() : served_.find(name);
  *served = it != served_.end() && !it->second.versions.empty();
  if (!*served) {
    std::vector<std::string> names;
    for (const auto& [n, m] : served_) {
      if (!m.versions.empty()) names.push_back(n);
    }
    return absl::NotFoundError(absl::StrCat(
        "unknown model '", name, "' (serving: ",
        names.empty() ? "no model" : absl::StrJoin(names, ", "), ")"));
  }
  const Served& s = it->second;
  if (version.empty()) return s.versions.rbegin()->second;
  int64_t number = -1;
  if (!absl::SimpleAtoi(version, &number)) {
    auto label = s.labels.find(version);
    if (label != s.labels.end()) number = label->second;
  }
  auto v = s.versions.find(number);
  if (v == s.versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", it->first,
                                            "' has no version '", version,
                                            "' (", ServedList(s.versions, s.labels),
                                            ")"));
  }
  return v->second;
}

std::vector<std::shared_ptr<ServedModel>> ModelRepository::models() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<std::shared_ptr<ServedModel>> out;
  for (const auto& [n, s] : served_) {
    for (const auto& [v, m] : s.versions) out.push_back(m);
  }
  return out;
}

size_t ModelRepository::largest_request_bytes() const {
  size_t largest = 0;
  for (const std::shared_ptr<ServedModel>& m : models()) {
    const runtime::ClipShape& s = m->spec().input;
    if (s.frames < 0 || s.height < 0 || s.width < 0) return 0;
    // A batch request (Open Inference Protocol) carries up to
    // max_batch_size clips; FP32 is the largest form of each.
    largest = std::max(largest, static_cast<size_t>(s.elements()) * sizeof(float) *
                                    static_cast<size_t>(m->config().max_batch_size()));
  }
  return largest;
}

bool ModelRepository::ready() const {
  if (draining()) return false;
  std::vector<std::string> required;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    for (const auto& [name, state] : states_) {
      if (state.required) required.push_back(name);
    }
  }
  std::shared_lock<std::shared_mutex> lock(mu_);
  for (const std::string& name : required) {
    auto it = served_.find(name);
    if (it == served_.end() || it->second.versions.empty()) return false;
    for (const auto& [v, m] : it->second.versions) {
      if (!m->healthy()) return false;
    }
  }
  return true;
}

absl::StatusOr<bool> ModelRepository::ModelReady(const std::string& name,
                                                 const std::string& version) const {
  absl::StatusOr<std::shared_ptr<ServedModel>> model;
  bool served = false;
  {
    // One look at what is served: a model unloaded and loaded again
    // between two looks would otherwise be reported unknown (NOT_FOUND).
    std::shared_lock<std::shared_mutex> lock(mu_);
    model = FindLocked(name, version, &served);
  }
  if (model.ok()) return !draining() && (*model)->healthy();
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    auto it = states_.find(name);
    if (it != states_.end()) {
      int64_t number = -1;
      const bool loading = absl::SimpleAtoi(version, &number) &&
                           it->second.loading.count(number) > 0;
      // A served model's unknown version stays NOT_FOUND; a version being
      // loaded, or a model with nothing served, is known and not ready.
      known = loading || !served;
    }
  }
  if (!known && !served && !options_.root.empty()) {
    std::error_code ec;
    known = !name.empty() && name[0] != '.' &&
            name.find('/') == std::string::npos &&
            fs::is_regular_file(fs::path(options_.root) / name / "config.pbtxt", ec);
  }
  if (known) return false;
  return model.status();
}

std::vector<IndexEntry> ModelRepository::Index(bool ready_only) const {
  std::set<std::string> names;
  if (!options_.root.empty()) {
    if (absl::StatusOr<std::vector<std::string>> on_disk = ListModels(options_.root);
        on_disk.ok()) {
      names.insert(on_disk->begin(), on_disk->end());
    }
  }
  std::map<std::string, std::vector<IndexEntry>> by_name;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [name, s] : served_) {
      names.insert(name);
      for (const auto& [v, m] : s.versions) {
        by_name[name].push_back(
            {name, absl::StrCat(v), m->healthy() ? "READY" : "UNAVAILABLE",
             m->healthy() ? "" : "its device failed"});
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    for (const auto& [name, state] : states_) {
      names.insert(name);
      for (int64_t v : state.loading) {
        by_name[name].push_back({name, absl::StrCat(v), "LOADING", ""});
      }
      if (!state.failure.empty()) {
        by_name[name].push_back({name, "", "UNAVAILABLE", state.failure});
      }
    }
    for (const std::shared_ptr<ServedModel>& m : retired_) {
      by_name[m->name()].push_back({m->name(), m->version(), "UNLOADING", ""});
    }
  }
  std::vector<IndexEntry> out;
  for (const std::string& name : names) {
    std::vector<IndexEntry>& entries = by_name[name];
    if (entries.empty()) {
      entries.push_back({name, "", "UNAVAILABLE", "not loaded"});
    }
    for (IndexEntry& e : entries) {
      if (!ready_only || e.state == "READY") out.push_back(std::move(e));
    }
  }
  return out;
}

void ModelRepository::Load(const std::string& name,
                           std::function<void(absl::Status)> done) {
  Enqueue({Op::kLoad, name, std::move(done)});
}

void ModelRepository::Unload(const std::string& name,
                             std::function<void(absl::Status)> done) {
  Enqueue({Op::kUnload, name, std::move(done)});
}

void ModelRepository::Enqueue(Op op) {
  // A name is one directory entry of the repository, never a path.
  if (op.name.empty() || op.name[0] == '.' ||
      op.name.find_first_of("/\\") != std::string::npos) {
    op.done(absl::InvalidArgumentError(absl::StrCat(
        "'", op.name, "' is not a model name (a directory of the repository)")));
    return;
  }
  if (options_.mode != ModelControlMode::kExplicit) {
    op.done(absl::FailedPreconditionError(absl::StrCat(
        "models are loaded and unloaded on request only with "
        "--model-control-mode explicit (this server: ",
        options_.mode == ModelControlMode::kPoll ? "poll, which follows the "
                                                   "repository directory"
                                                 : "none",
        ")")));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (!stop_ && !draining()) {
      ops_.push_back(std::move(op));
      wake_.notify_all();
      return;
    }
  }
  op.done(absl::UnavailableError("server is shutting down"));
}

void ModelRepository::SetServingListener(
    std::function<void(const std::string&, bool)> listener) {
  std::lock_guard<std::mutex> lock(state_mu_);
  listener_ = std::move(listener);
}

void ModelRepository::SetDeviceFailureHandler(
    std::function<void(const std::string&, const absl::Status&)> handler) {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    on_device_failure_ = std::move(handler);
  }
  for (const std::shared_ptr<ServedModel>& m : models()) Install(m);
}

void ModelRepository::Install(const std::shared_ptr<ServedModel>& model) {
  model->GoLive();
  std::function<void(const std::string&, const absl::Status&)> handler;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    handler = on_device_failure_;
  }
  if (!handler) return;
  model->SetDeviceFailureHandler(
      [handler, name = model->name()](const absl::Status& why) {
        handler(name, why);
      });
}

void ModelRepository::Goes(const std::string& name, bool serving) {
  LogInfo(absl::StrCat("model '", name, "' ",
                       serving ? "is served" : "is no longer served"));
  std::function<void(const std::string&, bool)> listener;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    listener = listener_;
  }
  if (listener) listener(name, serving);
}

void ModelRepository::RecordFailure(const std::string& name,
                                    const absl::Status& error) {
  metrics_->load_failures(name).Increment();
  LogError(absl::StrCat("cannot load model '", name, "': ", error.message(),
                        "; what it served before (if anything) still serves"));
  std::lock_guard<std::mutex> lock(state_mu_);
  ModelState& state = states_[name];
  state.failure = std::string(error.message());
  state.loading.clear();
}

absl::Status ModelRepository::LoadFromDisk(const std::string& name) {
  metrics_->load_failures(name);  // the series exists from the first attempt
  absl::StatusOr<ModelOnDisk> disk = ScanModel(options_.root, name);
  absl::Status status = disk.ok() ? Apply(*disk) : disk.status();
  if (!status.ok()) RecordFailure(name, status);
  return status;
}

absl::Status ModelRepository::Apply(const ModelOnDisk& disk) {
  Served current;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (auto it = served_.find(disk.name); it != served_.end()) current = it->second;
  }
  ModelState before;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    before = states_[disk.name];
  }
  // What can stay, and what must be loaded.
  Served next;
  next.labels = disk.version_labels;
  std::vector<const VersionOnDisk*> to_load;
  for (const VersionOnDisk& v : disk.versions) {
    auto kept = current.versions.find(v.number);
    auto fp = before.version_fingerprints.find(v.number);
    if (kept != current.versions.end() && before.model_key == disk.model_key &&
        fp != before.version_fingerprints.end() && fp->second == v.fingerprint &&
        kept->second->healthy()) {
      next.versions[v.number] = kept->second;
    } else {
      to_load.push_back(&v);
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    for (const VersionOnDisk* v : to_load) states_[disk.name].loading.insert(v->number);
  }
  for (const VersionOnDisk* v : to_load) {
    absl::StatusOr<std::unique_ptr<ServedModel>> model =
        LoadVersion(disk, *v, metrics_);
    if (!model.ok()) {
      // What was loaded so far is dropped; nothing that serves changed.
      return absl::Status(model.status().code(),
                          absl::StrCat("version ", v->number, ": ",
                                       model.status().message()));
    }
    next.versions[v->number] = *std::move(model);
  }
  // Live in one step.
  const bool was_served = !current.versions.empty();
  for (const auto& [v, m] : next.versions) {
    if (current.versions.count(v) == 0 || current.versions[v] != m) Install(m);
  }
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    served_[disk.name] = next;
  }
  for (auto& [v, m] : current.versions) {
    auto now = next.versions.find(v);
    if (now != next.versions.end() && now->second == m) continue;
    // Another instance of the same version serves now: its gauge stays 1.
    if (now == next.versions.end()) m->metrics().ready().Set(0);
    Retire(std::move(m));
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    ModelState& state = states_[disk.name];
    state.model_key = disk.model_key;
    state.version_fingerprints.clear();
    for (const VersionOnDisk& v : disk.versions) {
      state.version_fingerprints[v.number] = v.fingerprint;
    }
    state.loading.clear();
    state.failure.clear();
    state.required = true;
    }
  LogInfo(absl::StrCat("model '", disk.name, "': ",
                       ServedList(next.versions, next.labels), " (",
                       to_load.size(), " loaded, ",
                       next.versions.size() - to_load.size(), " kept)"));
  if (!was_served) Goes(disk.name, true);
  return absl::OkStatus();
}

absl::Status ModelRepository::UnloadNow(const std::string& name) {
  Served gone;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto it = served_.find(name);
    if (it != served_.end()) {
      gone = std::move(it->second);
      served_.erase(it);
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    auto it = states_.find(name);
    if (gone.versions.empty() && it == states_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
    }
    ModelState& state = states_[name];
    state.required = false;
    state.model_key.clear();
    state.version_fingerprints.clear();
    state.failure.clear();
  }
  if (gone.versions.empty()) return absl::OkStatus();
  for (auto& [v, m] : gone.versions) {
    m->metrics().ready().Set(0);
    Retire(std::move(m));
  }
  Goes(name, false);
  return absl::OkStatus();
}

void ModelRepository::Retire(std::shared_ptr<ServedModel> model) {
  model->MarkRetired();
  LogInfo(absl::StrCat("model '", model->name(), "' version ", model->version(),
                       " no longer takes requests; freed once those it took "
                       "are answered"));
  std::lock_guard<std::mutex> lock(state_mu_);
  retired_.push_back(std::move(model));
  metrics_->models_retiring().Set(static_cast<double>(retired_.size()));
}

void ModelRepository::Reap() {
  std::vector<std::shared_ptr<ServedModel>> freed;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    // Nothing else can take a new reference to a retired version: once the
    // count is 1, this list holds the only one.
    auto idle = std::stable_partition(
        retired_.begin(), retired_.end(),
        [](const std::shared_ptr<ServedModel>& m) { return m.use_count() > 1; });
    std::move(idle, retired_.end(), std::back_inserter(freed));
    retired_.erase(idle, retired_.end());
    metrics_->models_retiring().Set(static_cast<double>(retired_.size()));
  }
  for (std::shared_ptr<ServedModel>& m : freed) {
    const std::string what =
        absl::StrCat("model '", m->name(), "' version ", m->version());
    m.reset();  // drains (nothing is queued) and frees the instances
    LogInfo(absl::StrCat(what, " freed"));
  }
}

void ModelRepository::Poll() {
  absl::StatusOr<std::vector<std::string>> on_disk = ListModels(options_.root);
  if (!on_disk.ok()) {
    LogError(absl::StrCat("poll: ", on_disk.status().message()));
    return;
  }
  std::set<std::string> names(on_disk->begin(), on_disk->end());
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    for (const auto& [name, state] : states_) names.insert(name);
  }
  for (const std::string& name : names) {
    const std::string fingerprint = ModelFingerprint(options_.root, name);
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      ModelState& state = states_[name];
      const bool settled = fingerprint == state.seen;
      state.seen = fingerprint;
      // Changed since the last poll: still being written, perhaps. Wait
      // until it has stayed the same for a whole interval.
      if (!settled || fingerprint == state.applied) continue;
      state.applied = fingerprint;
    }
    if (fingerprint.empty()) {
      LogInfo(absl::StrCat("poll: model directory '", name, "' is gone"));
      UnloadNow(name).IgnoreError();
    } else {
      LogInfo(absl::StrCat("poll: model '", name, "' changed on disk"));
      LoadFromDisk(name).IgnoreError();
    }
  }
  metrics_->repository_polls().Increment();
}

void ModelRepository::LifecycleLoop() {
  auto next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
  std::unique_lock<std::mutex> lock(state_mu_);
  while (!stop_) {
    if (!ops_.empty()) {
      Op op = std::move(ops_.front());
      ops_.pop_front();
      lock.unlock();
      std::error_code ec;
      absl::Status status =
          op.kind == Op::kUnload ? UnloadNow(op.name)
          : fs::is_directory(fs::path(options_.root) / op.name, ec)
              ? LoadFromDisk(op.name)
              : absl::NotFoundError(absl::StrCat("no model '", op.name,
                                                 "' in the repository ",
                                                 options_.root));
      if (op.kind == Op::kLoad && status.ok()) {
        std::lock_guard<std::mutex> relock(state_mu_);
        states_[op.name].applied = ModelFingerprint(options_.root, op.name);
      }
      op.done(status);
      lock.lock();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (options_.mode == ModelControlMode::kPoll && now >= next_poll) {
      lock.unlock();
      Poll();
      lock.lock();
      next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
      continue;
    }
    if (!retired_.empty()) {
      lock.unlock();
      Reap();
      lock.lock();
      if (!retired_.empty()) {
        wake_.wait_for(lock, kReapInterval);
        continue;
      }
    }
    if (!stop_ && ops_.empty()) {
      if (options_.mode == ModelControlMode::kPoll) {
        wake_.wait_until(lock, next_poll);
      } else {
        wake_.wait(lock);
      }
    }
  }
}

void ModelRepository::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  StartDraining();
  std::deque<Op> pending;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    stop_ = true;
    pending.swap(ops_);
    wake_.notify_all();
  }
  if (lifecycle_.joinable()) lifecycle_.join();
  for (Op& op : pending) op.done(absl::UnavailableError("server is shutting down"));
  // The services refuse new requests before this is called, so draining the
  // models one after another loses nothing.
  for (const std::shared_ptr<ServedModel>& m : models()) {
    m->metrics().ready().Set(0);
    m->Shutdown();
  }
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    retired = retired_;
  }
  for (const std::shared_ptr<ServedModel>& m : retired) m->Shutdown();
}

}  // namespace clipserve::server
