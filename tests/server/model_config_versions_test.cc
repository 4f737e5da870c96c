// ValidateModelConfig's checks of version_policy and version_labels
// (proto/clipserve/config.proto). Whether a label names a served version
// depends on the directories: see repository_scan_test.cc.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

using ::testing::HasSubstr;

constexpr const char* kPath = "m/config.pbtxt";

constexpr const char* kGood = R"pb(
  name: "tiny"
  backend: "torchscript"
  max_batch_size: 8
  input { name: "clip" data_type: TYPE_FP32 dims: [ 3, 16, 112, 112 ] }
  output { name: "logits" data_type: TYPE_FP32 dims: [ 400 ] }
)pb";

absl::StatusOr<config::ModelConfig> Parse(const std::string& text) {
  absl::StatusOr<config::ModelConfig> c = ParseModelConfig(text, kPath);
  if (!c.ok()) return c.status();
  if (absl::Status s = ValidateModelConfig(&*c, kPath, "tiny"); !s.ok()) return s;
  return c;
}

// The good config with `field_text` appended.
absl::StatusOr<config::ModelConfig> ParseWith(const std::string& field_text) {
  return Parse(absl::StrCat(kGood, "\n", field_text));
}

// INVALID_ARGUMENT whose message contains "<path>: <field>: " and `what`.
void ExpectInvalid(const absl::StatusOr<config::ModelConfig>& c,
                   const std::string& field, const std::string& what) {
  ASSERT_FALSE(c.ok()) << "accepted; expected an error in " << field;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr(absl::StrCat(kPath, ": ", field, ": ")));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(what));
}

// The message for a label that is not accepted.
std::string BadLabel(const std::string& label) {
  return absl::StrCat("label \"", label, "\" must be 1 to 64");
}

std::string Label(const std::string& key, int64_t version) {
  return absl::StrCat("version_labels { key: \"", key, "\" value: ", version, " }");
}

// ---------------------------------------------------------------------------
// version_policy

TEST(ModelConfigVersionsTest, NoPolicyBecomesLatestOne) {
  absl::StatusOr<config::ModelConfig> c = Parse(kGood);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_version_policy());
  ASSERT_TRUE(c->version_policy().has_latest());
  EXPECT_EQ(c->version_policy().latest().num_versions(), 1u);
  EXPECT_TRUE(c->version_labels().empty());
}

TEST(ModelConfigVersionsTest, LatestNumVersionsIsKept) {
  absl::StatusOr<config::ModelConfig> c =
      ParseWith("version_policy { latest { num_versions: 3 } }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->version_policy().latest().num_versions(), 3u);
}

TEST(ModelConfigVersionsTest, LatestZeroVersionsRejected) {
  ExpectInvalid(ParseWith("version_policy { latest { num_versions: 0 } }"),
                "version_policy.latest.num_versions", "must be at least 1");
}

TEST(ModelConfigVersionsTest, LatestWithoutNumVersionsRejected) {
  // num_versions left out is 0, not a default.
  ExpectInvalid(ParseWith("version_policy { latest {} }"),
                "version_policy.latest.num_versions", "must be at least 1");
}

TEST(ModelConfigVersionsTest, AllAccepted) {
  absl::StatusOr<config::ModelConfig> c = ParseWith("version_policy { all {} }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->version_policy().has_all());
}

TEST(ModelConfigVersionsTest, SpecificAcceptedAsListed) {
  absl::StatusOr<config::ModelConfig> c =
      ParseWith("version_policy { specific { versions: [3, 0, 1] } }");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->version_policy().has_specific());
  EXPECT_THAT(c->version_policy().specific().versions(),
              ::testing::ElementsAre(3, 0, 1));
}

TEST(ModelConfigVersionsTest, SpecificEmptyRejected) {
  ExpectInvalid(ParseWith("version_policy { specific {} }"),
                "version_policy.specific.versions", "lists no version");
}

TEST(ModelConfigVersionsTest, SpecificNegativeRejected) {
  ExpectInvalid(ParseWith("version_policy { specific { versions: [1, -2] } }"),
                "version_policy.specific.versions", "-2 is negative");
}

TEST(ModelConfigVersionsTest, SpecificDuplicateRejected) {
  ExpectInvalid(ParseWith("version_policy { specific { versions: [2, 1, 2] } }"),
                "version_policy.specific.versions", "2 is listed twice");
}

// ---------------------------------------------------------------------------
// version_labels

TEST(ModelConfigVersionsTest, LabelsWithLettersDigitsUnderscoreDashDotAccepted) {
  absl::StatusOr<config::ModelConfig> c =
      ParseWith(absl::StrCat("version_policy { all {} }\n", Label("stable", 1), "\n",
                             Label("canary-2", 2), "\n", Label("v1.2_rc", 0)));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->version_labels().size(), 3u);
  EXPECT_EQ(c->version_labels().at("stable"), 1);
  EXPECT_EQ(c->version_labels().at("canary-2"), 2);
  EXPECT_EQ(c->version_labels().at("v1.2_rc"), 0);
}

