// server/lifecycle/admin_auth: who may call the model repository RPCs.
#include "server/lifecycle/admin_auth.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clipserve::server {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kToken = "s3cr3t-T0ken-0123456789";

AdminAuth TokenAuth() {
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromToken(kToken);
  EXPECT_TRUE(auth.ok()) << auth.status();
  return *std::move(auth);
}

// A file under the test temp dir holding `text`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path_ = (fs::path(::testing::TempDir()) /
             absl::StrCat("admin_auth_test_", getpid(), "_", counter++))
                .string();
    std::ofstream(path_) << text;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// PERMISSION_DENIED, without `sent` (what the call carried) in the message.
void ExpectDeniedWithoutEcho(const absl::Status& s, const std::string& sent) {
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_FALSE(s.message().empty());
  if (!sent.empty()) {
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr(sent)));
  }
  // Nor the token the server holds.
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(kToken)));
}

// ---------------------------------------------------------------------------
// Closed and open

TEST(AdminAuthTest, ClosedRefusesEverythingNamingTheFlag) {
  const AdminAuth auth = AdminAuth::Closed();
  for (const std::string& sent :
       {std::string(), absl::StrCat("Bearer ", kToken), std::string("anything")}) {
    const absl::Status s = auth.Check(sent);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << "sent: " << sent;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--admin-token-file"));
  }
}

TEST(AdminAuthTest, OpenAcceptsEverything) {
  const AdminAuth auth = AdminAuth::Open();
  EXPECT_TRUE(auth.Check("").ok());
  EXPECT_TRUE(auth.Check("Bearer whatever").ok());
  EXPECT_TRUE(auth.Check("Basic dXNlcjpwYXNz").ok());
}

// ---------------------------------------------------------------------------
// Token mode

TEST(AdminAuthTest, TokenAcceptsTheRightBearerToken) {
  EXPECT_TRUE(TokenAuth().Check(absl::StrCat("Bearer ", kToken)).ok());
}

TEST(AdminAuthTest, TokenRefusesAMissingHeader) {
  const absl::Status s = TokenAuth().Check("");
  ExpectDeniedWithoutEcho(s, "");
  // It says what to send.
  EXPECT_THAT(std::string(s.message()), HasSubstr("authorization"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("Bearer"));
}

TEST(AdminAuthTest, TokenRefusesAnotherScheme) {
  const std::string sent = "Basic dXNlcjpwYXNzd29yZA==";
  ExpectDeniedWithoutEcho(TokenAuth().Check(sent), "dXNlcjpwYXNzd29yZA");
}

TEST(AdminAuthTest, TokenRefusesTheRightTokenUnderAnotherScheme) {
  const std::string sent = absl::StrCat("Token ", kToken);
  ExpectDeniedWithoutEcho(TokenAuth().Check(sent), sent);
}

TEST(AdminAuthTest, TokenRefusesTheBareTokenWithoutScheme) {
  ExpectDeniedWithoutEcho(TokenAuth().Check(kToken), kToken);
}

TEST(AdminAuthTest, TokenRefusesAWrongToken) {
  const std::string wrong = "wrong-token-abcdefghijkl";
  ExpectDeniedWithoutEcho(TokenAuth().Check(absl::StrCat("Bearer ", wrong)), wrong);
}

TEST(AdminAuthTest, TokenRefusesAPrefixOfTheToken) {
  const std::string token = kToken;
  for (size_t n : {size_t{0}, size_t{1}, token.size() / 2, token.size() - 1}) {
    const std::string prefix = token.substr(0, n);
    const absl::Status s = TokenAuth().Check(absl::StrCat("Bearer ", prefix));
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << "prefix length " << n;
    // (A one-letter prefix may well occur in any English message.)
    if (n >= 4) {
      EXPECT_THAT(std::string(s.message()), Not(HasSubstr(prefix)));
    }
  }
}

TEST(AdminAuthTest, TokenRefusesTheTokenWithASuffix) {
  for (const std::string& suffix : {std::string("x"), std::string(" "),
                                    std::string("\n"), std::string(1, '\0')}) {
    const std::string sent = absl::StrCat("Bearer ", kToken, suffix);
    const absl::Status s = TokenAuth().Check(sent);
    ExpectDeniedWithoutEcho(s, std::string(kToken));
  }
}

TEST(AdminAuthTest, TokenRefusesTheTokenWithLeadingSpace) {
  ExpectDeniedWithoutEcho(TokenAuth().Check(absl::StrCat("Bearer  ", kToken)),
                          kToken);
}

TEST(AdminAuthTest, TokenRefusesTheSchemeAlone) {
  ExpectDeniedWithoutEcho(TokenAuth().Check("Bearer "), "");
  ExpectDeniedWithoutEcho(TokenAuth().Check("Bearer"), "");
}

// ---------------------------------------------------------------------------
// FromToken and FromTokenFile

TEST(AdminAuthTest, FromTokenStripsSurroundingWhitespace) {
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromToken(absl::StrCat(" \t", kToken, "\r\n"));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->Check(absl::StrCat("Bearer ", kToken)).ok());
  EXPECT_EQ(auth->Check(absl::StrCat("Bearer  \t", kToken, "\r\n")).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AdminAuthTest, FromTokenRejectsShortTokens) {
  for (const std::string& token : {std::string(), std::string("short"),
                                    std::string(15, 'a')}) {
    absl::StatusOr<AdminAuth> auth = AdminAuth::FromToken(token);
    ASSERT_FALSE(auth.ok()) << "length " << token.size();
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(auth.status().message()), HasSubstr("16"));
  }
}

