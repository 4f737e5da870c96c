#include "runtime/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include <torch/csrc/jit/serialization/pickle.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "runtime/safetensors.h"
#include "runtime/torch_backend.h"
#include "runtime/zip_check.h"

namespace clipserve::runtime {
namespace {

constexpr char kHowToSave[] =
    "save a plain dict: torch.save(dict(model.state_dict()), path), or "
    "convert the checkpoint with tools/convert_checkpoint.py";

// Keys under which training scripts commonly nest the state dict.
constexpr const char* kWrapperKeys[] = {"state_dict", "model_state_dict",
                                        "model"};

// Whether the pickle in a torch.save archive (stored uncompressed, so its
// bytes show in the file) builds a collections.OrderedDict as a container.
// Every tensor's pickle also names OrderedDict (its empty backward hooks),
// but right after its requires_grad flag (NEWFALSE/NEWTRUE); a container's
// GLOBAL follows the protocol header or a memo opcode instead. A container
// that only appears after a tensor reuses the memoised class and is not
// detected (the generic message then applies).
bool HoldsOrderedDict(const std::vector<char>& bytes) {
  constexpr absl::string_view kGlobal = "ccollections\nOrderedDict\n";
  auto it = bytes.begin();
  while (true) {
    it = std::search(it, bytes.end(), kGlobal.begin(), kGlobal.end());
    if (it == bytes.end()) return false;
    const auto before =
        it == bytes.begin() ? 0 : static_cast<unsigned char>(*(it - 1));
    if (before != 0x88 && before != 0x89) return true;
    ++it;
  }
}

absl::StatusOr<std::map<std::string, at::Tensor>> TensorDict(
    const c10::IValue& value, const std::string& prefix, int depth) {
  if (value.isNone()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix,
        "holds None (what LibTorch makes of a collections.OrderedDict such "
        "as model.state_dict()); ",
        kHowToSave));
  }
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "holds ", value.tagKind(), ", not a dict of tensors; ",
        kHowToSave));
  }
  const c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
  if (depth == 0) {
    for (const char* wrapper : kWrapperKeys) {
      for (const auto& item : dict) {
        if (item.key().isString() && item.key().toStringRef() == wrapper &&
            (item.value().isGenericDict() || item.value().isNone())) {
          return TensorDict(item.value(),
                            absl::StrCat(prefix, "[\"", wrapper, "\"]: "),
                            depth + 1);
        }
      }
    }
  }
  std::map<std::string, at::Tensor> out;
  std::vector<std::string> bad;
  for (const auto& item : dict) {
    if (!item.key().isString()) {
      bad.push_back(absl::StrCat("a ", item.key().tagKind(), " key"));
      continue;
    }
    const std::string& key = item.key().toStringRef();
    if (!item.value().isTensor()) {
      bad.push_back(absl::StrCat(key, ": ", item.value().tagKind()));
      continue;
    }
    out.emplace(key, item.value().toTensor());
  }
  if (!bad.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "entries that are not name -> tensor: [",
        absl::StrJoin(bad, ", "), "]"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::map<std::string, at::Tensor>> ReadPthStateDict(
    const std::string& path) {
  const std::string prefix = absl::StrCat("checkpoint ", path, ": ");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(prefix, "does not exist"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "cannot open: ", errno != 0 ? std::strerror(errno) : "error"));
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InternalError(absl::StrCat(prefix, "read failed"));
  }
  // A zip archive starts with "PK\x03\x04"; the legacy (pre-1.6) torch.save
  // format is a bare pickle stream, which pickle_load does not read.
  if (bytes.size() < 4 || std::memcmp(bytes.data(), "PK\x03\x04", 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix,
        "not a zip-format torch.save file (legacy torch.save format or "
        "another file type); re-save it with PyTorch >= 1.6 as "
        "torch.save(dict(model.state_dict()), path), or convert it with "
        "tools/convert_checkpoint.py"));
  }
  // LibTorch trusts offsets and lengths a damaged archive gives.
  if (absl::Status zip = CheckTorchSaveArchive(
          absl::string_view(bytes.data(), bytes.size()));
      !zip.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, zip.message()));
  }
  // LibTorch's unpickler cannot build a collections.OrderedDict: 1.13
  // fails on its SETITEM opcodes, later versions return None.
  const std::string ordered_dict_error = absl::StrCat(
      prefix,
      "holds a collections.OrderedDict (what model.state_dict() returns), "
      "which LibTorch's torch::pickle_load cannot read; ",
      kHowToSave);
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    if (HoldsOrderedDict(bytes)) {
      return absl::InvalidArgumentError(ordered_dict_error);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "torch::pickle_load failed: ", TorchErrorSummary(e), "; ",
        kHowToSave));
  }
  absl::StatusOr<std::map<std::string, at::Tensor>> dict =
      TensorDict(value, prefix, 0);
  if (!dict.ok() && HoldsOrderedDict(bytes)) {
    return absl::InvalidArgumentError(ordered_dict_error);
  }
  return dict;
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadCheckpoint(
    const std::string& path) {
  if (absl::EndsWith(path, ".safetensors")) return ReadSafetensors(path);
  if (absl::EndsWith(path, ".pth") || absl::EndsWith(path, ".pt")) {
    return ReadPthStateDict(path);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "checkpoint ", path,
      ": unknown format (expected a .safetensors, .pth or .pt file)"));
}

absl::Status LoadI3dCheckpoint(InceptionI3d& model, const std::string& path) {
  absl::StatusOr<std::map<std::string, at::Tensor>> state =
      ReadCheckpoint(path);
  if (!state.ok()) return state.status();
  absl::Status status = LoadI3dStateDict(model, *state);
  if (status.ok()) return status;
  absl::string_view message = status.message();
  // "state dict does not fit ..." -> "checkpoint <path> does not fit ...".
  if (absl::ConsumePrefix(&message, "state dict ")) {
    return absl::Status(status.code(),
                        absl::StrCat("checkpoint ", path, " ", message));
  }
  return absl::Status(status.code(),
                      absl::StrCat("checkpoint ", path, ": ", message));
}

}  // namespace clipserve::runtime
