// clipserve-i3d-bench: times the native I3D forward (runtime/i3d.h) on CPU
// or CUDA for one clip size and several batch sizes, with the batch-1 fix
// (convolutions straight to oneDNN) and/or without it (at::conv3d, ATen's
// own choice). Prints one JSON object per line.
//
// --explain adds, per convolution of one forward, which algorithm ATen
// 1.13 would pick for it (at::native::select_conv_backend) and the time of
// that convolution through at::conv3d and through at::mkldnn_convolution.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/native/ConvUtils.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/i3d.h"

namespace {

using clipserve::runtime::I3dConvPath;
using clipserve::runtime::I3dOptions;
using clipserve::runtime::InceptionI3d;

constexpr const char* kUsage = R"(Usage: clipserve-i3d-bench [flags]

Times the native I3D forward (random weights) and prints JSON lines.

Flags:
  --frames T          (default 16)
  --height H          (default 224)
  --width W           (default 224)
  --batch-sizes LIST  comma-separated (default 1,2,4)
  --threads N         intra-op threads (default: LibTorch's default)
  --conv-path P       direct (the fix: oneDNN for every CPU conv), aten
                      (at::conv3d, ATen's choice: before the fix) or both
                      (default both, aten first)
  --runs N            timed forwards per point (default 3; median reported)
  --warmup N          untimed forwards per point (default 1)
  --classes N         (default 400)
  --device D          cpu or cuda:N (default cpu)
  --explain           per-convolution ATen choice and timings, at the first
                      of --batch-sizes
  --malloc-no-mmap    mallopt(M_MMAP_MAX, 0) and a huge M_TRIM_THRESHOLD
                      first: large tensors then come from (and go back to)
                      the heap instead of fresh mmap'd pages, so a forward
                      no longer page-faults through all its activations
                      (same as GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
                      glibc.malloc.trim_threshold=...)
)";

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "%s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

struct Flags {
  int64_t frames = 16, height = 224, width = 224;
  std::vector<int64_t> batch_sizes = {1, 2, 4};
  int threads = 0;
  std::vector<std::string> paths = {"aten", "direct"};
  int runs = 3, warmup = 1;
  int64_t classes = 400;
  std::string device = "cpu";
  bool explain = false;
  bool malloc_no_mmap = false;
};

int64_t ParseInt(absl::string_view flag, absl::string_view value, int64_t min) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < min) {
    Fail(absl::StrCat("invalid value \"", value, "\" for ", flag));
  }
  return v;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--explain") {
      f.explain = true;
      continue;
    }
    if (arg == "--malloc-no-mmap") {
      f.malloc_no_mmap = true;
      continue;
    }
    std::string name = arg, value;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc) Fail("missing value for " + arg);
      value = argv[++i];
    }
    if (name == "--frames") {
      f.frames = ParseInt(name, value, 1);
    } else if (name == "--height") {
      f.height = ParseInt(name, value, 1);
    } else if (name == "--width") {
      f.width = ParseInt(name, value, 1);
    } else if (name == "--batch-sizes") {
      f.batch_sizes.clear();
      for (absl::string_view b : absl::StrSplit(value, ',')) {
        f.batch_sizes.push_back(ParseInt(name, b, 1));
      }
    } else if (name == "--threads") {
      f.threads = static_cast<int>(ParseInt(name, value, 1));
    } else if (name == "--conv-path") {
      if (value == "both") {
        f.paths = {"aten", "direct"};
      } else if (value == "aten" || value == "direct") {
        f.paths = {value};
      } else {
        Fail("--conv-path must be direct, aten or both");
      }
    } else if (name == "--runs") {
      f.runs = static_cast<int>(ParseInt(name, value, 1));
    } else if (name == "--warmup") {
      f.warmup = static_cast<int>(ParseInt(name, value, 0));
    } else if (name == "--classes") {
      f.classes = ParseInt(name, value, 1);
    } else if (name == "--device") {
      f.device = value;
    } else {
      Fail("unknown flag " + name);
    }
  }
  return f;
}

int64_t MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void Sync(const at::Device& device) {
  if (device.is_cuda()) at::zeros({1}, at::TensorOptions().device(device)).cpu();
}

// Seconds of `runs` calls of fn after `warmup` calls, sorted.
template <typename Fn>
std::vector<double> TimeAll(Fn fn, int warmup, int runs,
                            const at::Device& device) {
  for (int i = 0; i < warmup; ++i) fn();
  Sync(device);
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    Sync(device);
    t.push_back(Seconds(start));
  }
  return t;
}