TEST(AdminAuthTest, FromTokenCountsLengthAfterStripping) {
  // 15 characters padded to more than 16 with whitespace is still short.
  absl::StatusOr<AdminAuth> auth =
      AdminAuth::FromToken(absl::StrCat("   ", std::string(15, 'a'), "   \n"));
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AdminAuthTest, FromTokenAcceptsSixteenCharacters) {
  const std::string token(16, 'k');
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromToken(token);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->Check(absl::StrCat("Bearer ", token)).ok());
}

TEST(AdminAuthTest, FromTokenFileReadsTheTokenWithoutTrailingNewline) {
  TempFile file(absl::StrCat(kToken, "\n"));
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromTokenFile(file.path());
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->Check(absl::StrCat("Bearer ", kToken)).ok());
  EXPECT_EQ(auth->Check(absl::StrCat("Bearer ", kToken, "\n")).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AdminAuthTest, FromTokenFileMissingFileIsAnErrorNamingIt) {
  const std::string path =
      (fs::path(::testing::TempDir()) / "admin_auth_test_no_such_file").string();
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromTokenFile(path);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(auth.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(auth.status().message()), HasSubstr("--admin-token-file"));
}

TEST(AdminAuthTest, FromTokenFileWithAShortTokenIsAnErrorNamingTheFile) {
  TempFile file("short\n");
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromTokenFile(file.path());
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(auth.status().message()), HasSubstr(file.path()));
  EXPECT_THAT(std::string(auth.status().message()), HasSubstr("16"));
  // The error does not print the file's content.
  EXPECT_THAT(std::string(auth.status().message()), Not(HasSubstr("short")));
}

TEST(AdminAuthTest, FromTokenFileEmptyFileIsAnError) {
  TempFile file("");
  absl::StatusOr<AdminAuth> auth = AdminAuth::FromTokenFile(file.path());
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// ConstantTimeEquals

TEST(ConstantTimeEqualsTest, TruthTable) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("a", "a"));
  EXPECT_TRUE(ConstantTimeEquals("token-123", "token-123"));
  EXPECT_FALSE(ConstantTimeEquals("a", "b"));
  EXPECT_FALSE(ConstantTimeEquals("token-123", "token-124"));
  EXPECT_FALSE(ConstantTimeEquals("xoken-123", "token-123"));
}

TEST(ConstantTimeEqualsTest, DifferentLengthsAreUnequal) {
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_FALSE(ConstantTimeEquals("a", ""));
}

TEST(ConstantTimeEqualsTest, TrailingNulBytesStillDiffer) {
  // The shorter string is compared as if padded with zeros; the length
  // difference alone must still make them unequal.
  const std::string with_nul("abc\0", 4);
  EXPECT_FALSE(ConstantTimeEquals(with_nul, "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", with_nul));
  EXPECT_FALSE(ConstantTimeEquals(std::string(1, '\0'), ""));
  EXPECT_TRUE(ConstantTimeEquals(with_nul, with_nul));
}

TEST(ConstantTimeEqualsTest, HighBytesCompareExactly) {
  EXPECT_TRUE(ConstantTimeEquals("\xff\x80", "\xff\x80"));
  EXPECT_FALSE(ConstantTimeEquals("\xff\x80", "\xff\x81"));
  EXPECT_FALSE(ConstantTimeEquals("\x80", std::string(1, '\0')));
}

}  // namespace
}  // namespace clipserve::server
