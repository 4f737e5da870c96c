// Model repositories for integration tests, written to a temporary
// directory: TinyVideoNet models and small TorchScript models with special
// behaviour (slow, failing).
#ifndef CLIPSERVE_TESTS_INTEGRATION_TEST_MODELS_H_
#define CLIPSERVE_TESTS_INTEGRATION_TEST_MODELS_H_

#include <string>
#include <vector>

namespace clipserve::testing {

// A fresh empty directory under $TMPDIR (or /tmp), removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The config.pbtxt text for a TorchScript model taking [3, t, h, w] and
// giving `classes` logits, with `extra` appended (dynamic_batching etc.).
std::string ModelConfigText(const std::string& name, int max_batch_size,
                            int t, int h, int w, int classes,
                            const std::string& extra);

// Writes <repo>/<name>/config.pbtxt and <repo>/<name>/1/model.pt holding a
// TinyVideoNet with `seed`, and labels.txt when `labels` is not empty.
void WriteTinyModel(const std::string& repo, const std::string& name,
                    const std::string& config, uint64_t seed,
                    const std::vector<std::string>& labels = {});

// A model whose forward is TorchScript `source` (a full "def forward(self,
// x):" definition) over a parameter `w` of shape [3, classes] (seeded).
void WriteScriptModel(const std::string& repo, const std::string& name,
                      const std::string& config, const std::string& source,
                      int classes);

// A linear-head model (forward: LinearForward()) that
// also holds a buffer of `ballast_floats` floats, so that every loaded copy
// of it costs that much memory: leaks of it show in the server's RSS.
// Written to <repo>/<name>/<version>/model.pt, with config.pbtxt.
void WriteBallastModel(const std::string& repo, const std::string& name,
                       const std::string& config, int classes,
                       int64_t ballast_floats, int version);

// forward: a linear head over each clip's channel means, at once.
std::string LinearForward();

// forward: `iterations` rounds of tanh over a fixed 4M-element tensor (a
// few ms each here, whatever the batch), then a linear head.
std::string SlowForward(int iterations);

// forward: raises "boom: saturated pixels" when any input value is above
// 0.99 (a uint8 255), else a linear head.
std::string FailingForward();

// forward: when any input value is above 0.99 (a uint8 255), first
// `iterations` rounds of tanh over a 1M-element tensor (about a millisecond
// each here: a batch that "hangs" for seconds), else a linear head at once.
std::string HangingForward(int iterations);

// The logits of the TorchScript model at `model_path` run directly with
// LibTorch (no server) on one clip of uint8 RGB frames [t, h, w, 3] in
// `frames`, normalised as the server does (x / 127.5 - 1). Kept here so
// that the tests compiling generated protobuf code never include LibTorch
// (whose headers carry their own, different protobuf).
std::vector<float> DirectModelLogits(const std::string& model_path,
                                     const std::string& frames, int t, int h,
                                     int w);

}  // namespace clipserve::testing

#endif  // CLIPSERVE_TESTS_INTEGRATION_TEST_MODELS_H_
