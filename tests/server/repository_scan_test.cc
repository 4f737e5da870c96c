// server/lifecycle/repository_scan: ListModels, ModelFingerprint, ScanModel
// and SelectVersions, on repositories written to a temp directory. Nothing
// is loaded, so the model.pt files are dummies.
#include "server/lifecycle/repository_scan.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/model_config.h"

namespace clipserve::server {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

// A fresh directory under the test temp dir, removed with the object.
class TempRepo {
 public:
  TempRepo() {
    static std::atomic<int> counter{0};
    path_ = (fs::path(::testing::TempDir()) /
             absl::StrCat("repository_scan_test_", getpid(), "_", counter++))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempRepo() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempRepo(const TempRepo&) = delete;
  TempRepo& operator=(const TempRepo&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path);
  out << text;
}

void AppendFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
}

// A valid config.pbtxt (the text format the integration tests write), with
// `extra` fields appended.
std::string ConfigText(const std::string& name, const std::string& extra = "",
                       const std::string& backend = "torchscript") {
  return absl::StrCat("name: \"", name, "\"\nbackend: \"", backend, "\"\n",
                      "max_batch_size: 4\n",
                      "input { name: \"clip\" data_type: TYPE_FP32 dims: [3, 8, 32, 32] }\n",
                      "output { name: \"logits\" data_type: TYPE_FP32 dims: [5] }\n",
                      extra, "\n");
}

// <repo>/<name>/config.pbtxt and a dummy <version>/model.pt per version.
void WriteModel(const std::string& repo, const std::string& name,
                const std::string& config, const std::vector<std::string>& versions) {
  const fs::path dir = fs::path(repo) / name;
  WriteFile(dir / "config.pbtxt", config);
  for (const std::string& v : versions) {
    WriteFile(dir / v / "model.pt", absl::StrCat("dummy weights of version ", v));
  }
}

std::vector<int64_t> Numbers(const ModelOnDisk& m) {
  std::vector<int64_t> out;
  for (const VersionOnDisk& v : m.versions) out.push_back(v.number);
  return out;
}

config::ModelVersionPolicy Latest(uint32_t n) {
  config::ModelVersionPolicy p;
  p.mutable_latest()->set_num_versions(n);
  return p;
}

config::ModelVersionPolicy All() {
  config::ModelVersionPolicy p;
  p.mutable_all();
  return p;
}

config::ModelVersionPolicy Specific(const std::vector<int64_t>& versions) {
  config::ModelVersionPolicy p;
  for (int64_t v : versions) p.mutable_specific()->add_versions(v);
  return p;
}

using Versions = std::vector<int64_t>;

// ---------------------------------------------------------------------------
// SelectVersions

TEST(SelectVersionsTest, LatestTakesTheHighestNOfUnsortedInput) {
  absl::StatusOr<Versions> v = SelectVersions(Latest(2), {3, 1, 7, 5}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{5, 7}));
}

TEST(SelectVersionsTest, LatestNLargerThanAvailableServesAllSorted) {
  absl::StatusOr<Versions> v = SelectVersions(Latest(10), {4, 2, 9}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{2, 4, 9}));
}

TEST(SelectVersionsTest, AllServesEveryVersionSorted) {
  absl::StatusOr<Versions> v = SelectVersions(All(), {3, 1, 2, 10}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{1, 2, 3, 10}));
}

TEST(SelectVersionsTest, SpecificServesTheListedVersionsSorted) {
  absl::StatusOr<Versions> v = SelectVersions(Specific({3, 1}), {2, 3, 1, 4}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{1, 3}));
}

TEST(SelectVersionsTest, SpecificMissingVersionIsNotFoundNamingItAndWhatExists) {
  absl::StatusOr<Versions> v = SelectVersions(Specific({1, 4}), {3, 1, 2}, "clips");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("'clips'"));
  EXPECT_THAT(std::string(v.status().message()),
              HasSubstr("version_policy.specific names version 4"));
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("found: 1, 2, 3"));
}

