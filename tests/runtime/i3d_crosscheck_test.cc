// Cross-check of the native C++ I3D (runtime/i3d.h) against an independent
// Python implementation written from the same spec
// (tests/python/i3d_reference.py: functional PyTorch over a weight dict,
// sharing no code with runtime/).
//
// Each case builds the C++ model with deterministic random weights (BN
// running statistics included), writes them with WriteSafetensors and a
// random clip as .npy, runs the C++ forward (eval, no grad), runs the Python
// reference on the same files and compares the logits:
//
//   max |cpp - python| <= 1e-4 * max |python|
//
// i.e. every logit agrees to 1e-4 of the logit scale. Small cases also run
// the reference in float64 and hold the C++ float32 logits to the same bound
// against it, so the agreement is not just two float32 programs sharing
// ATen's rounding. A layout, padding, pooling, BN or head mistake shows up
// as differences of order 1e-1 or more of the scale.
//
// A second test runs tools/convert_checkpoint.py on checkpoints shaped like
// the PyTorch port's and loads the results with runtime/checkpoint.h.
//
// Needs CLIPSERVE_PYTHON (default /usr/bin/python3) with torch and numpy
// (Debian: python3-torch python3-numpy, which scripts/install-deps.sh
// installs); without them the test fails rather than skips.

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "runtime/checkpoint.h"
#include "runtime/i3d.h"
#include "runtime/safetensors.h"

#ifndef CLIPSERVE_SOURCE_DIR
#error "CLIPSERVE_SOURCE_DIR must be defined (tests/runtime/crosscheck.cmake)"
#endif
#ifndef CLIPSERVE_PYTHON
#define CLIPSERVE_PYTHON "/usr/bin/python3"
#endif

namespace clipserve::runtime {
namespace {

namespace fs = std::filesystem;

constexpr double kRelTolerance = 1e-4;

// --- Minimal .npy I/O (version 1.0 write; 1.0-3.0 read), float32/64 only.

void WriteNpyFloat32(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.to(at::kFloat).contiguous();
  // NumPy's tuple syntax: "(2, 3)", "(5,)", "()".
  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) {
    shape += (i > 0 ? ", " : "") + std::to_string(c.size(i));
  }
  shape += c.dim() == 1 ? ",)" : ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " +
                       shape + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n', a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff),
                             static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(c.data_ptr()),
            static_cast<std::streamsize>(c.numel() * sizeof(float)));
  ASSERT_TRUE(out.good()) << "could not write " << path;
}

