// `clipserve-client repository` without the real server: its arguments, the
// admin token (file, environment, which wins, errors), the index table, and
// the calls against an in-process fake GRPCInferenceService that checks the
// authorization metadata the way the server does.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "client/channel.h"
#include "client/repository_command.h"
#include "inference/grpc_service.grpc.pb.h"

namespace clipserve::client {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- arguments -------------------------------------------------------------

TEST(RepositoryArgsTest, Index) {
  absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs({"index"}, false);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->action, RepositoryAction::kIndex);
  EXPECT_FALSE(o->ready_only);
  EXPECT_TRUE(o->model.empty());
}

TEST(RepositoryArgsTest, IndexReady) {
  absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs({"index"}, true);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->ready_only);
}

TEST(RepositoryArgsTest, LoadAndUnloadTakeTheModel) {
  absl::StatusOr<RepositoryCommandOptions> load = ParseRepositoryArgs({"load", "i3d"}, false);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->action, RepositoryAction::kLoad);
  EXPECT_EQ(load->model, "i3d");
  absl::StatusOr<RepositoryCommandOptions> unload =
      ParseRepositoryArgs({"unload", "tiny-b8"}, false);
  ASSERT_TRUE(unload.ok()) << unload.status();
  EXPECT_EQ(unload->action, RepositoryAction::kUnload);
  EXPECT_EQ(unload->model, "tiny-b8");
}

TEST(RepositoryArgsTest, MissingModel) {
  for (const char* action : {"load", "unload"}) {
    absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs({action}, false);
    ASSERT_FALSE(o.ok()) << action;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(o.status().message(), std::string("repository ") + action + " needs a MODEL name");
    EXPECT_FALSE(ParseRepositoryArgs({action, ""}, false).ok()) << action;
  }
}

TEST(RepositoryArgsTest, UnknownOrMissingAction) {
  absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs({"delete", "i3d"}, false);
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(Contains(std::string(o.status().message()), "unknown repository action \"delete\""))
      << o.status();
  EXPECT_TRUE(Contains(std::string(o.status().message()), "index [--ready], load MODEL or "
                                                          "unload MODEL"));
  o = ParseRepositoryArgs({}, false);
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(Contains(std::string(o.status().message()), "repository needs an action"));
  // Actions are lower case, like the other subcommands.
  EXPECT_FALSE(ParseRepositoryArgs({"INDEX"}, false).ok());
}

TEST(RepositoryArgsTest, ExtraWordsAndMisplacedReady) {
  EXPECT_FALSE(ParseRepositoryArgs({"index", "i3d"}, false).ok());
  absl::StatusOr<RepositoryCommandOptions> o = ParseRepositoryArgs({"load", "a", "b"}, false);
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(Contains(std::string(o.status().message()), "takes one MODEL")) << o.status();
  o = ParseRepositoryArgs({"unload", "a"}, true);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().message(), "--ready is for repository index only");
}

// ---- the token -------------------------------------------------------------

class RepositoryTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/repository_token_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const std::string& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    files_.push_back(path);
    return path;
  }

  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(RepositoryTokenTest, FileWithTrailingNewline) {
  const std::string path = Write("token", "s3cr3t-Token_42\n");
  absl::StatusOr<std::string> t = LoadAdminToken(true, path, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "s3cr3t-Token_42");
  // Surrounding whitespace of any kind, CRLF included.
  t = LoadAdminToken(true, Write("crlf", "  \tabc.def\r\n\n"), nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "abc.def");
}

TEST_F(RepositoryTokenTest, EnvironmentWhenNoFile) {
  absl::StatusOr<std::string> t = LoadAdminToken(false, "", " from-env\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "from-env");
}

TEST_F(RepositoryTokenTest, FileWinsOverEnvironment) {
  absl::StatusOr<std::string> t = LoadAdminToken(true, Write("token", "from-file\n"), "from-env");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "from-file");
}

TEST_F(RepositoryTokenTest, NeitherMeansNoToken) {
  absl::StatusOr<std::string> t = LoadAdminToken(false, "", nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "");
  // Set but blank: no token either.
  t = LoadAdminToken(false, "", " \n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "");
}

TEST_F(RepositoryTokenTest, UnreadableFileIsAClearError) {
  const std::string missing = dir_ + "/no-such-token";
  absl::StatusOr<std::string> t = LoadAdminToken(true, missing, "from-env");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(),
            "cannot read admin token file " + missing + ": No such file or directory");
  // A directory opens but cannot be read.
  t = LoadAdminToken(true, dir_, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(Contains(std::string(t.status().message()),
                       "cannot read admin token file " + dir_ + ": "))
      << t.status();
  if (geteuid() != 0) {  // root reads anything
    const std::string locked = Write("locked", "abc\n");
    ASSERT_EQ(chmod(locked.c_str(), 0), 0);
    t = LoadAdminToken(true, locked, nullptr);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().message(),
              "cannot read admin token file " + locked + ": Permission denied");
  }
}