TEST(SelectVersionsTest, SpecificWithNothingAvailableSaysNoneFound) {
  absl::StatusOr<Versions> v = SelectVersions(Specific({1}), {}, "m");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("found: none"));
}

TEST(SelectVersionsTest, NoPolicyServesTheLatestOne) {
  absl::StatusOr<Versions> v =
      SelectVersions(config::ModelVersionPolicy(), {2, 8, 5}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{8}));
}

TEST(SelectVersionsTest, LatestOneOfASingleVersion) {
  absl::StatusOr<Versions> v = SelectVersions(Latest(1), {6}, "m");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (Versions{6}));
}

// ---------------------------------------------------------------------------
// ScanModel

TEST(ScanModelTest, DefaultPolicyServesTheHighestVersion) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1", "3", "2"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "m");
  EXPECT_EQ(Numbers(*m), (Versions{3}));
  // Defaults are filled: the config is validated.
  EXPECT_EQ(m->config.version_policy().latest().num_versions(), 1u);
  const VersionOnDisk& v = m->versions[0];
  EXPECT_EQ(fs::path(v.dir), fs::path(repo.path()) / "m" / "3");
  EXPECT_THAT(v.fingerprint, HasSubstr("model.pt"));
}

TEST(ScanModelTest, LatestPolicyServesTheHighestNAscending) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_policy { latest { num_versions: 2 } }"),
             {"1", "10", "2", "3"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{3, 10}));
  EXPECT_EQ(fs::path(m->versions[0].dir), fs::path(repo.path()) / "m" / "3");
  EXPECT_EQ(fs::path(m->versions[1].dir), fs::path(repo.path()) / "m" / "10");
}

TEST(ScanModelTest, AllPolicyServesEveryVersion) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m", "version_policy { all {} }"),
             {"2", "1", "3"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{1, 2, 3}));
  for (const VersionOnDisk& v : m->versions) {
    EXPECT_EQ(fs::path(v.dir), fs::path(repo.path()) / "m" / absl::StrCat(v.number));
    EXPECT_FALSE(v.fingerprint.empty());
  }
}

TEST(ScanModelTest, SpecificPolicyServesExactlyTheListedVersions) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_policy { specific { versions: [3, 1] } }"),
             {"1", "2", "3", "4"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{1, 3}));
}

TEST(ScanModelTest, SpecificPolicyNamingAMissingVersionIsNotFound) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_policy { specific { versions: [1, 5] } }"),
             {"1", "2"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("names version 5"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("found: 1, 2"));
}

TEST(ScanModelTest, LabelsMapToServedVersions) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m",
                        "version_policy { all {} }\n"
                        "version_labels { key: \"stable\" value: 1 }\n"
                        "version_labels { key: \"canary\" value: 2 }"),
             {"1", "2"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version_labels,
            (std::map<std::string, int64_t>{{"canary", 2}, {"stable", 1}}));
}

TEST(ScanModelTest, NoLabelsGiveAnEmptyMap) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->version_labels.empty());
}

TEST(ScanModelTest, LabelNamingAnUnservedVersionIsFailedPrecondition) {
  TempRepo repo;
  // Version 1 exists on disk but latest 1 serves only 2.
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_labels { key: \"stable\" value: 1 }"),
             {"1", "2"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("config.pbtxt"));
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("version_labels[stable]: version 1 is not served (serving 2)"));
}

TEST(ScanModelTest, LabelNamingAVersionWithNoDirectoryIsFailedPrecondition) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_labels { key: \"canary\" value: 7 }"), {"1"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("version_labels[canary]: version 7 is not served (serving 1)"));
}

TEST(ScanModelTest, NonNumericHiddenAndNegativeVersionDirectoriesAreIgnored) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m", "version_policy { all {} }"),
             {"1", "2", ".3", "latest", "v4", "-5"});
  // A plain file with a numeric name is no version directory either.
  WriteFile(fs::path(repo.path()) / "m" / "6", "not a directory");
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{1, 2}));
}

