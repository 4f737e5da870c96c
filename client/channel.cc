#include "client/channel.h"

#include <grpcpp/create_channel.h>
#include <grpc/grpc.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "client/clips.h"

namespace clipserve::client {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  if (options.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!options.tls) {
    return grpc::CreateCustomChannel(options.address,
                                     grpc::InsecureChannelCredentials(), args);
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs its key, and a key its certificate");
  }
  grpc::SslCredentialsOptions ssl;
  for (const auto& [path, field] :
       {std::pair{&options.ca_file, &ssl.pem_root_certs},
        std::pair{&options.cert_file, &ssl.pem_cert_chain},
        std::pair{&options.key_file, &ssl.pem_private_key}}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> pem = ReadFileBytes(*path);
    if (!pem.ok()) return pem.status();
    *field = *std::move(pem);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl),
                                   args);
}

ChannelOptions ChannelOptionsFromFlags(const FlagReader& flags) {
  ChannelOptions options;
  options.address = flags.String("server", options.address);
  options.ca_file = flags.String("ssl-ca", "");
  options.cert_file = flags.String("ssl-cert", "");
  options.key_file = flags.String("ssl-key", "");
  options.tls = flags.Has("ssl") || !options.ca_file.empty() ||
                !options.cert_file.empty() || !options.key_file.empty();
  return options;
}

std::shared_ptr<grpc::Channel> MakeChannelFromFlags(const FlagReader& flags) {
  const ChannelOptions options = ChannelOptionsFromFlags(flags);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(options);
  if (!channel.ok()) flags.Fail(std::string(channel.status().message()));
  return *std::move(channel);
}

}  // namespace clipserve::client