// Reads a little-endian float32 or float64 C-order .npy file as float64.
// Sets *error and returns an undefined tensor on anything unexpected.
at::Tensor ReadNpyAsDouble(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    *error = path + ": not a .npy file";
    return {};
  }
  const auto u8 = [&](size_t i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i]));
  };
  size_t header_len = 0, start = 0;
  if (u8(6) == 1) {
    header_len = u8(8) | (u8(9) << 8);
    start = 10;
  } else if (bytes.size() >= 12) {
    header_len = u8(8) | (u8(9) << 8) | (u8(10) << 16) | (u8(11) << 24);
    start = 12;
  }
  if (start == 0 || start + header_len > bytes.size()) {
    *error = path + ": bad .npy header";
    return {};
  }
  const std::string header = bytes.substr(start, header_len);
  if (header.find("'fortran_order': False") == std::string::npos) {
    *error = path + ": Fortran order: " + header;
    return {};
  }
  at::ScalarType dtype;
  size_t itemsize;
  if (header.find("'descr': '<f4'") != std::string::npos) {
    dtype = at::kFloat;
    itemsize = 4;
  } else if (header.find("'descr': '<f8'") != std::string::npos) {
    dtype = at::kDouble;
    itemsize = 8;
  } else {
    *error = path + ": want <f4 or <f8: " + header;
    return {};
  }
  const size_t open = header.find("'shape': (");
  const size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) {
    *error = path + ": no shape: " + header;
    return {};
  }
  std::vector<int64_t> shape;
  std::stringstream dims(header.substr(open + 10, close - open - 10));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    shape.push_back(std::stoll(dim));
  }
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t data = start + header_len;
  if (bytes.size() - data != static_cast<size_t>(numel) * itemsize) {
    *error = path + ": data size does not match the shape";
    return {};
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  std::memcpy(t.data_ptr(), bytes.data() + data, bytes.size() - data);
  return t.to(at::kDouble);
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// Runs tests/python/<script> or tools/<script> (`script` relative to the
// source tree) with `args` (already quoted) under CLIPSERVE_PYTHON, output
// to `log`. Adds a failure with the command and its output if it fails.
bool RunPython(const std::string& script, const std::string& args,
               const fs::path& log) {
  const std::string cmd =
      std::string(CLIPSERVE_PYTHON) + " " +
      Quote(std::string(CLIPSERVE_SOURCE_DIR) + "/" + script) + " " + args +
      " > " + Quote(log.string()) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << "failed: " << cmd << "\n" << ReadFile(log.string());
  return rc == 0;
}

fs::path FreshTempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("i3d_crosscheck_" + std::to_string(::getpid()) + "_" +
                        name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// --- The cases.

struct Case {
  const char* name;
  int64_t in_channels;
  int64_t num_classes;
  int64_t batch, frames, height, width;
  uint64_t seed;
  // Also compare with the reference computed in float64.
  bool check_float64;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const Case kCases[] = {
    // The smallest common serving shape, RGB, Kinetics-400 head: the
    // published (2, 7, 7) average pool fits exactly (T' = 1 after it).
    {"Rgb400_B1_16x224x224", 3, 400, 1, 16, 224, 224, 11, false},
    // Batch 2, small clip: head kernel clipped to (2, 2, 2).
    {"Rgb400_B2_10x64x64", 3, 400, 2, 10, 64, 64, 12, true},
    // Optical flow, 10 classes, odd sizes: stride-2 layers take the SAME
    // rule's size % stride != 0 branch (the RGB cases' even sizes take the
    // other, with its asymmetric front/back); T' = 1, so the head's time
    // kernel is clipped to 1.
    {"Flow10_B3_5x57x75", 2, 10, 3, 5, 57, 75, 13, true},
};

struct Diff {
  double max_abs = 0;
  double scale = 0;  // max |reference|
};

Diff Compare(const at::Tensor& got, const at::Tensor& want) {
  Diff d;
  d.max_abs = (got.to(at::kDouble) - want).abs().max().item<double>();
  d.scale = want.abs().max().item<double>();
  return d;
}

class I3dCrossCheckTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { dir_ = FreshTempDir(GetParam().name); }
  void TearDown() override {
    if (HasFailure()) {
      std::cout << "files kept for debugging in " << dir_ << "\n";
    } else {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
    }
  }

  // Runs the reference; returns its logits (float64) or fails the test.
  at::Tensor RunReference(const std::string& weights, const std::string& input,
                          bool float64) {
    const std::string output =
        (dir_ / (float64 ? "logits_py64.npy" : "logits_py32.npy")).string();
    std::string args = "--weights " + Quote(weights) + " --input " +
                       Quote(input) + " --output " + Quote(output) +
                       " --threads " + std::to_string(at::get_num_threads());
    if (float64) args += " --float64 --output-float64";
    if (!RunPython("tests/python/i3d_reference.py", args,
                   dir_ / "reference.log")) {
      return {};
    }
    std::string error;
    at::Tensor out = ReadNpyAsDouble(output, &error);
    EXPECT_TRUE(out.defined()) << error;
    return out;
  }

  fs::path dir_;
};

TEST_P(I3dCrossCheckTest, LogitsMatchIndependentPythonReference) {
  const Case& c = GetParam();
  torch::NoGradGuard no_grad;

  I3dOptions options;
  options.num_classes = c.num_classes;
  options.in_channels = c.in_channels;
  InceptionI3d model(options);
  InitI3dRandom(model, c.seed);
  model->eval();

  const std::string weights = (dir_ / "model.safetensors").string();
  const absl::Status written = WriteSafetensors(weights, I3dStateDict(model));
  ASSERT_TRUE(written.ok()) << written;

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 1000);
  const at::Tensor x =
      at::rand({c.batch, c.in_channels, c.frames, c.height, c.width}, gen,
               at::TensorOptions().dtype(at::kFloat)) *
          2 -
      1;
  const std::string input = (dir_ / "clip.npy").string();
  WriteNpyFloat32(input, x);
  if (HasFatalFailure()) return;

  // The C++ model, with each of its convolution paths.
  std::map<std::string, at::Tensor> cpp;
  for (const auto& [name, path] :
       {std::pair<const char*, I3dConvPath>{"mkldnn",
                                            I3dConvPath::kDirectMkldnn},
        std::pair<const char*, I3dConvPath>{"aten", I3dConvPath::kAten}}) {
    model->set_conv_path(path);
    at::Tensor y = model->forward(x);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{c.batch, c.num_classes}))
        << name;
    ASSERT_TRUE(at::isfinite(y).all().item<bool>()) << name;
    cpp[name] = y;
  }

  std::vector<std::pair<std::string, at::Tensor>> references;
  references.emplace_back("python-f32", RunReference(weights, input, false));
  if (c.check_float64) {
    references.emplace_back("python-f64", RunReference(weights, input, true));
  }

  for (const auto& [ref_name, ref] : references) {
    ASSERT_TRUE(ref.defined()) << ref_name;
    ASSERT_EQ(ref.sizes(), (std::vector<int64_t>{c.batch, c.num_classes}))
        << ref_name;
    // A meaningful comparison needs logits that are neither tiny nor flat.
    const double scale = ref.abs().max().item<double>();
    ASSERT_GT(scale, 1e-2) << ref_name;
    ASSERT_GT(ref.std().item<double>(), 1e-2 * scale) << ref_name;
    for (const auto& [cpp_name, y] : cpp) {
      const Diff d = Compare(y, ref);
      const double rel = d.max_abs / d.scale;
      std::cout << c.name << ": cpp[" << cpp_name << "] vs " << ref_name
                << ": max|diff| " << d.max_abs << ", max|logit| " << d.scale
                << ", ratio " << rel << "\n";
      RecordProperty(cpp_name + "_vs_" + ref_name + "_rel",
                     std::to_string(rel));
      EXPECT_LE(d.max_abs, kRelTolerance * d.scale)
          << "cpp[" << cpp_name << "] vs " << ref_name << ": max|diff| "
          << d.max_abs << " over max|logit| " << d.scale;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, I3dCrossCheckTest, ::testing::ValuesIn(kCases),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::string(info.param.name);
    });

