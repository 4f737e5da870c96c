#include "server/model_repository.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
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

int CpuCores() {
  return std::max(1u, std::thread::hardware_concurrency());
}

absl::StatusOr<std::vector<std::string>> ReadLabels(const fs::path& path) {
  std::vector<std::string> labels;
  std::error_code ec;
  if (!fs::exists(path, ec)) return labels;
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": cannot be read"));
  std::string line;
  while (std::getline(in, line)) {
    labels.emplace_back(absl::StripAsciiWhitespace(line));
  }
  // A trailing empty line is not a label.
  while (!labels.empty() && labels.back().empty()) labels.pop_back();
  return labels;
}

// The highest numeric version directory of `model_dir`, or NOT_FOUND.
absl::StatusOr<std::string> LatestVersion(const fs::path& model_dir) {
  int64_t best = -1;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(model_dir, ec)) {
    int64_t v = 0;
    if (e.is_directory() && absl::SimpleAtoi(e.path().filename().string(), &v) &&
        v >= 0) {
      best = std::max(best, v);
    }
  }
  if (best < 0) {
    return absl::NotFoundError(absl::StrCat(
        model_dir.string(),
        ": no version directory (expected <model>/<version>/model.pt, e.g. 1/model.pt)"));
  }
  return absl::StrCat(best);
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

absl::StatusOr<std::unique_ptr<ServedModel>> LoadModel(const fs::path& dir,
                                                       Metrics* metrics) {
  const auto start = std::chrono::steady_clock::now();
  const std::string name = dir.filename().string();
  const fs::path config_path = dir / "config.pbtxt";
  absl::StatusOr<config::ModelConfig> config =
      LoadModelConfig(config_path.string(), name);
  if (!config.ok()) return config.status();
  const bool i3d = config->backend() == kI3dBackend;
  absl::StatusOr<std::string> version = LatestVersion(dir);
  if (!version.ok() && !(i3d && absl::IsNotFound(version.status()))) {
    return version.status();
  }
  // An I3D model without a version directory runs with random weights
  // (reported as untrained); call it version 1.
  const std::string version_name = version.ok() ? *version : "1";
  const std::string weights_dir =
      version.ok() ? (dir / *version).string() : std::string();
  absl::StatusOr<std::vector<std::string>> labels =
      ReadLabels(dir / "labels.txt");
  if (!labels.ok()) return labels.status();

  absl::StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> instances =
      LoadInstances(*config, weights_dir, runtime::CudaDeviceCount());
  if (!instances.ok()) return instances.status();
  if (instances->front()->untrained()) {
    LogWarning(absl::StrCat("model '", name, "' has no weights file in ",
                            weights_dir.empty() ? dir.string() : weights_dir,
                            ": serving RANDOM, UNTRAINED weights (answers are "
                            "meaningless)"));
  }
  absl::StatusOr<std::unique_ptr<ServedModel>> model = ServedModel::Create(
      *std::move(config), version_name, *std::move(labels),
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

}  // namespace

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

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const std::string& root, Metrics* metrics) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository ", root, " is not a directory"));
  }
  std::vector<fs::path> dirs;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory() && e.path().filename().string()[0] != '.') {
      dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "model repository ", root,
        " holds no model (expected <repository>/<model>/config.pbtxt)"));
  }
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  for (const fs::path& dir : dirs) {
    absl::StatusOr<std::unique_ptr<ServedModel>> model = LoadModel(dir, metrics);
    if (!model.ok()) return model.status();
    repo->models_.emplace((*model)->name(), *std::move(model));
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
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  repo->models_.emplace(kBuiltinModelName, *std::move(model));
  return repo;
}

absl::StatusOr<ServedModel*> ModelRepository::Find(
    const std::string& name, const std::string& version) const {
  ServedModel* model = nullptr;
  if (name.empty()) {
    model = models_.begin()->second.get();
  } else {
    auto it = models_.find(name);
    if (it == models_.end()) {
      std::vector<std::string> names;
      for (const auto& [n, m] : models_) names.push_back(n);
      return absl::NotFoundError(absl::StrCat("unknown model '", name,
                                              "' (serving: ",
                                              absl::StrJoin(names, ", "), ")"));
    }
    model = it->second.get();
  }
  if (!version.empty() && version != model->version()) {
    return absl::NotFoundError(absl::StrCat("model '", model->name(),
                                            "' has no version '", version,
                                            "' (serving version ",
                                            model->version(), ")"));
  }
  return model;
}

std::vector<ServedModel*> ModelRepository::models() const {
  std::vector<ServedModel*> out;
  for (const auto& [n, m] : models_) out.push_back(m.get());
  return out;
}

size_t ModelRepository::largest_request_bytes() const {
  size_t largest = 0;
  for (const auto& [n, m] : models_) {
    const runtime::ClipShape& s = m->spec().input;
    if (s.frames < 0 || s.height < 0 || s.width < 0) return 0;
    // A batch request (Open Inference Protocol) carries up to
    // max_batch_size clips; FP32 is the largest form of each.
    largest = std::max(largest, static_cast<size_t>(s.elements()) * sizeof(float) *
                                    static_cast<size_t>(m->config().max_batch_size()));
  }
  return largest;
}

void ModelRepository::Shutdown() {
  // The services refuse new requests before this is called, so draining the
  // models one after another loses nothing.
  for (auto& [n, m] : models_) m->Shutdown();
}

}  // namespace clipserve::server