TEST(ModelConfigVersionsTest, NumericLabelRejected) {
  ExpectInvalid(ParseWith(Label("2", 1)), "version_labels", BadLabel("2"));
  EXPECT_THAT(std::string(ParseWith(Label("2", 1)).status().message()),
              HasSubstr("not a number"));
}

TEST(ModelConfigVersionsTest, NumericLabelWithLeadingZeroOrSignRejected) {
  ExpectInvalid(ParseWith(Label("007", 1)), "version_labels", BadLabel("007"));
  ExpectInvalid(ParseWith(Label("-1", 1)), "version_labels", BadLabel("-1"));
}

TEST(ModelConfigVersionsTest, EmptyLabelRejected) {
  ExpectInvalid(ParseWith(Label("", 1)), "version_labels", BadLabel(""));
}

TEST(ModelConfigVersionsTest, LabelWithSlashRejected) {
  ExpectInvalid(ParseWith(Label("a/b", 1)), "version_labels", BadLabel("a/b"));
}

TEST(ModelConfigVersionsTest, LabelWithSpaceRejected) {
  ExpectInvalid(ParseWith(Label("my label", 1)), "version_labels",
                BadLabel("my label"));
  ExpectInvalid(ParseWith(Label(" stable", 1)), "version_labels",
                BadLabel(" stable"));
}

TEST(ModelConfigVersionsTest, LabelOfSixtyFourCharactersAcceptedSixtyFiveRejected) {
  const std::string l64(64, 'a');
  absl::StatusOr<config::ModelConfig> c = ParseWith(Label(l64, 1));
  EXPECT_TRUE(c.ok()) << c.status();
  const std::string l65(65, 'a');
  ExpectInvalid(ParseWith(Label(l65, 1)), "version_labels", BadLabel(l65));
}

TEST(ModelConfigVersionsTest, NegativeLabelVersionRejected) {
  ExpectInvalid(ParseWith(Label("stable", -1)), "version_labels[stable]",
                "version -1 is negative");
}

TEST(ModelConfigVersionsTest, LabelVersionZeroAccepted) {
  absl::StatusOr<config::ModelConfig> c = ParseWith(Label("first", 0));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->version_labels().at("first"), 0);
}

// Labels naming versions the policy may not serve are not the config's
// business: that depends on the directories (ScanModel checks it).
TEST(ModelConfigVersionsTest, LabelVersionNotCheckedAgainstThePolicy) {
  absl::StatusOr<config::ModelConfig> c = ParseWith(absl::StrCat(
      "version_policy { specific { versions: [1] } }\n", Label("later", 9)));
  ASSERT_TRUE(c.ok()) << c.status();
}

}  // namespace
}  // namespace clipserve::server
