// ModelRepository's load behaviour on real repositories: which versions it
// serves, what it ignores, and what it refuses (with which code and
// message), through Open(), Load(), Find(), models() and Index() as the
// server uses them. The models are small TinyVideoNet TorchScript files
// written by tests/integration/test_models.h (which keeps LibTorch out of
// this file), loaded on the CPU. The directory rules alone are tested in
// repository_scan_test.cc.
#include "server/lifecycle/model_repository.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/metrics.h"
#include "tests/integration/test_models.h"

namespace clipserve::server {
namespace {

namespace fs = std::filesystem;

using ::clipserve::testing::ModelConfigText;
using ::clipserve::testing::TempDir;
using ::clipserve::testing::WriteTinyModel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kT = 4, kH = 16, kW = 16, kClasses = 5;

// A TorchScript config with kClasses outputs and `extra` fields appended.
std::string Config(const std::string& name, const std::string& extra = "") {
  return ModelConfigText(name, 4, kT, kH, kW, kClasses, extra);
}

// Copies version 1 of <repo>/<model> (as WriteTinyModel wrote it) to the
// directory named `to` beside it: another version, or a hidden one.
void CopyVersionOne(const std::string& repo, const std::string& model,
                    const std::string& to) {
  const fs::path dir = fs::path(repo) / model;
  fs::copy(dir / "1", dir / to, fs::copy_options::recursive);
}

RepositoryOptions Options(const std::string& root, ModelControlMode mode,
                          std::vector<std::string> startup_models = {}) {
  RepositoryOptions options;
  options.root = root;
  options.mode = mode;
  // kPoll: no poll runs while a test looks (each test ends long before).
  options.poll_interval = std::chrono::hours(1);
  options.startup_models = std::move(startup_models);
  return options;
}

// The versions models() serves, as "<name>:<version>", in its order.
std::vector<std::string> Served(const ModelRepository& repo) {
  std::vector<std::string> out;
  for (const std::shared_ptr<ServedModel>& m : repo.models()) {
    out.push_back(absl::StrCat(m->name(), ":", m->version()));
  }
  return out;
}

// The version Find(model, version) gives, or "error: " and its status.
std::string Found(const ModelRepository& repo, const std::string& model,
                  const std::string& version) {
  absl::StatusOr<std::shared_ptr<ServedModel>> m = repo.Find(model, version);
  if (!m.ok()) return absl::StrCat("error: ", m.status().ToString());
  return (*m)->version();
}

// Every Index() entry as "<name>/<version> <state>".
std::vector<std::string> IndexLines(const ModelRepository& repo) {
  std::vector<std::string> out;
  for (const IndexEntry& e : repo.Index(/*ready_only=*/false)) {
    out.push_back(absl::StrCat(e.name, "/", e.version, " ", e.state));
  }
  return out;
}

// Runs an explicit-mode Load() or Unload() of `name` and returns its
// result (the lifecycle thread calls back; a bound only stops a broken
// repository hanging the suite).
absl::Status RunAndWait(ModelRepository& repo,
                        void (ModelRepository::*op)(const std::string&,
                                                    std::function<void(absl::Status)>),
                        const std::string& name) {
  auto done = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> result = done->get_future();
  (repo.*op)(name, [done](absl::Status s) { done->set_value(std::move(s)); });
  if (result.wait_for(std::chrono::minutes(2)) != std::future_status::ready) {
    return absl::DeadlineExceededError("the lifecycle thread never called back");
  }
  return result.get();
}
absl::Status LoadAndWait(ModelRepository& repo, const std::string& name) {
  return RunAndWait(repo, &ModelRepository::Load, name);
}
absl::Status UnloadAndWait(ModelRepository& repo, const std::string& name) {
  return RunAndWait(repo, &ModelRepository::Unload, name);
}

// ---------------------------------------------------------------------------
// Versions.

// With no version_policy (latest 1), of the version directories 1, 2 and 3
// only the highest, 3, is loaded; Find() with no version gives it and the
// others are NOT_FOUND, naming what is served.
TEST(ModelRepositoryLoadTest, DefaultPolicyServesOnlyTheHighestVersion) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1);
  CopyVersionOne(root.path(), "m", "2");
  CopyVersionOne(root.path(), "m", "3");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  EXPECT_THAT(Served(**repo), ElementsAre("m:3"));
  EXPECT_EQ(Found(**repo, "m", ""), "3");
  EXPECT_EQ(Found(**repo, "", ""), "3");
  for (const std::string v : {"1", "2"}) {
    absl::StatusOr<std::shared_ptr<ServedModel>> old = (*repo)->Find("m", v);
    EXPECT_EQ(old.status().code(), absl::StatusCode::kNotFound) << v;
    EXPECT_THAT(std::string(old.status().message()),
                HasSubstr(absl::StrCat("model 'm' has no version '", v,
                                       "' (serving version(s) 3)")));
  }
  EXPECT_THAT(IndexLines(**repo), ElementsAre("m/3 READY"));
  EXPECT_TRUE((*repo)->ready());
}