TEST(ScanModelTest, HiddenVersionDirectoryIsNotTheLatest) {
  TempRepo repo;
  // .3 is being copied in: latest 1 still serves 2.
  WriteModel(repo.path(), "m", ConfigText("m"), {"1", "2", ".3"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{2}));
  // Renamed to 3: published.
  fs::rename(fs::path(repo.path()) / "m" / ".3", fs::path(repo.path()) / "m" / "3");
  m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{3}));
}

// Every served version's dir is the directory it was read from (header:
// "dir: The directory"), whatever spelling of its number the name uses.
TEST(ScanModelTest, VersionDirectoryWithLeadingZeroOrPlusServesAnExistingDir) {
  for (const char* name : {"02", "+2"}) {
    TempRepo repo;
    WriteModel(repo.path(), "m", ConfigText("m", "version_policy { all {} }"), {name});
    absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
    if (!m.ok()) continue;  // ignoring such a name is fine too
    for (const VersionOnDisk& v : m->versions) {
      EXPECT_TRUE(fs::is_directory(v.dir))
          << "directory '" << name << "' is served as version " << v.number
          << " with dir " << v.dir << ", which does not exist";
      EXPECT_FALSE(v.fingerprint.empty()) << "directory '" << name << "'";
    }
  }
}

// "versions: served by the policy, ascending": one entry per version, even
// when two directory names spell the same number.
TEST(ScanModelTest, TwoSpellingsOfOneVersionAreServedOnce) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m", "version_policy { all {} }"),
             {"1", "01"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Numbers(*m), (Versions{1}));
}

TEST(ScanModelTest, TorchScriptWithoutVersionDirectoryIsNotFound) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("no version directory"));
}

TEST(ScanModelTest, TorchScriptWithOnlyAHiddenVersionDirectoryIsNotFound) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {".1"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("no version directory"));
}

TEST(ScanModelTest, I3dWithoutVersionDirectoryIsVersionOneWithNoDir) {
  TempRepo repo;
  WriteModel(repo.path(), "i3d", ConfigText("i3d", "", kI3dBackend), {});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "i3d");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->versions.size(), 1u);
  EXPECT_EQ(m->versions[0].number, 1);
  EXPECT_TRUE(m->versions[0].dir.empty());
}

TEST(ScanModelTest, I3dWithVersionDirectoriesUsesThem) {
  TempRepo repo;
  WriteModel(repo.path(), "i3d", ConfigText("i3d", "", kI3dBackend), {"2"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "i3d");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->versions.size(), 1u);
  EXPECT_EQ(m->versions[0].number, 2);
  EXPECT_EQ(fs::path(m->versions[0].dir), fs::path(repo.path()) / "i3d" / "2");
}

TEST(ScanModelTest, LabelsTxtIsRead) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  WriteFile(fs::path(repo.path()) / "m" / "labels.txt", "run\n  jump \nswim\n\n");
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->labels, (std::vector<std::string>{"run", "jump", "swim"}));
}

TEST(ScanModelTest, NoLabelsTxtGivesNoLabels) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->labels.empty());
}

TEST(ScanModelTest, MissingConfigIsNotFoundNamingTheFile) {
  TempRepo repo;
  WriteFile(fs::path(repo.path()) / "m" / "1" / "model.pt", "x");
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("config.pbtxt"));
}

TEST(ScanModelTest, InvalidConfigIsInvalidArgumentNamingFileAndField) {
  TempRepo repo;
  WriteModel(repo.path(), "m",
             ConfigText("m", "version_policy { latest { num_versions: 0 } }"), {"1"});
  absl::StatusOr<ModelOnDisk> m = ScanModel(repo.path(), "m");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("config.pbtxt"));
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("version_policy.latest.num_versions"));
}

