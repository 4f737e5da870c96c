// GpuMetrics against fake_nvml (tests/gpu/fake_nvml.cc), whose readings are
// known: see that file for the table and the FAKE_NVML_* variables.
#include "server/gpu_metrics.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace clipserve::server {
namespace {

using std::chrono::milliseconds;

constexpr char kFakeNvml[] = FAKE_NVML_PATH;
constexpr milliseconds kHour = std::chrono::hours(1);

constexpr char kDev0[] = "{gpu=\"0\",gpu_uuid=\"GPU-fake-0\"}";
constexpr char kDev1[] = "{gpu=\"1\",gpu_uuid=\"GPU-fake-1\"}";

// The fake's energy after `reads` reads, in joules, as GpuMetrics computes it.
double Energy0(int reads) { return (1000000 + reads * 1234ull) / 1000.0; }
double Energy1(int reads) { return (2500000 + reads * 4321ull) / 1000.0; }

std::string Serialize(const prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

// Every sample as name{labels} -> value, straight from Collect() (exact).
std::map<std::string, double> Samples(const prometheus::Registry& registry) {
  std::map<std::string, double> samples;
  for (const auto& family : registry.Collect()) {
    for (const auto& metric : family.metric) {
      std::string key = family.name + "{";
      for (size_t i = 0; i < metric.label.size(); ++i) {
        if (i > 0) key += ",";
        key += metric.label[i].name + "=\"" + metric.label[i].value + "\"";
      }
      key += "}";
      samples[key] = family.type == prometheus::MetricType::Counter
                         ? metric.counter.value
                         : metric.gauge.value;
    }
  }
  return samples;
}

bool HasGpuFamily(const prometheus::Registry& registry) {
  for (const auto& family : registry.Collect()) {
    if (family.name.rfind("clipserve_gpu_", 0) == 0) return true;
  }
  return false;
}

std::vector<std::string> LogLines(const std::string& captured) {
  std::vector<std::string> lines;
  std::istringstream in(captured);
  for (std::string line; std::getline(in, line);) {
    if (line.find(" clipserve: ") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

// Reads the fake's nvmlInit_v2 reference count (the test shares the loaded
// fake with GpuMetrics, dlopen() being reference counted per path).
int FakeInitRefcount() {
  void* handle = dlopen(kFakeNvml, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return -1;
  auto fn =
      reinterpret_cast<int (*)()>(dlsym(handle, "fake_nvml_init_refcount"));
  const int refcount = fn != nullptr ? fn() : -1;
  dlclose(handle);
  return refcount;
}

class GpuMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override { ClearEnv(); }
  void TearDown() override { ClearEnv(); }
  static void ClearEnv() {
    unsetenv("FAKE_NVML_DEVICES");
    unsetenv("FAKE_NVML_INIT_FAIL");
    unsetenv("FAKE_NVML_FAIL");
  }

  // Start() with stderr captured; the log lines it wrote go to *lines.
  std::unique_ptr<GpuMetrics> StartCapturing(const std::string& library,
                                             std::vector<std::string>* lines,
                                             milliseconds interval = kHour) {
    testing::internal::CaptureStderr();
    auto gpu = GpuMetrics::Start(registry_, interval, library);
    *lines = LogLines(testing::internal::GetCapturedStderr());
    return gpu;
  }

  prometheus::Registry registry_;
};

TEST_F(GpuMetricsTest, AbsentLibraryReturnsNullLogsOneLineAndExportsNothing) {
  std::vector<std::string> lines;
  auto gpu = StartCapturing("libnvidia-ml-does-not-exist.so.1", &lines);
  EXPECT_EQ(gpu, nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("GPU metrics off"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("libnvidia-ml-does-not-exist.so.1"),
            std::string::npos)
      << lines[0];
  EXPECT_FALSE(HasGpuFamily(registry_));
  EXPECT_EQ(Serialize(registry_).find("clipserve_gpu"), std::string::npos);
}

TEST_F(GpuMetricsTest, LibraryWithoutNvmlReturnsNullAndLogsOneLine) {
  std::vector<std::string> lines;
  auto gpu = StartCapturing("libm.so.6", &lines);
  EXPECT_EQ(gpu, nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("lacks nvmlInit_v2"), std::string::npos) << lines[0];
  EXPECT_FALSE(HasGpuFamily(registry_));
}

TEST_F(GpuMetricsTest, InitFailureReturnsNullAndLogsOneLine) {
  setenv("FAKE_NVML_INIT_FAIL", "1", 1);
  std::vector<std::string> lines;
  auto gpu = StartCapturing(kFakeNvml, &lines);
  EXPECT_EQ(gpu, nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("nvmlInit_v2 failed: Driver Not Loaded"),
            std::string::npos)
      << lines[0];
  EXPECT_FALSE(HasGpuFamily(registry_));
  EXPECT_EQ(FakeInitRefcount(), 0);
}

TEST_F(GpuMetricsTest, ZeroDevicesReturnsNullAndLogsOneLine) {
  setenv("FAKE_NVML_DEVICES", "0", 1);
  std::vector<std::string> lines;
  auto gpu = StartCapturing(kFakeNvml, &lines);
  EXPECT_EQ(gpu, nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("no GPUs"), std::string::npos) << lines[0];
  EXPECT_FALSE(HasGpuFamily(registry_));
  EXPECT_EQ(FakeInitRefcount(), 0);  // shut down again
}

TEST_F(GpuMetricsTest, ExportsEverySeriesWithExactValues) {
  std::vector<std::string> lines;
  auto gpu = StartCapturing(kFakeNvml, &lines);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->device_count(), 2);
  ASSERT_EQ(lines.size(), 1u);  // "GPU metrics: 2 GPU(s) through ..."
  EXPECT_NE(lines[0].find("2 GPU(s)"), std::string::npos) << lines[0];

  gpu->SampleOnce();  // the second sample; Start took the first
  const std::string d0 = kDev0, d1 = kDev1;
  const std::map<std::string, double> expected = {
      {"clipserve_gpu_utilization_ratio" + d0, 0.37},
      {"clipserve_gpu_utilization_ratio" + d1, 0.90},
      {"clipserve_gpu_memory_used_bytes" + d0, 1073741824.0},
      {"clipserve_gpu_memory_used_bytes" + d1, 8000000000.0},
      {"clipserve_gpu_memory_total_bytes" + d0, 17179869184.0},
      {"clipserve_gpu_memory_total_bytes" + d1, 85899345920.0},
      {"clipserve_gpu_power_watts" + d0, 123.456},
      {"clipserve_gpu_power_watts" + d1, 300.0},
      {"clipserve_gpu_energy_joules_total" + d0, Energy0(2)},
      {"clipserve_gpu_energy_joules_total" + d1, Energy1(2)},
  };
  EXPECT_EQ(Samples(registry_), expected);

  const std::string text = Serialize(registry_);
  const std::vector<std::string> want = {
      "# TYPE clipserve_gpu_utilization_ratio gauge\n",
      "# TYPE clipserve_gpu_memory_used_bytes gauge\n",
      "# TYPE clipserve_gpu_memory_total_bytes gauge\n",
      "# TYPE clipserve_gpu_power_watts gauge\n",
      "# TYPE clipserve_gpu_energy_joules_total counter\n",
      "clipserve_gpu_utilization_ratio{gpu=\"0\",gpu_uuid=\"GPU-fake-0\"} "
      "0.37\n",
      "clipserve_gpu_utilization_ratio{gpu=\"1\",gpu_uuid=\"GPU-fake-1\"} "
      "0.9\n",
      "clipserve_gpu_power_watts{gpu=\"0\",gpu_uuid=\"GPU-fake-0\"} "
      "123.456\n",
      "clipserve_gpu_memory_total_bytes{gpu=\"1\",gpu_uuid=\"GPU-fake-1\"}"
      " 85899345920\n",
      "clipserve_gpu_energy_joules_total{gpu=\"0\",gpu_uuid=\"GPU-fake-0\"}"
      " 1002.468\n",
      "clipserve_gpu_energy_joules_total{gpu=\"1\",gpu_uuid=\"GPU-fake-1\"}"
      " 2508.642\n",
  };
  for (const std::string& line : want) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in\n" << text;
  }
}

TEST_F(GpuMetricsTest, EnergyCounterEqualsNvmlTotalAndIncreases) {
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  const std::string e0 =
      std::string("clipserve_gpu_energy_joules_total") + kDev0;
  const std::string e1 =
      std::string("clipserve_gpu_energy_joules_total") + kDev1;
  double previous = Samples(registry_).at(e0);
  EXPECT_EQ(previous, Energy0(1));
  EXPECT_EQ(Samples(registry_).at(e1), Energy1(1));
  for (int reads = 2; reads <= 50; ++reads) {
    gpu->SampleOnce();
    const auto samples = Samples(registry_);
    EXPECT_EQ(samples.at(e0), Energy0(reads)) << reads;
    EXPECT_EQ(samples.at(e1), Energy1(reads)) << reads;
    EXPECT_GT(samples.at(e0), previous);
    previous = samples.at(e0);
  }
}

TEST_F(GpuMetricsTest, FailingFunctionLeavesOnlyThatSeriesOut) {
  setenv("FAKE_NVML_FAIL", "power:1,energy:0,utilization:1", 1);
  std::vector<std::string> lines;
  auto gpu = StartCapturing(kFakeNvml, &lines);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(lines.size(), 4u);  // started + one per failing (device, reading)
  testing::internal::CaptureStderr();
  gpu->SampleOnce();
  EXPECT_TRUE(LogLines(testing::internal::GetCapturedStderr()).empty())
      << "a failure is logged once, not every sample";

  const std::string d0 = kDev0, d1 = kDev1;
  const std::map<std::string, double> expected = {
      {"clipserve_gpu_utilization_ratio" + d0, 0.37},
      {"clipserve_gpu_memory_used_bytes" + d0, 1073741824.0},
      {"clipserve_gpu_memory_used_bytes" + d1, 8000000000.0},
      {"clipserve_gpu_memory_total_bytes" + d0, 17179869184.0},
      {"clipserve_gpu_memory_total_bytes" + d1, 85899345920.0},
      {"clipserve_gpu_power_watts" + d0, 123.456},
      {"clipserve_gpu_energy_joules_total" + d1, Energy1(2)},
  };
  EXPECT_EQ(Samples(registry_), expected);
}

TEST_F(GpuMetricsTest, GaugeDropsWhileFailingCounterKeepsItsValue) {
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  const std::string power1 = std::string("clipserve_gpu_power_watts") + kDev1;
  const std::string energy1 =
      std::string("clipserve_gpu_energy_joules_total") + kDev1;
  ASSERT_EQ(Samples(registry_).count(power1), 1u);

  setenv("FAKE_NVML_FAIL", "power:1,energy:1", 1);
  gpu->SampleOnce();
  auto samples = Samples(registry_);
  EXPECT_EQ(samples.count(power1), 0u);
  EXPECT_EQ(samples.at(energy1), Energy1(1));  // unchanged
  EXPECT_EQ(samples.count(std::string("clipserve_gpu_power_watts") + kDev0),
            1u);

  unsetenv("FAKE_NVML_FAIL");
  gpu->SampleOnce();
  samples = Samples(registry_);
  EXPECT_EQ(samples.at(power1), 300.0);
  // The fake counted only successful reads: this is its second.
  EXPECT_EQ(samples.at(energy1), Energy1(2));
}

TEST_F(GpuMetricsTest, DeviceWithoutHandleIsLeftOut) {
  setenv("FAKE_NVML_FAIL", "handle:0", 1);
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->device_count(), 2);
  for (const auto& [series, value] : Samples(registry_)) {
    EXPECT_NE(series.find("gpu=\"1\""), std::string::npos) << series;
  }
  EXPECT_EQ(Samples(registry_).size(), 5u);
}

TEST_F(GpuMetricsTest, UuidFailureLeavesLabelEmpty) {
  setenv("FAKE_NVML_FAIL", "uuid:1", 1);
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  const auto samples = Samples(registry_);
  EXPECT_EQ(samples.at("clipserve_gpu_power_watts{gpu=\"1\",gpu_uuid=\"\"}"),
            300.0);
  EXPECT_EQ(samples.at(std::string("clipserve_gpu_power_watts") + kDev0),
            123.456);
}

TEST_F(GpuMetricsTest, DestructorStopsSamplerPromptlyAndCleansUp) {
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(FakeInitRefcount(), 1);
  std::this_thread::sleep_for(milliseconds(50));  // let the thread wait
  const auto start = std::chrono::steady_clock::now();
  gpu.reset();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(1));
  EXPECT_EQ(FakeInitRefcount(), 0);  // nvmlShutdown called
  EXPECT_FALSE(HasGpuFamily(registry_));
}

TEST_F(GpuMetricsTest, ThreadSamplesEveryInterval) {
  auto gpu = GpuMetrics::Start(registry_, milliseconds(10), kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  const std::string e0 =
      std::string("clipserve_gpu_energy_joules_total") + kDev0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Samples(registry_).at(e0) < Energy0(3) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_GE(Samples(registry_).at(e0), Energy0(3));
}

TEST_F(GpuMetricsTest, TwoInstancesInSeparateRegistries) {
  prometheus::Registry other;
  auto a = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  auto b = GpuMetrics::Start(other, kHour, kFakeNvml);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(FakeInitRefcount(), 2);
  a.reset();
  EXPECT_EQ(FakeInitRefcount(), 1);
  b->SampleOnce();  // NVML still initialised for b
  EXPECT_EQ(Samples(other).size(), 10u);
}

TEST_F(GpuMetricsTest, PromtoolCheckMetricsIsClean) {
#ifndef PROMTOOL_PATH
#error "PROMTOOL_PATH must be set (tests/gpu/CMakeLists.txt)"
#else
  auto gpu = GpuMetrics::Start(registry_, kHour, kFakeNvml);
  ASSERT_NE(gpu, nullptr);
  gpu->SampleOnce();
  const std::string text = Serialize(registry_);
  const std::string dir = testing::TempDir();
  const std::string in =
      dir + "gpu_metrics_" + std::to_string(getpid()) + ".prom";
  const std::string out = in + ".out";
  std::ofstream(in) << text;
  const std::string command = std::string(PROMTOOL_PATH) +
                              " check metrics < '" + in + "' > '" + out +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream result(out);
  const std::string problems((std::istreambuf_iterator<char>(result)),
                             std::istreambuf_iterator<char>());
  std::remove(in.c_str());
  std::remove(out.c_str());
  EXPECT_EQ(status, 0) << problems << "\nfor\n" << text;
  EXPECT_EQ(problems, "") << text;
#endif
}

}  // namespace
}  // namespace clipserve::server