// version_policy latest { num_versions: 2 } over 1, 2 and 3 loads 2 and 3,
// each from its own directory; no version still means the highest.
TEST(ModelRepositoryLoadTest, LatestTwoServesTheHighestTwoVersions) {
  TempDir root;
  WriteTinyModel(root.path(), "m",
                 Config("m", "version_policy { latest { num_versions: 2 } }"), 1);
  CopyVersionOne(root.path(), "m", "2");
  CopyVersionOne(root.path(), "m", "3");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  EXPECT_THAT(Served(**repo), ElementsAre("m:2", "m:3"));
  EXPECT_EQ(Found(**repo, "m", ""), "3");
  EXPECT_EQ(Found(**repo, "m", "2"), "2");
  EXPECT_NE((*repo)->Find("m", "2")->get(), (*repo)->Find("m", "")->get())
      << "two versions served: two objects";
  absl::StatusOr<std::shared_ptr<ServedModel>> one = (*repo)->Find("m", "1");
  EXPECT_EQ(one.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(one.status().message()),
              HasSubstr("model 'm' has no version '1' (serving version(s) 2, 3)"));
  EXPECT_THAT(IndexLines(**repo), ElementsAre("m/2 READY", "m/3 READY"));
}

// ---------------------------------------------------------------------------
// Hidden directories.

// <root>/.staging/ holds a complete, valid model, but a directory whose name
// starts with '.' is no model: it is not loaded, not found, not indexed.
TEST(ModelRepositoryLoadTest, HiddenModelDirectoryIsNotAModel) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1);
  WriteTinyModel(root.path(), ".staging", Config(".staging"), 2);
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  EXPECT_THAT(Served(**repo), ElementsAre("m:1"));
  EXPECT_THAT(IndexLines(**repo), ElementsAre("m/1 READY"));
  absl::StatusOr<std::shared_ptr<ServedModel>> hidden = (*repo)->Find(".staging", "");
  EXPECT_EQ(hidden.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(hidden.status().message()),
              HasSubstr("unknown model '.staging' (serving: m)"));
}

// A repository holding only a hidden model directory holds no model (kNone
// refuses to start with that, as with an empty one).
TEST(ModelRepositoryLoadTest, RepositoryWithOnlyAHiddenModelHoldsNoModel) {
  TempDir root;
  WriteTinyModel(root.path(), ".staging", Config(".staging"), 2);
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr(absl::StrCat("model repository ", root.path(),
                                     " holds no model")));
}

// <model>/.3/ is not version 3: with 1, 2 and .3 on disk the default policy
// serves 2, and version 3 is NOT_FOUND.
TEST(ModelRepositoryLoadTest, HiddenVersionDirectoryIsNotAVersion) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1);
  CopyVersionOne(root.path(), "m", "2");
  CopyVersionOne(root.path(), "m", ".3");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  EXPECT_THAT(Served(**repo), ElementsAre("m:2"));
  EXPECT_EQ(Found(**repo, "m", ""), "2");
  absl::StatusOr<std::shared_ptr<ServedModel>> three = (*repo)->Find("m", "3");
  EXPECT_EQ(three.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(three.status().message()),
              HasSubstr("model 'm' has no version '3' (serving version(s) 2)"));
}

