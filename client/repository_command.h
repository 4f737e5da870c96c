// `clipserve-client repository index|load|unload`: Triton's model repository
// extension on inference.GRPCInferenceService (RepositoryIndex,
// RepositoryModelLoad, RepositoryModelUnload; proto/inference/
// grpc_service.proto).
//
//   repository index [--ready]   every model the repository holds, one row
//                                per entry (--ready: READY entries only)
//   repository load MODEL        loads, or reloads from disk, MODEL
//   repository unload MODEL      unloads MODEL
//
// The server refuses these calls (PERMISSION_DENIED) unless they carry its
// admin token as the metadata "authorization: Bearer <token>" (or it runs
// with the repository API open). The token is the content of
// --admin-token-file FILE, surrounding whitespace stripped, else the
// environment variable CLIPSERVE_ADMIN_TOKEN (likewise stripped); with
// neither, no header is sent. load and unload need the server in explicit
// model control mode (FAILED_PRECONDITION otherwise). --timeout-ms, when
// given, is each call's deadline; the connection flags are the usual ones.
//
// Output (stdout): `index` a table with a header row, columns aligned and
// separated by two spaces, one row per entry in the server's order:
//   MODEL     VERSION  STATE        REASON
//   i3d       1        READY
//   broken    -        UNAVAILABLE  config.pbtxt: no input
// An empty version is printed as "-"; line breaks and other control
// characters in a reason become spaces, so that each entry is one line.
// `load` prints "loaded model 'M'", `unload` "unloaded model 'M'".
//
// Errors (stderr), as the other subcommands report them: a failed call
// "error: CODE_NAME (code N): message", exit status N (e.g. 7 for
// PERMISSION_DENIED, 9 for FAILED_PRECONDITION); a PERMISSION_DENIED or
// UNAUTHENTICATED call sent without a token adds a line saying how to give
// one. A usage error (no action, an unknown one, a missing MODEL, --ready
// with load/unload) or a token file that cannot be read or holds no usable
// token: "error: message", exit status 64.
#ifndef CLIPSERVE_CLIENT_REPOSITORY_COMMAND_H_
#define CLIPSERVE_CLIENT_REPOSITORY_COMMAND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "client/flags.h"
#include "inference/grpc_service.pb.h"

namespace clipserve::client {

// The environment variable that holds the admin token when no
// --admin-token-file is given.
inline constexpr char kAdminTokenEnv[] = "CLIPSERVE_ADMIN_TOKEN";

// Flags to register with the FlagReader for this command.
inline const std::vector<std::string> kRepositoryFlags = {"admin-token-file"};
inline const std::vector<std::string> kRepositorySwitches = {"ready"};

enum class RepositoryAction { kIndex, kLoad, kUnload };

struct RepositoryCommandOptions {
  RepositoryAction action = RepositoryAction::kIndex;
  std::string model;        // load, unload
  bool ready_only = false;  // index
  std::string token;        // empty: no authorization header
  int64_t timeout_ms = 0;   // > 0: each call's deadline
};

// `words`: the positional arguments after "repository" (the action and, for
// load/unload, the model); `ready`: whether --ready was given.
// INVALID_ARGUMENT, with a message for the user, on a missing or unknown
// action, a missing MODEL, extra words, or --ready with load/unload.
absl::StatusOr<RepositoryCommandOptions> ParseRepositoryArgs(
    const std::vector<std::string>& words, bool ready);

// The admin token: when `file_flag_given`, the content of `file`, surrounding
// whitespace stripped (INVALID_ARGUMENT when the file cannot be read, the
// name is empty, or nothing is left); else `env` (the environment variable's
// value, nullptr when unset) stripped, empty meaning no token. A token must
// be visible ASCII without spaces (it goes into an HTTP/2 header):
// INVALID_ARGUMENT otherwise, naming where it came from but not its content.
absl::StatusOr<std::string> LoadAdminToken(bool file_flag_given,
                                           const std::string& file,
                                           const char* env);

// The `index` table above, each line ending in '\n' (just the header when
// there are no entries).
std::string FormatRepositoryIndex(const inference::RepositoryIndexResponse& index);

// Makes the call; returns the exit status (0, or the gRPC status code).
int RunRepositoryCommand(const std::shared_ptr<grpc::Channel>& channel,
                         const RepositoryCommandOptions& options);

// The whole subcommand from the command line: parses `words` and the flags
// (a usage error exits 64 through flags.Fail(); a bad token returns 64),
// reads CLIPSERVE_ADMIN_TOKEN, makes the call.
int RunRepositoryFromFlags(const FlagReader& flags,
                           const std::shared_ptr<grpc::Channel>& channel,
                           const std::vector<std::string>& words);

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_REPOSITORY_COMMAND_H_