TEST(ScanModelTest, ModelKeyIgnoresVersionLabels) {
  TempRepo repo;
  const fs::path config = fs::path(repo.path()) / "m" / "config.pbtxt";
  WriteModel(repo.path(), "m",
             ConfigText("m",
                        "version_policy { all {} }\n"
                        "version_labels { key: \"stable\" value: 1 }"),
             {"1", "2"});
  absl::StatusOr<ModelOnDisk> a = ScanModel(repo.path(), "m");
  ASSERT_TRUE(a.ok()) << a.status();
  WriteFile(config, ConfigText("m",
                               "version_policy { all {} }\n"
                               "version_labels { key: \"stable\" value: 2 }\n"
                               "version_labels { key: \"canary\" value: 1 }"));
  absl::StatusOr<ModelOnDisk> b = ScanModel(repo.path(), "m");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(a->model_key.empty());
  EXPECT_EQ(a->model_key, b->model_key);
  EXPECT_NE(a->version_labels, b->version_labels);
}

TEST(ScanModelTest, ModelKeyChangesWithLabelsTxt) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const fs::path labels = fs::path(repo.path()) / "m" / "labels.txt";
  WriteFile(labels, "a\nb\n");
  absl::StatusOr<ModelOnDisk> a = ScanModel(repo.path(), "m");
  ASSERT_TRUE(a.ok()) << a.status();
  WriteFile(labels, "a\nc\n");
  absl::StatusOr<ModelOnDisk> b = ScanModel(repo.path(), "m");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->model_key, b->model_key);
  // And back: the key depends on the content only.
  WriteFile(labels, "a\nb\n");
  absl::StatusOr<ModelOnDisk> c = ScanModel(repo.path(), "m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(a->model_key, c->model_key);
}

TEST(ScanModelTest, ModelKeyChangesWithTheRestOfTheConfig) {
  TempRepo repo;
  const fs::path config = fs::path(repo.path()) / "m" / "config.pbtxt";
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  absl::StatusOr<ModelOnDisk> a = ScanModel(repo.path(), "m");
  ASSERT_TRUE(a.ok()) << a.status();
  WriteFile(config, ConfigText("m", "dynamic_batching { max_queue_delay_microseconds: 100 }"));
  absl::StatusOr<ModelOnDisk> b = ScanModel(repo.path(), "m");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->model_key, b->model_key);
}

TEST(ScanModelTest, VersionFingerprintChangesWithItsFilesOnly) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m", "version_policy { all {} }"),
             {"1", "2"});
  absl::StatusOr<ModelOnDisk> a = ScanModel(repo.path(), "m");
  ASSERT_TRUE(a.ok()) << a.status();
  AppendFile(fs::path(repo.path()) / "m" / "2" / "model.pt", "more weights");
  absl::StatusOr<ModelOnDisk> b = ScanModel(repo.path(), "m");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(Numbers(*b), (Versions{1, 2}));
  EXPECT_EQ(a->versions[0].fingerprint, b->versions[0].fingerprint);
  EXPECT_NE(a->versions[1].fingerprint, b->versions[1].fingerprint);
}

// ---------------------------------------------------------------------------
// ModelFingerprint

TEST(ModelFingerprintTest, EqualWhenNothingChanges) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  const std::string b = ModelFingerprint(repo.path(), "m");
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
}

TEST(ModelFingerprintTest, ChangesWhenAFileGrows) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  AppendFile(fs::path(repo.path()) / "m" / "1" / "model.pt", "more");
  EXPECT_NE(a, ModelFingerprint(repo.path(), "m"));
}

TEST(ModelFingerprintTest, ChangesWhenTheConfigChanges) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  AppendFile(fs::path(repo.path()) / "m" / "config.pbtxt",
             "version_policy { all {} }\n");
  EXPECT_NE(a, ModelFingerprint(repo.path(), "m"));
}

TEST(ModelFingerprintTest, ChangesWhenAVersionDirectoryIsAdded) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  WriteFile(fs::path(repo.path()) / "m" / "2" / "model.pt", "v2");
  EXPECT_NE(a, ModelFingerprint(repo.path(), "m"));
}

