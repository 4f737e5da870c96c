#include "client/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace clipserve::client {

FlagReader::FlagReader(int argc, char** argv, const std::string& usage,
                       const std::vector<std::string>& known,
                       const std::vector<std::string>& switches)
    : usage_(usage) {
  auto contains = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage_.c_str(), stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (contains(switches, name)) {
      values_[name] = eq == std::string::npos ? "true" : value;
      continue;
    }
    if (!contains(known, name)) Fail(absl::StrCat("unknown flag --", name));
    if (eq == std::string::npos) {
      if (i + 1 >= argc) Fail(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    values_[name] = value;
  }
}

void FlagReader::Fail(const std::string& message) const {
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), usage_.c_str());
  std::exit(64);
}

std::string FlagReader::String(const std::string& name,
                               const std::string& dflt) const {
  auto it = values_.find(name);
  return it == values_.end() ? dflt : it->second;
}

int64_t FlagReader::Int(const std::string& name, int64_t dflt, int64_t lo,
                        int64_t hi) const {
  auto it = values_.find(name);
  if (it == values_.end()) return dflt;
  int64_t v = 0;
  if (!absl::SimpleAtoi(it->second, &v) || v < lo || v > hi) {
    Fail(absl::StrCat("--", name, " must be an integer in ", lo, "..", hi,
                      ", got \"", it->second, "\""));
  }
  return v;
}

double FlagReader::Double(const std::string& name, double dflt) const {
  auto it = values_.find(name);
  if (it == values_.end()) return dflt;
  double v = 0;
  if (!absl::SimpleAtod(it->second, &v) || v < 0) {
    Fail(absl::StrCat("--", name, " must be a non-negative number, got \"",
                      it->second, "\""));
  }
  return v;
}

std::vector<int64_t> FlagReader::IntList(
    const std::string& name, const std::vector<int64_t>& dflt) const {
  auto it = values_.find(name);
  if (it == values_.end()) return dflt;
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(it->second, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      Fail(absl::StrCat("--", name, " must list positive integers, got \"",
                        it->second, "\""));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace clipserve::client
