// What a model repository directory holds, as the lifecycle sees it: which
// models, which of their versions the version policy serves, what each
// label names, and fingerprints that tell when something changed on disk.
// Reads the file system only; loads nothing.
//
// Layout (Triton's):
//   <root>/<model>/config.pbtxt     required (proto/clipserve/config.proto)
//   <root>/<model>/labels.txt       optional, one class name per line
//   <root>/<model>/<version>/...    version directories: 0, 1, 2, ... (no
//                                   leading zeros or sign)
// Directories whose name starts with '.' are ignored, at both levels: copy a
// version in as <model>/.3 and rename it to <model>/3 to publish it at once.
#ifndef CLIPSERVE_SERVER_LIFECYCLE_REPOSITORY_SCAN_H_
#define CLIPSERVE_SERVER_LIFECYCLE_REPOSITORY_SCAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clipserve/config.pb.h"

namespace clipserve::server {

// One version directory the policy serves.
struct VersionOnDisk {
  int64_t number = 0;
  // The directory; empty for an I3D model without one (random weights).
  std::string dir;
  // Names, sizes and modification times of every file under dir.
  std::string fingerprint;
};

// One model directory, read and checked.
struct ModelOnDisk {
  std::string name;
  config::ModelConfig config;  // validated, defaults filled
  std::vector<std::string> labels;  // labels.txt; empty without one
  // What every version's instances are made from: the config without its
  // version_labels, and labels.txt. Versions whose `model_key` and
  // fingerprint are unchanged need no reload.
  std::string model_key;
  std::vector<VersionOnDisk> versions;  // served by the policy, ascending
  std::map<std::string, int64_t> version_labels;  // each names a served version
};

// The model directory names under `root`, sorted. NOT_FOUND when `root` is
// not a directory.
absl::StatusOr<std::vector<std::string>> ListModels(const std::string& root);

// A fingerprint of everything under <root>/<name> that a load reads: two
// equal fingerprints taken a poll apart mean nothing was being written in
// between. Empty when the directory is gone.
std::string ModelFingerprint(const std::string& root, const std::string& name);

// Reads <root>/<name>: the config (errors name the file and field), the
// labels, and the versions the policy serves. Errors: no version directory
// (except an I3D model, served as version 1 with random weights), a version
// that version_policy.specific names but that is missing, a label naming a
// version that is not served.
absl::StatusOr<ModelOnDisk> ScanModel(const std::string& root,
                                      const std::string& name);

// The versions `policy` serves out of `available` (ascending): latest N, all,
// or the specific list (each must be available). `model` names errors.
absl::StatusOr<std::vector<int64_t>> SelectVersions(
    const config::ModelVersionPolicy& policy, std::vector<int64_t> available,
    const std::string& model);

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_LIFECYCLE_REPOSITORY_SCAN_H_
