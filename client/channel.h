// Channels to a clipserve server, plaintext or TLS, for the command-line
// tools.
#ifndef CLIPSERVE_CLIENT_CHANNEL_H_
#define CLIPSERVE_CLIENT_CHANNEL_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "client/flags.h"

namespace clipserve::client {

struct ChannelOptions {
  std::string address = "localhost:8001";
  // TLS when `tls` is set: the server is verified against `ca_file` (PEM;
  // empty: the system's roots). For mutual TLS, `cert_file` and `key_file`
  // (PEM) are the client's certificate and key.
  bool tls = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // A connection of its own, not shared with other channels to the same
  // address (a local subchannel pool): load that should spread over several
  // connections.
  bool own_connection = false;
};

// A channel with no send or receive size limit. INVALID_ARGUMENT when a
// PEM file cannot be read or only one of cert/key is given.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options);

// The channel that --server, --ssl, --ssl-ca, --ssl-cert and --ssl-key
// describe (register kChannelFlags and kChannelSwitches with the reader);
// exits through flags.Fail() on a bad file.
inline const std::vector<std::string> kChannelFlags = {"server", "ssl-ca",
                                                       "ssl-cert", "ssl-key"};
inline const std::vector<std::string> kChannelSwitches = {"ssl"};
std::shared_ptr<grpc::Channel> MakeChannelFromFlags(const FlagReader& flags);
// The options those flags give (no file is read yet).
ChannelOptions ChannelOptionsFromFlags(const FlagReader& flags);


}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_CHANNEL_H_
