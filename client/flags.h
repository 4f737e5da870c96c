// A small "--name value" / "--name=value" flag reader for the command-line
// tools, with usage errors that exit 64.
#ifndef CLIPSERVE_CLIENT_FLAGS_H_
#define CLIPSERVE_CLIENT_FLAGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace clipserve::client {

class FlagReader {
 public:
  // `known` lists flag names (without "--"); `switches` those that take no
  // value. Prints `usage` and exits 0 on --help; exits 64 on an unknown flag.
  FlagReader(int argc, char** argv, const std::string& usage,
             const std::vector<std::string>& known,
             const std::vector<std::string>& switches = {});

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string String(const std::string& name, const std::string& dflt) const;
  int64_t Int(const std::string& name, int64_t dflt, int64_t lo,
              int64_t hi) const;
  double Double(const std::string& name, double dflt) const;
  // Comma-separated integers, e.g. "1,2,4,8".
  std::vector<int64_t> IntList(const std::string& name,
                               const std::vector<int64_t>& dflt) const;
  const std::vector<std::string>& positional() const { return positional_; }

  [[noreturn]] void Fail(const std::string& message) const;

 private:
  std::string usage_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_FLAGS_H_