// Under version_policy all, the hidden .3 is still not served: 1 and 2 are.
TEST(ModelRepositoryLoadTest, AllPolicySkipsTheHiddenVersionDirectory) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m", "version_policy { all {} }"), 1);
  CopyVersionOne(root.path(), "m", "2");
  CopyVersionOne(root.path(), "m", ".3");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  EXPECT_THAT(Served(**repo), ElementsAre("m:1", "m:2"));
  EXPECT_THAT(IndexLines(**repo), ElementsAre("m/1 READY", "m/2 READY"));
}

// A TorchScript model whose only version directory is hidden (.1, still
// being copied in) has no version: NOT_FOUND naming the model directory.
TEST(ModelRepositoryLoadTest, ModelWithOnlyAHiddenVersionIsRefused) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1);
  fs::rename(fs::path(root.path()) / "m" / "1", fs::path(root.path()) / "m" / ".1");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr(absl::StrCat((fs::path(root.path()) / "m").string(),
                                     ": no version directory")));
}

// ---------------------------------------------------------------------------
// Empty and missing repositories.

// An empty repository directory: kNone (everything loaded at start, never
// changes) refuses to start, NOT_FOUND naming the directory and the layout
// it expects.
TEST(ModelRepositoryLoadTest, EmptyRepositoryIsNotFoundWhenNothingCanBeAddedLater) {
  TempDir root;
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr(absl::StrCat(
                  "model repository ", root.path(),
                  " holds no model (expected <repository>/<model>/config.pbtxt)")));
}

// An empty repository directory in kPoll or kExplicit (models may come
// later): it starts, serving no model; Find() is NOT_FOUND saying so.
TEST(ModelRepositoryLoadTest, EmptyRepositoryStartsWithNoModelWhenModelsCanComeLater) {
  for (const ModelControlMode mode :
       {ModelControlMode::kPoll, ModelControlMode::kExplicit}) {
    SCOPED_TRACE(mode == ModelControlMode::kPoll ? "poll" : "explicit");
    TempDir root;
    Metrics metrics;
    absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
        ModelRepository::Open(Options(root.path(), mode), &metrics);
    ASSERT_TRUE(repo.ok()) << repo.status();
    EXPECT_THAT((*repo)->models(), IsEmpty());
    EXPECT_THAT((*repo)->Index(/*ready_only=*/false), IsEmpty());
    absl::StatusOr<std::shared_ptr<ServedModel>> any = (*repo)->Find("", "");
    EXPECT_EQ(any.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(any.status().message()), HasSubstr("(serving: no model)"));
  }
}

// A repository path that does not exist is NOT_FOUND naming the path, in
// every mode.
TEST(ModelRepositoryLoadTest, MissingRepositoryPathIsNotFoundNamingIt) {
  TempDir parent;
  const std::string missing = (fs::path(parent.path()) / "no-such-repo").string();
  for (const ModelControlMode mode : {ModelControlMode::kNone, ModelControlMode::kPoll,
                                      ModelControlMode::kExplicit}) {
    Metrics metrics;
    absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
        ModelRepository::Open(Options(missing, mode), &metrics);
    EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(repo.status().message()),
                HasSubstr(absl::StrCat("model repository ", missing,
                                       " is not a directory")));
  }
}

// A regular file given as the repository is no repository either.
TEST(ModelRepositoryLoadTest, RepositoryPathThatIsAFileIsNotFoundNamingIt) {
  TempDir parent;
  const std::string file = (fs::path(parent.path()) / "models.tar").string();
  std::ofstream(file) << "not a directory";
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(file, ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr(absl::StrCat("model repository ", file, " is not a directory")));
}

// ---------------------------------------------------------------------------
// labels.txt.

// labels.txt with 3 lines for a model with 5 output classes is refused at
// load: INVALID_ARGUMENT naming the version, labels.txt and both counts.
TEST(ModelRepositoryLoadTest, LabelsCountDifferentFromClassesIsRefusedAtStart) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1, {"a", "b", "c"});
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr("version 1: model 'm': labels.txt has 3 labels but the "
                        "output has 5 classes"));
  EXPECT_EQ(metrics.load_failures("m").Value(), 1);
}

