#include "client/repository_command.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/clips.h"
#include "inference/grpc_service.grpc.pb.h"

namespace clipserve::client {
namespace {

constexpr char kActions[] = "index [--ready], load MODEL or unload MODEL";

// The whole file, or why not (errno's words).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read admin token file ", path, ": ", std::strerror(errno)));
  }
  std::string bytes;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) bytes.append(buffer, n);
  const bool failed = std::ferror(f) != 0;
  const int error = errno;
  std::fclose(f);
  if (failed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read admin token file ", path, ": ", std::strerror(error)));
  }
  return bytes;
}

// Visible ASCII only: what an HTTP/2 header value and a bearer token allow
// (no spaces inside, no line breaks).
bool IsUsableToken(absl::string_view token) {
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// One line per field: control characters (a multi-line load error) become
// spaces.
std::string OneLine(absl::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

int PrintRpcError(const grpc::Status& status, bool sent_token) {
  std::fprintf(stderr, "error: %s (code %d): %s\n",
               StatusCodeName(status.error_code()).c_str(),
               static_cast<int>(status.error_code()), status.error_message().c_str());
  if (!sent_token && (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                      status.error_code() == grpc::StatusCode::UNAUTHENTICATED)) {
    std::fprintf(stderr,
                 "no admin token was sent: give one with --admin-token-file FILE or %s\n",
                 kAdminTokenEnv);
  }
  return static_cast<int>(status.error_code());
}

}  // namespace

absl::StatusOr<RepositoryCommandOptions> ParseRepositoryArgs(
    const std::vector<std::string>& words, bool ready) {
  if (words.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository needs an action: ", kActions));
  }
  RepositoryCommandOptions o;
  const std::string& action = words.front();
  if (action == "index") {
    o.action = RepositoryAction::kIndex;
    if (words.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("repository index takes no arguments, got \"", words[1], "\""));
    }
    o.ready_only = ready;
    return o;
  }
  if (action != "load" && action != "unload") {
    return absl::InvalidArgumentError(absl::StrCat("unknown repository action \"", action,
                                                   "\"; use ", kActions));
  }
  o.action = action == "load" ? RepositoryAction::kLoad : RepositoryAction::kUnload;
  if (words.size() < 2 || words[1].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository ", action, " needs a MODEL name"));
  }
  if (words.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat("repository ", action,
                                                   " takes one MODEL, got \"", words[2],
                                                   "\" too"));
  }
  if (ready) {
    return absl::InvalidArgumentError("--ready is for repository index only");
  }
  o.model = words[1];
  return o;
}

absl::StatusOr<std::string> LoadAdminToken(bool file_flag_given, const std::string& file,
                                           const char* env) {
  std::string token;
  std::string where;
  if (file_flag_given) {
    if (file.empty()) return absl::InvalidArgumentError("--admin-token-file needs a file");
    absl::StatusOr<std::string> bytes = ReadTokenFile(file);
    if (!bytes.ok()) return bytes.status();
    token = std::string(absl::StripAsciiWhitespace(*bytes));
    if (token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("admin token file ", file, " is empty"));
    }
    where = absl::StrCat("admin token file ", file);
  } else {
    if (env == nullptr) return std::string();
    token = std::string(absl::StripAsciiWhitespace(env));
    where = kAdminTokenEnv;
  }
  if (!IsUsableToken(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": the token must be one word of visible ASCII (no spaces or line breaks "
               "inside)"));
  }
  return token;
}

std::string FormatRepositoryIndex(const inference::RepositoryIndexResponse& index) {
  using Row = std::vector<std::string>;
  std::vector<Row> rows = {{"MODEL", "VERSION", "STATE", "REASON"}};
  for (const auto& m : index.models()) {
    rows.push_back({OneLine(m.name()), m.version().empty() ? "-" : OneLine(m.version()),
                    OneLine(m.state()), OneLine(m.reason())});
  }
  size_t widths[3] = {0, 0, 0};
  for (const Row& row : rows) {
    for (size_t i = 0; i < 3; ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < 3; ++i) {
      absl::StrAppend(&line, row[i], std::string(widths[i] - row[i].size() + 2, ' '));
    }
    absl::StrAppend(&line, row[3]);
    // No trailing blanks where the last columns are empty.
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

int RunRepositoryCommand(const std::shared_ptr<grpc::Channel>& channel,
                         const RepositoryCommandOptions& options) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  if (!options.token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options.token));
  }
  if (options.timeout_ms > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(options.timeout_ms));
  }
  const bool sent_token = !options.token.empty();
  switch (options.action) {
    case RepositoryAction::kIndex: {
      inference::RepositoryIndexRequest request;
      request.set_ready(options.ready_only);
      inference::RepositoryIndexResponse response;
      const grpc::Status s = stub->RepositoryIndex(&context, request, &response);
      if (!s.ok()) return PrintRpcError(s, sent_token);
      std::fputs(FormatRepositoryIndex(response).c_str(), stdout);
      return 0;
    }
    case RepositoryAction::kLoad: {
      inference::RepositoryModelLoadRequest request;
      request.set_model_name(options.model);
      inference::RepositoryModelLoadResponse response;
      const grpc::Status s = stub->RepositoryModelLoad(&context, request, &response);
      if (!s.ok()) return PrintRpcError(s, sent_token);
      std::printf("loaded model '%s'\n", options.model.c_str());
      return 0;
    }
    case RepositoryAction::kUnload: {
      inference::RepositoryModelUnloadRequest request;
      request.set_model_name(options.model);
      inference::RepositoryModelUnloadResponse response;
      const grpc::Status s = stub->RepositoryModelUnload(&context, request, &response);
      if (!s.ok()) return PrintRpcError(s, sent_token);
      std::printf("unloaded model '%s'\n", options.model.c_str());
      return 0;
    }
  }
  return 64;  // not reached: every action is handled above
}

int RunRepositoryFromFlags(const FlagReader& flags,
                           const std::shared_ptr<grpc::Channel>& channel,
                           const std::vector<std::string>& words) {
  absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs(words, flags.Has("ready"));
  if (!o.ok()) flags.Fail(std::string(o.status().message()));
  absl::StatusOr<std::string> token =
      LoadAdminToken(flags.Has("admin-token-file"), flags.String("admin-token-file", ""),
                     std::getenv(kAdminTokenEnv));
  if (!token.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(token.status().message()).c_str());
    return 64;
  }
  o->token = *std::move(token);
  o->timeout_ms = flags.Int("timeout-ms", 0, 1, INT32_MAX);
  return RunRepositoryCommand(channel, *o);
}

}  // namespace clipserve::client
