// AdminAuth: who may call the model repository RPCs (load, unload, index).
//
// Closed by default: every call is refused with PERMISSION_DENIED. Opened
// either with a token (--admin-token-file: calls must carry the metadata
// "authorization: Bearer <token>", compared in constant time) or for local
// use with no check at all (--repository-api-open).
#ifndef CLIPSERVE_SERVER_LIFECYCLE_ADMIN_AUTH_H_
#define CLIPSERVE_SERVER_LIFECYCLE_ADMIN_AUTH_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clipserve::server {

// The metadata key the token travels in, and its value's prefix.
inline constexpr const char* kAdminTokenHeader = "authorization";
inline constexpr const char* kAdminTokenScheme = "Bearer ";

class AdminAuth {
 public:
  // Every call refused.
  static AdminAuth Closed() { return AdminAuth(Mode::kClosed, ""); }
  // No check.
  static AdminAuth Open() { return AdminAuth(Mode::kOpen, ""); }
  // The token is the file's content without surrounding whitespace; an
  // unreadable file, or one shorter than 16 characters, is an error.
  static absl::StatusOr<AdminAuth> FromTokenFile(const std::string& path);
  static absl::StatusOr<AdminAuth> FromToken(std::string token);

  // OK when a call carrying the metadata value `authorization` (empty: the
  // call had none) may use the repository RPCs; PERMISSION_DENIED saying
  // why not (never echoing what was sent) otherwise.
  absl::Status Check(absl::string_view authorization) const;

 private:
  enum class Mode { kClosed, kOpen, kToken };
  AdminAuth(Mode mode, std::string token) : mode_(mode), token_(std::move(token)) {}

  Mode mode_;
  std::string token_;
};

// Whether `a` equals `b`, in time that depends on their lengths only.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_LIFECYCLE_ADMIN_AUTH_H_
