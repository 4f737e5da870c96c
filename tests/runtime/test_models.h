// Helpers for the runtime tests: TorchScript modules written in the test and
// temporary files.
#ifndef CLIPSERVE_TESTS_RUNTIME_TEST_MODELS_H_
#define CLIPSERVE_TESTS_RUNTIME_TEST_MODELS_H_

#include <string>

#include <torch/csrc/jit/api/module.h>

namespace clipserve::runtime::testing {

// A path under the test's temporary directory, unique to this process.
std::string TempPath(const std::string& name);

// Defines `source` (TorchScript methods) on `module`. Unlike a bare
// Module::define, `raise Exception("...")` works, as in Python-scripted code.
void DefineWithExceptions(torch::jit::Module& module, const std::string& source);

// Saves `module` to a fresh temporary file and returns its path.
std::string SaveToTemp(torch::jit::Module& module, const std::string& name);

}  // namespace clipserve::runtime::testing

#endif  // CLIPSERVE_TESTS_RUNTIME_TEST_MODELS_H_