TEST_F(RepositoryTokenTest, EmptyFileOrNameIsAnError) {
  const std::string path = Write("blank", " \n\n");
  absl::StatusOr<std::string> t = LoadAdminToken(true, path, "from-env");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "admin token file " + path + " is empty");
  t = LoadAdminToken(true, "", "from-env");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "--admin-token-file needs a file");
}

TEST_F(RepositoryTokenTest, TokenMustBeOneVisibleWord) {
  absl::StatusOr<std::string> t = LoadAdminToken(true, Write("two", "line-one\nline-two\n"),
                                                 nullptr);
  ASSERT_FALSE(t.ok());
  // Says where the token came from, never what it is.
  EXPECT_TRUE(Contains(std::string(t.status().message()), "admin token file ")) << t.status();
  EXPECT_FALSE(Contains(std::string(t.status().message()), "line-one"));
  t = LoadAdminToken(false, "", "has space");
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(Contains(std::string(t.status().message()), "CLIPSERVE_ADMIN_TOKEN"));
  EXPECT_FALSE(Contains(std::string(t.status().message()), "has space"));
  EXPECT_FALSE(LoadAdminToken(false, "", "caf\xc3\xa9").ok());
}

// ---- the table -------------------------------------------------------------

TEST(RepositoryIndexTableTest, AlignedWithDashForNoVersion) {
  inference::RepositoryIndexResponse index;
  auto add = [&](const char* name, const char* version, const char* state,
                 const char* reason) {
    auto* m = index.add_models();
    m->set_name(name);
    m->set_version(version);
    m->set_state(state);
    m->set_reason(reason);
  };
  add("i3d", "1", "READY", "");
  add("kinetics-i3d", "12", "LOADING", "");
  add("broken", "", "UNAVAILABLE", "config.pbtxt: no input");
  EXPECT_EQ(FormatRepositoryIndex(index),
            "MODEL         VERSION  STATE        REASON\n"
            "i3d           1        READY\n"
            "kinetics-i3d  12       LOADING\n"
            "broken        -        UNAVAILABLE  config.pbtxt: no input\n");
}

TEST(RepositoryIndexTableTest, EmptyIndexIsTheHeader) {
  EXPECT_EQ(FormatRepositoryIndex(inference::RepositoryIndexResponse()),
            "MODEL  VERSION  STATE  REASON\n");
}

TEST(RepositoryIndexTableTest, ReasonStaysOnOneLine) {
  inference::RepositoryIndexResponse index;
  auto* m = index.add_models();
  m->set_name("m");
  m->set_version("3");
  m->set_state("UNAVAILABLE");
  m->set_reason("load failed:\n  model.pt\tmissing\r\n");
  EXPECT_EQ(FormatRepositoryIndex(index),
            "MODEL  VERSION  STATE        REASON\n"
            "m      3        UNAVAILABLE  load failed:   model.pt missing\n");
}

// ---- the calls, against a fake server --------------------------------------

// Answers like the server's repository API: PERMISSION_DENIED without
// "authorization: Bearer good-token"; load/unload of "static" are
// FAILED_PRECONDITION (as when not in explicit model control mode).
class FakeRepository final : public inference::GRPCInferenceService::Service {
 public:
  grpc::Status RepositoryIndex(grpc::ServerContext* context,
                               const inference::RepositoryIndexRequest* request,
                               inference::RepositoryIndexResponse* response) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    last_ready = request->ready();
    auto* m = response->add_models();
    m->set_name("i3d");
    m->set_version("1");
    m->set_state("READY");
    if (!request->ready()) {
      m = response->add_models();
      m->set_name("broken");
      m->set_state("UNAVAILABLE");
      m->set_reason("no config.pbtxt");
    }
    return grpc::Status::OK;
  }
  grpc::Status RepositoryModelLoad(grpc::ServerContext* context,
                                   const inference::RepositoryModelLoadRequest* request,
                                   inference::RepositoryModelLoadResponse*) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    last_model = request->model_name();
    if (request->model_name() == "static") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "explicit model control mode is off");
    }
    return grpc::Status::OK;
  }
  grpc::Status RepositoryModelUnload(grpc::ServerContext* context,
                                     const inference::RepositoryModelUnloadRequest* request,
                                     inference::RepositoryModelUnloadResponse*) override {
    if (grpc::Status s = Check(context); !s.ok()) return s;
    last_model = request->model_name();
    return grpc::Status::OK;
  }

  bool last_ready = false;
  std::string last_model;

 private:
  static grpc::Status Check(grpc::ServerContext* context) {
    const auto& md = context->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end() || std::string(it->second.data(), it->second.size()) !=
                              "Bearer good-token") {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "admin token required");
    }
    return grpc::Status::OK;
  }
};

class FakeRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ChannelOptions o;
    o.address = "127.0.0.1:" + std::to_string(port);
    channel_ = *MakeChannel(o);
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs the command; its exit status, stdout and stderr.
  int Run(const RepositoryCommandOptions& o, std::string* out, std::string* err) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    const int rc = RunRepositoryCommand(channel_, o);
    std::fflush(stdout);
    *out = ::testing::internal::GetCapturedStdout();
    *err = ::testing::internal::GetCapturedStderr();
    return rc;
  }

  FakeRepository service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(FakeRepositoryTest, IndexWithTheToken) {
  RepositoryCommandOptions o;
  o.token = "good-token";
  o.timeout_ms = 10000;
  std::string out, err;
  EXPECT_EQ(Run(o, &out, &err), 0) << err;
  EXPECT_EQ(out,
            "MODEL   VERSION  STATE        REASON\n"
            "i3d     1        READY\n"
            "broken  -        UNAVAILABLE  no config.pbtxt\n");
  EXPECT_EQ(err, "");
  EXPECT_FALSE(service_.last_ready);
  o.ready_only = true;
  EXPECT_EQ(Run(o, &out, &err), 0) << err;
  EXPECT_TRUE(service_.last_ready);
  EXPECT_EQ(out, "MODEL  VERSION  STATE  REASON\ni3d    1        READY\n");
}

TEST_F(FakeRepositoryTest, LoadAndUnload) {
  RepositoryCommandOptions o;
  o.token = "good-token";
  o.action = RepositoryAction::kLoad;
  o.model = "i3d";
  std::string out, err;
  EXPECT_EQ(Run(o, &out, &err), 0) << err;
  EXPECT_EQ(out, "loaded model 'i3d'\n");
  EXPECT_EQ(service_.last_model, "i3d");
  o.action = RepositoryAction::kUnload;
  o.model = "tiny-b8";
  EXPECT_EQ(Run(o, &out, &err), 0) << err;
  EXPECT_EQ(out, "unloaded model 'tiny-b8'\n");
  EXPECT_EQ(service_.last_model, "tiny-b8");
}

TEST_F(FakeRepositoryTest, NoTokenIsPermissionDeniedWithAHint) {
  RepositoryCommandOptions o;
  std::string out, err;
  EXPECT_EQ(Run(o, &out, &err), 7);
  EXPECT_EQ(out, "");
  EXPECT_EQ(err,
            "error: PERMISSION_DENIED (code 7): admin token required\n"
            "no admin token was sent: give one with --admin-token-file FILE or "
            "CLIPSERVE_ADMIN_TOKEN\n");
}

TEST_F(FakeRepositoryTest, WrongTokenIsPermissionDeniedWithoutTheHint) {
  RepositoryCommandOptions o;
  o.token = "bad-token";
  o.action = RepositoryAction::kUnload;
  o.model = "i3d";
  std::string out, err;
  EXPECT_EQ(Run(o, &out, &err), 7);
  EXPECT_EQ(err, "error: PERMISSION_DENIED (code 7): admin token required\n");
  EXPECT_EQ(service_.last_model, "");
}

TEST_F(FakeRepositoryTest, FailedPreconditionExitsWithItsCode) {
  RepositoryCommandOptions o;
  o.token = "good-token";
  o.action = RepositoryAction::kLoad;
  o.model = "static";
  std::string out, err;
  EXPECT_EQ(Run(o, &out, &err), 9);
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "error: FAILED_PRECONDITION (code 9): explicit model control mode is off\n");
}

TEST(RepositoryUnreachableTest, UnavailableExitsWithItsCode) {
  ChannelOptions co;
  co.address = "127.0.0.1:1";  // nothing listens on port 1
  RepositoryCommandOptions o;
  o.timeout_ms = 5000;
  ::testing::internal::CaptureStderr();
  const int rc = RunRepositoryCommand(*MakeChannel(co), o);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 14) << err;
  EXPECT_EQ(err.rfind("error: UNAVAILABLE (code 14): ", 0), 0u) << err;
}

}  // namespace
}  // namespace clipserve::client
