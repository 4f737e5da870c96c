// ValidateUriPrefix and CheckUri: string rules only, no FFmpeg (built with
// or without video decoding).
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "video/fetch.h"
#include "video/live_source.h"

namespace clipserve::video {
namespace {

constexpr absl::string_view kVideoSchemes[] = {"file://", "http://", "https://"};
constexpr absl::string_view kSourceSchemes[] = {"file://", "http://", "https://",
                                                "rtsp://", "rtsps://", "udp://"};

// The scheme's length including "://", or 0 for one not in `schemes`.
template <size_t N>
size_t SchemeLength(absl::string_view uri, const absl::string_view (&schemes)[N]) {
  for (absl::string_view scheme : schemes) {
    if (absl::StartsWith(uri, scheme)) return scheme.size();
  }
  return 0;
}

size_t SchemeLength(absl::string_view uri) { return SchemeLength(uri, kSourceSchemes); }

// A backslash, a control character, or a "." or ".." path segment.
bool HasUnsafePath(absl::string_view uri) {
  for (char c : uri) {
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  absl::string_view path = uri.substr(SchemeLength(uri));
  path = path.substr(0, path.find_first_of("?#"));
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment == "." || segment == "..") return true;
  }
  return false;
}

}  // namespace

absl::Status ValidateUriPrefix(absl::string_view prefix) {
  const size_t scheme = SchemeLength(prefix, kVideoSchemes);
  const auto bad = [prefix](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video URI prefix \"", prefix, "\" ", why,
        " (expected file:///DIR/, http://HOST/... or https://HOST/..., "
        "ending in /)"));
  };
  if (scheme == 0) return bad("has a scheme other than file, http or https");
  if (!absl::EndsWith(prefix, "/")) return bad("does not end in /");
  if (HasUnsafePath(prefix)) return bad("has a . or .. segment or a control character");
  const absl::string_view rest = prefix.substr(scheme);
  if (absl::StartsWith(prefix, "file://")) {
    if (!absl::StartsWith(rest, "/")) return bad("is not an absolute file:/// path");
  } else {
    const size_t slash = rest.find('/');
    const absl::string_view host = rest.substr(0, slash);
    if (host.empty()) return bad("names no host");
    if (absl::StrContains(host, "@")) return bad("has user information");
  }
  return absl::OkStatus();
}

absl::Status CheckUri(absl::string_view uri, const UriPolicy& policy) {
  if (policy.allowed_prefixes.empty()) {
    return absl::PermissionDeniedError(
        "this server reads videos from no URI (start it with "
        "--video-uri-prefix to allow some); send the video's bytes instead");
  }
  if (!HasUnsafePath(uri)) {
    for (const std::string& prefix : policy.allowed_prefixes) {
      if (absl::StartsWith(uri, prefix)) return absl::OkStatus();
    }
  }
  std::string allowed;
  for (const std::string& prefix : policy.allowed_prefixes) {
    absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", prefix);
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "video URI \"", uri.substr(0, 200),
      "\" is not under a prefix this server reads from (", allowed,
      "; no . or .. segments)"));
}

}  // namespace clipserve::video

namespace clipserve::video {

absl::Status ValidateSourcePrefix(absl::string_view prefix) {
  const size_t scheme = SchemeLength(prefix, kSourceSchemes);
  const auto bad = [prefix](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream source prefix \"", prefix, "\" ", why,
        " (expected rtsp://HOST/..., rtsps://, http(s)://HOST/..., "
        "file:///DIR/ ending in /, or udp://HOST:PORT)"));
  };
  if (scheme == 0) {
    return bad("has a scheme other than rtsp, rtsps, http, https, udp or file");
  }
  if (HasUnsafePath(prefix)) return bad("has a . or .. segment or a control character");
  const absl::string_view rest = prefix.substr(scheme);
  const size_t slash = rest.find('/');
  const absl::string_view host = rest.substr(0, slash);
  if (absl::StrContains(host, "@") && !absl::StartsWith(prefix, "udp://")) {
    return bad("has user information");
  }
  if (absl::StartsWith(prefix, "file://")) {
    if (!absl::StartsWith(rest, "/")) return bad("is not an absolute file:/// path");
    if (!absl::EndsWith(prefix, "/")) return bad("does not end in /");
    return absl::OkStatus();
  }
  if (host.empty() || host == "@") return bad("names no host");
  if (absl::EndsWith(prefix, "/")) return absl::OkStatus();
  // scheme://HOST:PORT exactly.
  if (slash != absl::string_view::npos || !absl::StrContains(host, ":") ||
      absl::StrContains(host, "?")) {
    return bad("neither ends in / nor is scheme://HOST:PORT");
  }
  return absl::OkStatus();
}

absl::Status CheckSourceUrl(absl::string_view url, const SourcePolicy& policy) {
  if (policy.allowed_prefixes.empty()) {
    return absl::PermissionDeniedError(
        "this server pulls streams from no URL (start it with "
        "--stream-source-prefix to allow some); push the stream instead");
  }
  if (SchemeLength(url, kSourceSchemes) != 0 && !HasUnsafePath(url)) {
    for (const std::string& prefix : policy.allowed_prefixes) {
      if (!absl::StartsWith(url, prefix)) continue;
      // A prefix without a trailing "/" is a whole address: the URL must
      // end there or go on with its options.
      const absl::string_view rest = url.substr(prefix.size());
      if (absl::EndsWith(prefix, "/") || rest.empty() || rest[0] == '?') {
        return absl::OkStatus();
      }
    }
  }
  std::string allowed;
  for (const std::string& prefix : policy.allowed_prefixes) {
    absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", prefix);
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "stream source \"", url.substr(0, 200),
      "\" is not under a prefix this server pulls from (", allowed,
      "; no . or .. segments)"));
}

}  // namespace clipserve::video