// labels.txt with one line per class loads, and the version carries them.
TEST(ModelRepositoryLoadTest, LabelsCountEqualToClassesLoads) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1, {"a", "b", "c", "d", "e"});
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();
  absl::StatusOr<std::shared_ptr<ServedModel>> m = (*repo)->Find("m", "");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT((*m)->labels(), ElementsAre("a", "b", "c", "d", "e"));
}

// A served model whose labels.txt is rewritten with too many lines and then
// loaded again: the load is refused the same way, and the version that was
// serving still serves with its old labels.
TEST(ModelRepositoryLoadTest, LabelsCountMismatchOnReloadKeepsTheServingVersion) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1, {"a", "b", "c", "d", "e"});
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo = ModelRepository::Open(
      Options(root.path(), ModelControlMode::kExplicit, {"m"}), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();
  absl::StatusOr<std::shared_ptr<ServedModel>> before = (*repo)->Find("m", "");
  ASSERT_TRUE(before.ok()) << before.status();

  std::ofstream(fs::path(root.path()) / "m" / "labels.txt") << "a\nb\nc\nd\ne\nf\ng\n";
  const absl::Status reload = LoadAndWait(**repo, "m");
  EXPECT_EQ(reload.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reload.message()),
              HasSubstr("labels.txt has 7 labels but the output has 5 classes"));

  absl::StatusOr<std::shared_ptr<ServedModel>> after = (*repo)->Find("m", "");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->get(), before->get());
  EXPECT_THAT((*after)->labels(), ElementsAre("a", "b", "c", "d", "e"));
  EXPECT_EQ(metrics.load_failures("m").Value(), 1);
}

// ---------------------------------------------------------------------------
// A TorchScript model without a version directory.

// kNone loads everything at start, so a TorchScript model with config.pbtxt
// but no version directory refuses the whole start: NOT_FOUND naming the
// model's directory (and the layout it expects).
TEST(ModelRepositoryLoadTest, TorchScriptModelWithoutVersionDirectoryRefusesTheStart) {
  TempDir root;
  WriteTinyModel(root.path(), "good", Config("good"), 1);
  const fs::path broken = fs::path(root.path()) / "broken";
  fs::create_directories(broken);
  std::ofstream(broken / "config.pbtxt") << Config("broken");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Open(Options(root.path(), ModelControlMode::kNone), &metrics);
  EXPECT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(repo.status().message()),
              HasSubstr(absl::StrCat(broken.string(),
                                     ": no version directory (expected "
                                     "<model>/<version>/model.pt")));
  EXPECT_EQ(metrics.load_failures("broken").Value(), 1);
}

