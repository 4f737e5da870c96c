#include "tests/runtime/test_models.h"

#include <unistd.h>

#include <memory>

#include <gtest/gtest.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>

namespace clipserve::runtime::testing {
namespace {

// Resolves `Exception` like the Python frontend does; everything else as the
// native resolver (`torch.*`).
struct ExceptionResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name, torch::jit::GraphFunction& m,
      const torch::jit::SourceRange& loc) override {
    if (name == "Exception") {
      return std::make_shared<torch::jit::ExceptionValue>(name);
    }
    return torch::jit::nativeResolver()->resolveValue(name, m, loc);
  }
  c10::TypePtr resolveType(const std::string& /*name*/,
                           const torch::jit::SourceRange& /*loc*/) override {
    return nullptr;
  }
};

}  // namespace

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "clipserve_runtime_test_" +
         std::to_string(::getpid()) + "_" + name;
}

void DefineWithExceptions(torch::jit::Module& module,
                          const std::string& source) {
  module.define(source, std::make_shared<ExceptionResolver>());
}

std::string SaveToTemp(torch::jit::Module& module, const std::string& name) {
  const std::string path = TempPath(name);
  module.save(path);
  return path;
}

}  // namespace clipserve::runtime::testing
