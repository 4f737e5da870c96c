// Reading a video the server is told where to find, instead of its bytes.
//
//   clipserve::video::UriPolicy policy;
//   policy.allowed_prefixes = {"file:///srv/videos/"};
//   absl::StatusOr<std::string> bytes =
//       clipserve::video::ReadVideoUri("file:///srv/videos/a.mp4", policy,
//                                      limits, deadline);
//   // then DecodeClip(*bytes, ...), exactly as for uploaded bytes.
//
// The contract:
//  - Nothing is read unless the URI starts with one of the policy's
//    prefixes (PERMISSION_DENIED otherwise, and for every URI when there are
//    none: the default). A prefix is file:///DIR/, http://HOST[:PORT]/... or
//    https://HOST[:PORT]/..., ending in "/" (ValidateUriPrefix), so that
//    "https://a.example/" cannot match "https://a.example.evil/". A URI with
//    a "." or ".." path segment, a backslash or a control character is
//    refused the same way, so a file:// prefix is a directory that the URI
//    cannot climb out of.
//  - http(s) follows no redirect (a redirect is an error: it could point
//    anywhere), and the read gives up at the request's deadline
//    (DEADLINE_EXCEEDED) or after UriPolicy::read_timeout, whichever comes
//    first (INVALID_ARGUMENT "... no video within N ms": a source that
//    stalls must not hold a decoder for good, whatever the client allows).
//  - At most Limits::max_bytes are read: a larger video (by its declared
//    size, or by what arrives) is INVALID_ARGUMENT before more is read.
//  - Every other failure (no such file, connection refused, HTTP 404) is
//    INVALID_ARGUMENT "could not read video <uri>: <reason>".
// The whole file is read into memory and then decoded like uploaded bytes,
// with every check DecodeClip makes.
#ifndef CLIPSERVE_VIDEO_FETCH_H_
#define CLIPSERVE_VIDEO_FETCH_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "video/decode.h"

namespace clipserve::video {

struct UriPolicy {
  // Where videos may be read from; empty (the default): nowhere.
  std::vector<std::string> allowed_prefixes;
  // The longest one video's read may take (--video-uri-timeout-seconds).
  std::chrono::milliseconds read_timeout = std::chrono::seconds(30);
};

// OK if `prefix` is one a UriPolicy may hold (see the top of this file);
// INVALID_ARGUMENT saying why not otherwise.
absl::Status ValidateUriPrefix(absl::string_view prefix);

// OK if `uri` may be read under `policy`; PERMISSION_DENIED otherwise.
absl::Status CheckUri(absl::string_view uri, const UriPolicy& policy);

// The bytes at `uri`, under `policy` and `limits.max_bytes`, read before
// `deadline` (DEADLINE_EXCEEDED after it). Thread-safe.
absl::StatusOr<std::string> ReadVideoUri(
    absl::string_view uri, const UriPolicy& policy, const Limits& limits,
    std::chrono::steady_clock::time_point deadline);

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_FETCH_H_