// In kExplicit, loading that model fails the same way (NOT_FOUND naming its
// directory), is shown UNAVAILABLE with that reason and counted, while the
// model already served keeps serving and another model still loads.
TEST(ModelRepositoryLoadTest, TorchScriptModelWithoutVersionDirectoryFailsAloneInExplicit) {
  TempDir root;
  WriteTinyModel(root.path(), "good", Config("good"), 1);
  WriteTinyModel(root.path(), "later", Config("later"), 2);
  const fs::path broken = fs::path(root.path()) / "broken";
  fs::create_directories(broken);
  std::ofstream(broken / "config.pbtxt") << Config("broken");
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo = ModelRepository::Open(
      Options(root.path(), ModelControlMode::kExplicit, {"good"}), &metrics);
  ASSERT_TRUE(repo.ok()) << repo.status();

  const absl::Status failed = LoadAndWait(**repo, "broken");
  EXPECT_EQ(failed.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(failed.message()),
              HasSubstr(absl::StrCat(broken.string(), ": no version directory")));
  EXPECT_EQ(metrics.load_failures("broken").Value(), 1);
  absl::StatusOr<std::shared_ptr<ServedModel>> missing = (*repo)->Find("broken", "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<bool> broken_ready = (*repo)->ModelReady("broken", "");
  ASSERT_TRUE(broken_ready.ok()) << broken_ready.status();
  EXPECT_FALSE(*broken_ready);
  bool indexed = false;
  for (const IndexEntry& e : (*repo)->Index(/*ready_only=*/false)) {
    if (e.name != "broken") continue;
    indexed = true;
    EXPECT_EQ(e.state, "UNAVAILABLE");
    EXPECT_THAT(e.reason, HasSubstr(absl::StrCat(broken.string(),
                                                 ": no version directory")));
  }
  EXPECT_TRUE(indexed);

  EXPECT_EQ(Found(**repo, "good", ""), "1");
  EXPECT_TRUE(LoadAndWait(**repo, "later").ok());
  EXPECT_THAT(Served(**repo), ElementsAre("good:1", "later:1"));
  EXPECT_TRUE((*repo)->ready());
}

// ---------------------------------------------------------------------------
// Readers against the lifecycle thread.

// Four threads read the repository the way requests and health checks do
// (Find, models, ModelReady, ready, Index, and a found model's own state)
// while the lifecycle thread loads new versions of "m" and unloads and
// loads it again, ten rounds. Every answer a reader gets is whole: a found
// model is "m" at a version that was on disk, alive for as long as the
// reader holds it (AddressSanitizer in CI would see a model freed under
// it), and NOT_FOUND only while "m" is unloaded. Readers never wait for a
// load: they keep reading throughout.
TEST(ModelRepositoryRaceTest, ReadersSeeWholeAnswersWhileVersionsComeAndGo) {
  TempDir root;
  WriteTinyModel(root.path(), "m", Config("m"), 1);
  WriteTinyModel(root.path(), "other", Config("other"), 2);
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<ModelRepository>> opened = ModelRepository::Open(
      Options(root.path(), ModelControlMode::kExplicit, {"m", "other"}), &metrics);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ModelRepository& repo = **opened;

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, found{0}, not_found{0}, bad{0};
  std::mutex bad_mu;
  std::string first_bad;
  auto record_bad = [&](const std::string& what) {
    if (bad.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> l(bad_mu);
      first_bad = what;
    }
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        absl::StatusOr<std::shared_ptr<ServedModel>> m = repo.Find("m", "");
        if (m.ok()) {
          found.fetch_add(1);
          const int version = std::stoi((*m)->version());
          if ((*m)->name() != "m" || version < 1 || version > 11) {
            record_bad(absl::StrCat("found ", (*m)->name(), ":", (*m)->version()));
          }
        } else if (m.status().code() == absl::StatusCode::kNotFound) {
          not_found.fetch_add(1);
        } else {
          record_bad(m.status().ToString());
        }
        for (const std::shared_ptr<ServedModel>& s : repo.models()) {
          if (s->name() != "m" && s->name() != "other") record_bad("models(): " + s->name());
        }
        absl::StatusOr<bool> m_ready = repo.ModelReady("m", "");
        if (!m_ready.ok()) record_bad("ModelReady(m): " + m_ready.status().ToString());
        absl::StatusOr<bool> other = repo.ModelReady("other", "");
        if (!other.ok() || !*other) record_bad("\"other\" was not ready");
        repo.ready();
        for (const IndexEntry& e : repo.Index(/*ready_only=*/false)) {
          if (e.name != "m" && e.name != "other") record_bad("Index(): " + e.name);
        }
        reads.fetch_add(1);
      }
    });
  }
  // The readers are stopped and joined however this ends.
  auto lifecycle = [&] {
    const fs::path dir = fs::path(root.path()) / "m";
    for (int version = 2; version <= 11; ++version) {
      fs::rename(dir / absl::StrCat(version - 1), dir / absl::StrCat(version));
      ASSERT_TRUE(LoadAndWait(repo, "m").ok());
      EXPECT_EQ(Found(repo, "m", ""), absl::StrCat(version));
      if (version % 3 == 0) {
        ASSERT_TRUE(UnloadAndWait(repo, "m").ok());
        EXPECT_EQ(Found(repo, "m", "").rfind("error: NOT_FOUND", 0), 0u)
            << Found(repo, "m", "");
        ASSERT_TRUE(LoadAndWait(repo, "m").ok());
      }
    }
  };
  lifecycle();
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0) << first_bad;
  EXPECT_GT(reads.load(), 0);
  EXPECT_GT(found.load(), 0);
  EXPECT_THAT(Served(repo), ElementsAre("m:11", "other:1"));
  EXPECT_TRUE(repo.ready());
  ::testing::Test::RecordProperty("reads", reads.load());
  ::testing::Test::RecordProperty("not_found", not_found.load());
}

}  // namespace
}  // namespace clipserve::server
