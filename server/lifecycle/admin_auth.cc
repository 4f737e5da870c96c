#include "server/lifecycle/admin_auth.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace clipserve::server {

constexpr size_t kMinTokenLength = 16;

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte of the longer is visited whatever matches, and a length
  // difference alone makes it unequal.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::StatusOr<AdminAuth> AdminAuth::FromToken(std::string token) {
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the admin token must be at least ", kMinTokenLength,
        " characters (e.g. head -c 32 /dev/urandom | base64)"));
  }
  return AdminAuth(Mode::kToken, std::move(token));
}

absl::StatusOr<AdminAuth> AdminAuth::FromTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin-token-file: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<AdminAuth> auth = FromToken(text.str());
  if (!auth.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin-token-file ", path, ": ", auth.status().message()));
  }
  return auth;
}

absl::Status AdminAuth::Check(absl::string_view authorization) const {
  switch (mode_) {
    case Mode::kOpen:
      return absl::OkStatus();
    case Mode::kClosed:
      return absl::PermissionDeniedError(
          "the model repository API is closed: start the server with "
          "--admin-token-file (or --repository-api-open for local use)");
    case Mode::kToken:
      break;
  }
  if (authorization.empty()) {
    return absl::PermissionDeniedError(
        "the model repository API needs the admin token: send metadata "
        "\"authorization: Bearer <token>\"");
  }
  if (!absl::StartsWith(authorization, kAdminTokenScheme) ||
      !ConstantTimeEquals(authorization.substr(strlen(kAdminTokenScheme)), token_)) {
    return absl::PermissionDeniedError("the admin token is wrong");
  }
  return absl::OkStatus();
}

}  // namespace clipserve::server