// Median and min seconds of `runs` calls of fn after `warmup` calls.
template <typename Fn>
std::pair<double, double> Time(Fn fn, int warmup, int runs,
                               const at::Device& device) {
  std::vector<double> t = TimeAll(fn, warmup, runs, device);
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

const char* BackendName(at::native::ConvBackend b) {
  using B = at::native::ConvBackend;
  switch (b) {
    case B::Mkldnn:
      return "Mkldnn";
    case B::Slow3d:
      return "Slow3d";
    case B::SlowDilated3d:
      return "SlowDilated3d";
    case B::Cudnn:
      return "Cudnn";
    case B::Empty:
      return "Empty";
    default:
      return "other";
  }
}

std::string Dims(at::IntArrayRef s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

void Explain(InceptionI3d& model, const Flags& f, const at::Device& device) {
  struct Conv {
    std::string name;
    at::Tensor input, weight;
    std::array<int64_t, 3> stride, padding;
  };
  std::vector<Conv> convs;
  model->set_conv_observer([&](const std::string& name, const at::Tensor& in,
                               const at::Tensor& w, std::array<int64_t, 3> s,
                               std::array<int64_t, 3> p) {
    convs.push_back({name, in.clone(), w, s, p});
  });
  const at::Tensor x =
      at::rand({f.batch_sizes.front(), 3, f.frames, f.height, f.width})
          .to(device)
          .mul(2)
          .sub(1);
  {
    c10::InferenceMode guard;
    model->forward(x);
  }
  model->set_conv_observer(nullptr);
  std::map<std::string, std::pair<int, std::pair<double, double>>> totals;
  for (const Conv& c : convs) {
    c10::InferenceMode guard;
    const std::array<int64_t, 3> dilation = {1, 1, 1}, output_padding = {0, 0, 0};
#if TORCH_VERSION_MAJOR >= 2  // symbolic sizes; 1.13 took plain ones
    const at::native::ConvBackend backend = at::native::select_conv_backend(
        c.input, c.weight, c10::nullopt, c10::fromIntArrayRefSlow(c.stride),
        c10::fromIntArrayRefSlow(c.padding), c10::fromIntArrayRefSlow(dilation),
        /*transposed=*/false, c10::fromIntArrayRefSlow(output_padding),
        /*groups=*/1, /*bias_sizes_opt=*/c10::nullopt);
#else
    const at::native::ConvBackend backend = at::native::select_conv_backend(
        c.input, c.weight, c10::nullopt, c.stride, c.padding, dilation,
        /*transposed=*/false, output_padding, /*groups=*/1);
#endif
    const double aten =
        Time([&] { at::conv3d(c.input, c.weight, {}, c.stride, c.padding); },
             1, 3, device)
            .first;
    double direct = aten;
    if (device.is_cpu()) {
      direct = Time(
                   [&] {
                     at::mkldnn_convolution(c.input, c.weight, c10::nullopt,
                                            c.padding, c.stride, {1, 1, 1}, 1);
                   },
                   1, 3, device)
                   .first;
    }
    auto& t = totals[BackendName(backend)];
    t.first += 1;
    t.second.first += aten;
    t.second.second += direct;
    std::printf(
        "{\"explain\": \"conv\", \"threads\": %d, \"layer\": \"%s\", "
        "\"input\": \"%s\", "
        "\"kernel\": \"%s\", \"stride\": %lld, \"aten_backend\": \"%s\", "
        "\"aten_ms\": %.3f, \"direct_ms\": %.3f}\n",
        at::get_num_threads(), c.name.c_str(), Dims(c.input.sizes()).c_str(),
        Dims(c.weight.sizes().slice(2)).c_str(),
        static_cast<long long>(c.stride[0]), BackendName(backend), aten * 1e3,
        direct * 1e3);
  }
  for (const auto& [name, t] : totals) {
    std::printf(
        "{\"explain\": \"total\", \"batch_size\": %lld, \"threads\": %d, "
        "\"aten_backend\": \"%s\", \"convs\": %d, \"aten_ms\": %.1f, "
        "\"direct_ms\": %.1f}\n",
        static_cast<long long>(f.batch_sizes.front()), at::get_num_threads(),
        name.c_str(), t.first, t.second.first * 1e3, t.second.second * 1e3);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  if (f.malloc_no_mmap) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  }
  if (f.threads > 0) at::set_num_threads(f.threads);
  at::Device device(at::kCPU);
  try {
    device = at::Device(f.device);
  } catch (const std::exception& e) {
    Fail(absl::StrCat("invalid --device: ", e.what()));
  }

  InceptionI3d model(I3dOptions{f.classes, 3});
  clipserve::runtime::InitI3dRandom(model, 0);
  model->to(device);
  model->eval();

  if (f.explain) Explain(model, f, device);

  for (const std::string& path : f.paths) {
    model->set_conv_path(path == "direct" ? I3dConvPath::kDirectMkldnn
                                          : I3dConvPath::kAten);
    for (int64_t batch : f.batch_sizes) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(batch);
      const at::Tensor x =
          at::rand({batch, 3, f.frames, f.height, f.width}, gen)
              .mul_(2)
              .sub_(1)
              .to(device);
      int64_t faults = 0;
      const std::vector<double> times = TimeAll(
          [&] {
            c10::InferenceMode guard;
            const int64_t before = MinorFaults();
            model->forward(x);
            faults = MinorFaults() - before;  // of the last run
          },
          f.warmup, f.runs, device);
      std::vector<double> sorted = times;
      std::sort(sorted.begin(), sorted.end());
      const double median = sorted[sorted.size() / 2];
      std::vector<std::string> each;
      for (double t : times) each.push_back(absl::StrFormat("%.1f", t * 1e3));
      std::printf(
          "{\"bench\": \"i3d_forward\", \"device\": \"%s\", \"frames\": %lld, "
          "\"height\": %lld, \"width\": %lld, \"batch_size\": %lld, "
          "\"threads\": %d, \"conv_path\": \"%s\", \"runs\": %d, "
          "\"ms_per_batch\": %.1f, \"ms_per_batch_min\": %.1f, "
          "\"clips_per_second\": %.3f, \"ms_each\": [%s], "
          "\"page_faults_per_batch\": %lld, \"malloc_no_mmap\": %s}\n",
          device.str().c_str(), static_cast<long long>(f.frames),
          static_cast<long long>(f.height), static_cast<long long>(f.width),
          static_cast<long long>(batch), at::get_num_threads(), path.c_str(),
          f.runs, median * 1e3, sorted.front() * 1e3, batch / median,
          absl::StrJoin(each, ", ").c_str(), static_cast<long long>(faults),
          f.malloc_no_mmap ? "true" : "false");
      std::fflush(stdout);
    }
  }
  return 0;
}
