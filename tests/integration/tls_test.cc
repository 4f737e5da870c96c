// TLS and mutual TLS on the gRPC port, with throwaway certificates made by
// the openssl command-line tool.
#include <signal.h>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/channel.h"
#include "client/clips.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {
namespace {

constexpr int kT = 4, kSide = 16, kClasses = 10;

// A CA, a server certificate for 127.0.0.1 signed by it, a client
// certificate signed by it, and a client certificate from another CA.
class Certificates {
 public:
  explicit Certificates(const std::string& dir) : dir_(dir) {
    const std::string script = absl::StrCat(
        "set -e; cd ", dir, ";",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
        "-days 1 -subj /CN=clipserve-test-ca 2>/dev/null;",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key "
        "-out other-ca.pem -days 1 -subj /CN=other-ca 2>/dev/null;",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext;",
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext;",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=localhost 2>/dev/null;",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null;",
        "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
        "-subj /CN=client 2>/dev/null;",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out client.pem -days 1 -extfile client.ext 2>/dev/null;",
        "openssl req -newkey rsa:2048 -nodes -keyout stranger.key "
        "-out stranger.csr -subj /CN=stranger 2>/dev/null;",
        "openssl x509 -req -in stranger.csr -CA other-ca.pem -CAkey other-ca.key "
        "-CAcreateserial -out stranger.pem -days 1 -extfile client.ext 2>/dev/null");
    ServerProcess::Output out = ServerProcess::RunCommand(
        absl::StrCat("bash -c \"", script, "\""));
    ok_ = out.exit_code == 0;
    EXPECT_TRUE(ok_) << out.text;
  }
  bool ok() const { return ok_; }
  std::string operator()(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

 private:
  std::string dir_;
  bool ok_ = false;
};

grpc::Status Classify(const std::shared_ptr<grpc::Channel>& channel) {
  v1::ClassifyRequest request;
  request.set_model_name("tiny");
  *request.mutable_clip() = client::RandomClip(v1::UINT8, kT, kSide, kSide, 1);
  auto stub = v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::ClassifyResponse response;
  grpc::Status s = stub->Classify(&context, request, &response);
  if (s.ok()) {
    EXPECT_EQ(response.classes_size(), 5);
  }
  return s;
}

std::shared_ptr<grpc::Channel> Channel(const ServerProcess& server, bool tls,
                                       const std::string& ca = "",
                                       const std::string& cert = "",
                                       const std::string& key = "") {
  client::ChannelOptions o;
  o.address = server.address();
  o.tls = tls;
  o.ca_file = ca;
  o.cert_file = cert;
  o.key_file = key;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::MakeChannel(o);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return *channel;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = absl::StrCat(dir_.path(), "/models");
    WriteTinyModel(repo_, "tiny",
                   ModelConfigText("tiny", 4, kT, kSide, kSide, kClasses, ""), 1);
    ASSERT_TRUE(certs_.ok());
  }
  void Stop(ServerProcess& server) {
    server.Signal(SIGTERM);
    EXPECT_EQ(server.Wait(), 0);
  }

  TempDir dir_;
  Certificates certs_{dir_.path()};
  std::string repo_;
};

TEST_F(TlsTest, TlsClientWorksAndPlaintextIsRefused) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      {"--model-repository", repo_, "--grpc-use-ssl", "--grpc-server-cert",
       certs_("server.pem"), "--grpc-server-key", certs_("server.key")});
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->Log().find("(TLS,"), std::string::npos);
  grpc::Status tls = Classify(Channel(*server, true, certs_("ca.pem")));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
  grpc::Status plain = Classify(Channel(*server, false));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  // A client that does not trust the server's CA refuses it.
  grpc::Status untrusted = Classify(Channel(*server, true, certs_("other-ca.pem")));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The command-line client speaks TLS too.
  ServerProcess::Output out = ServerProcess::RunCommand(absl::StrCat(
      CLIPSERVE_CLIENT_BINARY, " --server ", server->address(), " --ssl-ca ",
      certs_("ca.pem"), " --model tiny --top-k 1"));
  EXPECT_EQ(out.exit_code, 0) << out.text;
  Stop(*server);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(
      {"--model-repository", repo_, "--grpc-use-ssl", "--grpc-server-cert",
       certs_("server.pem"), "--grpc-server-key", certs_("server.key"),
       "--grpc-ssl-client-ca", certs_("ca.pem")});
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->Log().find("(mutual TLS,"), std::string::npos);
  grpc::Status good = Classify(Channel(*server, true, certs_("ca.pem"),
                                       certs_("client.pem"), certs_("client.key")));
  EXPECT_TRUE(good.ok()) << good.error_message();
  grpc::Status none = Classify(Channel(*server, true, certs_("ca.pem")));
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAVAILABLE) << none.error_message();
  grpc::Status stranger = Classify(Channel(*server, true, certs_("ca.pem"),
                                           certs_("stranger.pem"),
                                           certs_("stranger.key")));
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stranger.error_message();
  grpc::Status plain = Classify(Channel(*server, false));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The metrics port stays plain HTTP.
  EXPECT_NE(server->ScrapeMetrics().find("clipserve_requests_total"), std::string::npos);
  Stop(*server);
}

TEST(TlsFlagsTest, MissingOrBadFilesStopStartup) {
  ServerProcess::Output no_key = ServerProcess::RunCommand(
      absl::StrCat(CLIPSERVE_BINARY, " --grpc-use-ssl --grpc-server-cert /nonexistent.pem"));
  EXPECT_EQ(no_key.exit_code, 64);
  EXPECT_NE(no_key.text.find("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key"),
            std::string::npos)
      << no_key.text;
  ServerProcess::Output unreadable = ServerProcess::RunCommand(absl::StrCat(
      CLIPSERVE_BINARY, " --grpc-port 0 --metrics-port 0 --grpc-use-ssl "
                        "--grpc-server-cert /nonexistent.pem --grpc-server-key /nonexistent.key"));
  EXPECT_EQ(unreadable.exit_code, 1);
  EXPECT_NE(unreadable.text.find("--grpc-server-cert: cannot read /nonexistent.pem"),
            std::string::npos)
      << unreadable.text;
}

}  // namespace
}  // namespace clipserve::testing
