#include "server/lifecycle/repository_scan.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

namespace fs = std::filesystem;

bool Hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.empty() || name[0] == '.';
}

absl::StatusOr<std::vector<std::string>> ReadLabels(const fs::path& path) {
  std::vector<std::string> labels;
  std::error_code ec;
  if (!fs::exists(path, ec)) return labels;
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": cannot be read"));
  }
  std::string line;
  while (std::getline(in, line)) {
    labels.emplace_back(absl::StripAsciiWhitespace(line));
  }
  // A trailing empty line is not a label.
  while (!labels.empty() && labels.back().empty()) labels.pop_back();
  return labels;
}

// Numeric version directories of `model_dir`, ascending.
std::vector<int64_t> VersionDirs(const fs::path& model_dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(model_dir, ec)) {
    int64_t v = 0;
    const std::string name = e.path().filename().string();
    // Canonical decimal only: "02" or "+2" would name version 2 in another
    // directory, or the same version twice.
    if (e.is_directory(ec) && !Hidden(e.path()) && absl::SimpleAtoi(name, &v) &&
        v >= 0 && absl::StrCat(v) == name) {
      out.push_back(v);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "<relative path> <size> <mtime>" for every regular file under `dir` and
// "<relative path>/" for every directory, in name order (hidden entries
// skipped), joined by ';'.
std::string TreeFingerprint(const fs::path& dir) {
  std::vector<std::string> entries;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (Hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    std::error_code fec;
    if (it->is_directory(fec)) {
      // An empty version directory counts too: whether it exists is read.
      entries.push_back(absl::StrCat(fs::relative(it->path(), dir, fec).string(), "/"));
      continue;
    }
    if (!it->is_regular_file(fec)) continue;
    const auto size = it->file_size(fec);
    const auto mtime = it->last_write_time(fec).time_since_epoch().count();
    entries.push_back(absl::StrCat(fs::relative(it->path(), dir, fec).string(),
                                   " ", size, " ", mtime));
  }
  std::sort(entries.begin(), entries.end());
  return absl::StrJoin(entries, ";");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListModels(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository ", root, " is not a directory"));
  }
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory(ec) && !Hidden(e.path())) {
      names.push_back(e.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ModelFingerprint(const std::string& root, const std::string& name) {
  const fs::path dir = fs::path(root) / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  return absl::StrCat("model:", TreeFingerprint(dir));
}

absl::StatusOr<std::vector<int64_t>> SelectVersions(
    const config::ModelVersionPolicy& policy, std::vector<int64_t> available,
    const std::string& model) {
  std::sort(available.begin(), available.end());
  switch (policy.policy_choice_case()) {
    case config::ModelVersionPolicy::kAll:
      return available;
    case config::ModelVersionPolicy::kSpecific: {
      std::vector<int64_t> out(policy.specific().versions().begin(),
                               policy.specific().versions().end());
      std::sort(out.begin(), out.end());
      for (int64_t v : out) {
        if (!std::binary_search(available.begin(), available.end(), v)) {
          return absl::NotFoundError(absl::StrCat(
              "model '", model, "': version_policy.specific names version ", v,
              ", which has no directory (found: ",
              available.empty() ? "none" : absl::StrJoin(available, ", "), ")"));
        }
      }
      return out;
    }
    case config::ModelVersionPolicy::kLatest:
    case config::ModelVersionPolicy::POLICY_CHOICE_NOT_SET: {
      const size_t n = policy.has_latest()
                           ? std::max<uint32_t>(1, policy.latest().num_versions())
                           : 1;
      if (available.size() > n) available.erase(available.begin(), available.end() - n);
      return available;
    }
  }
  return available;
}

absl::StatusOr<ModelOnDisk> ScanModel(const std::string& root,
                                      const std::string& name) {
  const fs::path dir = fs::path(root) / name;
  ModelOnDisk out;
  out.name = name;
  absl::StatusOr<config::ModelConfig> config =
      LoadModelConfig((dir / "config.pbtxt").string(), name);
  if (!config.ok()) return config.status();
  out.config = *std::move(config);
  absl::StatusOr<std::vector<std::string>> labels = ReadLabels(dir / "labels.txt");
  if (!labels.ok()) return labels.status();
  out.labels = *std::move(labels);

  config::ModelConfig key = out.config;
  key.clear_version_labels();
  std::string key_text;
  key.SerializeToString(&key_text);
  out.model_key = absl::StrCat(key_text, "\nlabels:", absl::StrJoin(out.labels, "\n"));

  const std::vector<int64_t> available = VersionDirs(dir);
  if (available.empty()) {
    if (out.config.backend() != kI3dBackend) {
      return absl::NotFoundError(absl::StrCat(
          dir.string(),
          ": no version directory (expected <model>/<version>/model.pt, e.g. "
          "1/model.pt)"));
    }
    // An I3D model without a version directory runs with random weights
    // (reported as untrained); call it version 1.
    out.versions.push_back({1, "", "random"});
  } else {
    absl::StatusOr<std::vector<int64_t>> served =
        SelectVersions(out.config.version_policy(), available, name);
    if (!served.ok()) return served.status();
    for (int64_t v : *served) {
      const fs::path vdir = dir / absl::StrCat(v);
      out.versions.push_back({v, vdir.string(), TreeFingerprint(vdir)});
    }
  }
  for (const auto& [label, version] : out.config.version_labels()) {
    const bool served =
        std::any_of(out.versions.begin(), out.versions.end(),
                    [v = version](const VersionOnDisk& d) { return d.number == v; });
    if (!served) {
      std::vector<int64_t> numbers;
      for (const VersionOnDisk& d : out.versions) numbers.push_back(d.number);
      return absl::FailedPreconditionError(absl::StrCat(
          (dir / "config.pbtxt").string(), ": version_labels[", label,
          "]: version ", version, " is not served (serving ",
          absl::StrJoin(numbers, ", "), ")"));
    }
    out.version_labels[label] = version;
  }
  return out;
}

}  // namespace clipserve::server