// A new version directory changes what ScanModel serves (latest 1 now names
// it) even before any file is in it.
TEST(ModelFingerprintTest, ChangesWhenAnEmptyVersionDirectoryIsAdded) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  fs::create_directories(fs::path(repo.path()) / "m" / "2");
  EXPECT_NE(a, ModelFingerprint(repo.path(), "m"));
}

TEST(ModelFingerprintTest, ChangesWhenAVersionDirectoryIsRemoved) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1", "2"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  fs::remove_all(fs::path(repo.path()) / "m" / "2");
  EXPECT_NE(a, ModelFingerprint(repo.path(), "m"));
}

TEST(ModelFingerprintTest, IgnoresHiddenEntries) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  const std::string a = ModelFingerprint(repo.path(), "m");
  // A version being copied in, an editor's swap file, and a hidden file
  // inside a version directory.
  WriteFile(fs::path(repo.path()) / "m" / ".2" / "model.pt", "partial");
  WriteFile(fs::path(repo.path()) / "m" / ".config.pbtxt.swp", "swap");
  WriteFile(fs::path(repo.path()) / "m" / "1" / ".model.pt.part", "partial");
  EXPECT_EQ(a, ModelFingerprint(repo.path(), "m"));
  // Growing a hidden file changes nothing either.
  AppendFile(fs::path(repo.path()) / "m" / ".2" / "model.pt", "more");
  EXPECT_EQ(a, ModelFingerprint(repo.path(), "m"));
}

TEST(ModelFingerprintTest, EmptyForAMissingDirectory) {
  TempRepo repo;
  EXPECT_EQ(ModelFingerprint(repo.path(), "nothing"), "");
  EXPECT_EQ(ModelFingerprint((fs::path(repo.path()) / "no-repo").string(), "m"), "");
}

TEST(ModelFingerprintTest, NonEmptyForAnEmptyDirectory) {
  // "Empty" means gone: a directory with nothing in it is still there.
  TempRepo repo;
  fs::create_directories(fs::path(repo.path()) / "m");
  EXPECT_NE(ModelFingerprint(repo.path(), "m"), "");
}

TEST(ModelFingerprintTest, EmptyAfterTheDirectoryIsRemoved) {
  TempRepo repo;
  WriteModel(repo.path(), "m", ConfigText("m"), {"1"});
  ASSERT_NE(ModelFingerprint(repo.path(), "m"), "");
  fs::remove_all(fs::path(repo.path()) / "m");
  EXPECT_EQ(ModelFingerprint(repo.path(), "m"), "");
}

// ---------------------------------------------------------------------------
// ListModels

TEST(ListModelsTest, SortedWithHiddenAndFilesSkipped) {
  TempRepo repo;
  for (const char* name : {"zeta", "alpha", "mid", ".staging", ".git"}) {
    fs::create_directories(fs::path(repo.path()) / name);
  }
  WriteFile(fs::path(repo.path()) / "README.md", "not a model");
  absl::StatusOr<std::vector<std::string>> names = ListModels(repo.path());
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (std::vector<std::string>{"alpha", "mid", "zeta"}));
}

TEST(ListModelsTest, EmptyRepositoryListsNothing) {
  TempRepo repo;
  absl::StatusOr<std::vector<std::string>> names = ListModels(repo.path());
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(names->empty());
}

TEST(ListModelsTest, MissingRootIsNotFound) {
  TempRepo repo;
  const std::string root = (fs::path(repo.path()) / "missing").string();
  absl::StatusOr<std::vector<std::string>> names = ListModels(root);
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(names.status().message()), HasSubstr(root));
}

TEST(ListModelsTest, RegularFileRootIsNotFound) {
  TempRepo repo;
  const std::string root = (fs::path(repo.path()) / "file").string();
  WriteFile(root, "x");
  absl::StatusOr<std::vector<std::string>> names = ListModels(root);
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(names.status().message()), HasSubstr("is not a directory"));
}

}  // namespace
}  // namespace clipserve::server