// tools/convert_checkpoint.py end to end: checkpoints shaped like the
// PyTorch port's (OrderedDict, "module." prefixes, num_batches_tracked; the
// old pickle format and the zip one) convert to files the C++ loader
// (runtime/checkpoint.h) reads back into exactly the original weights.
TEST(I3dConverterEndToEnd, PortCheckpointsLoadIntoTheCppModel) {
  const fs::path dir = FreshTempDir("converter");
  torch::NoGradGuard no_grad;
  InceptionI3d source{I3dOptions{}};
  InitI3dRandom(source, 21);
  const std::map<std::string, at::Tensor> want = I3dStateDict(source);
  const std::string weights = (dir / "source.safetensors").string();
  ASSERT_TRUE(WriteSafetensors(weights, want).ok());

  const fs::path legacy = dir / "port_legacy.pt", zip = dir / "port_zip.pt";
  ASSERT_TRUE(RunPython("tests/python/make_port_checkpoint.py",
                        "--weights " + Quote(weights) + " --output " +
                            Quote(legacy.string()) + " --legacy",
                        dir / "make_legacy.log"));
  ASSERT_TRUE(RunPython("tests/python/make_port_checkpoint.py",
                        "--weights " + Quote(weights) + " --output " +
                            Quote(zip.string()),
                        dir / "make_zip.log"));

  struct Conversion {
    fs::path input;
    std::string output;  // file name in `dir`
    std::string flags;
    bool half;  // stored as float16: compare with the rounded weights
  };
  const Conversion conversions[] = {
      {legacy, "model.safetensors", "", false},
      {legacy, "half.safetensors", "--dtype f16", true},
      {zip, "model.pth", "--to-pth", false},
  };
  for (const Conversion& conv : conversions) {
    SCOPED_TRACE(conv.input.filename().string() + " -> " + conv.output);
    const fs::path out = dir / conv.output;
    ASSERT_TRUE(RunPython("tools/convert_checkpoint.py",
                          Quote(conv.input.string()) + " -o " +
                              Quote(out.string()) + " --check " + conv.flags,
                          dir / (conv.output + ".log")));
    InceptionI3d loaded{I3dOptions{}};
    InitI3dRandom(loaded, 99);  // different weights, to be overwritten
    const absl::Status status = LoadI3dCheckpoint(loaded, out.string());
    ASSERT_TRUE(status.ok()) << status;
    const std::map<std::string, at::Tensor> got = I3dStateDict(loaded);
    ASSERT_EQ(got.size(), want.size());
    int64_t mismatched = 0;
    for (const auto& [name, tensor] : want) {
      const auto it = got.find(name);
      ASSERT_NE(it, got.end()) << name;
      const at::Tensor expected =
          conv.half ? tensor.to(at::kHalf).to(at::kFloat) : tensor;
      if (!at::equal(it->second, expected)) {
        ADD_FAILURE() << name << " differs";
        ++mismatched;
      }
    }
    EXPECT_EQ(mismatched, 0);
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace clipserve::runtime
