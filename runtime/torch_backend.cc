#include "runtime/torch_backend.h"

#include <cstring>
#include <utility>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace clipserve::runtime {
namespace {

std::string ShapeString(const ClipShape& s) {
  return absl::StrCat("[", s.channels, ", ", s.frames, ", ", s.height, ", ",
                      s.width, "]");
}

std::string ShapeString(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

// A clip dimension `got` fits a spec dimension `want` (-1: any size).
bool Fits(int64_t got, int64_t want) {
  return got >= 1 && (want == -1 || got == want);
}

bool ValidSpecDim(int64_t d) { return d == -1 || d >= 1; }

// "RuntimeError: ...", "builtins.Exception: ...": how the TorchScript
// interpreter ends its message with the exception it caught.
bool LooksLikeExceptionLine(absl::string_view line) {
  const size_t colon = line.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return false;
  const absl::string_view cls = line.substr(0, colon);
  for (char c : cls) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '.') {
      return false;
    }
  }
  return absl::EndsWith(cls, "Error") || absl::EndsWith(cls, "Exception");
}

}  // namespace

std::string TorchErrorSummary(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const absl::string_view text =
      c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "unknown error";
  if (absl::StartsWith(lines.front(),
                       "The following operation failed in the TorchScript "
                       "interpreter")) {
    // A script traceback, then the exception: report the exception.
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
      if (LooksLikeExceptionLine(*it)) {
        return std::string(absl::StripAsciiWhitespace(*it));
      }
    }
    return std::string(absl::StripAsciiWhitespace(lines.back()));
  }
  return std::string(absl::StripAsciiWhitespace(lines.front()));
}

absl::StatusOr<c10::Device> ResolveDevice(const std::string& text) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid device \"", text, "\": ", TorchErrorSummary(e)));
  }
  if (device.is_cpu()) return c10::Device(c10::kCPU);
  if (device.is_cuda()) {
    if (!device.has_index()) device.set_index(0);
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device ", device.str(),
                       " requested but this build/machine has no CUDA"));
    }
    const size_t visible = torch::cuda::device_count();
    if (static_cast<size_t>(device.index()) >= visible) {
      return absl::FailedPreconditionError(
          absl::StrCat("device ", device.str(), " requested but only ",
                       visible, " CUDA device(s) are visible"));
    }
    return device;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported device \"", text, "\": expected cpu or cuda:N"));
}

absl::Status ValidateSpecAndOptions(const ModelSpec& spec,
                                    const BackendOptions& options) {
  const ClipShape& in = spec.input;
  if (in.channels < 1 || !ValidSpecDim(in.frames) ||
      !ValidSpecDim(in.height) || !ValidSpecDim(in.width)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid model input shape ", ShapeString(in),
        ": channels must be positive, frames/height/width positive or -1"));
  }
  if (spec.num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid num_classes ", spec.num_classes, ": must be positive"));
  }
  if (options.intra_op_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid intra_op_threads ", options.intra_op_threads,
                     ": must be >= 0"));
  }
  for (int64_t b : options.warmup_batch_sizes) {
    if (b < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid warm-up batch size ", b, ": must be positive"));
    }
  }
  return absl::OkStatus();
}

TorchBackend::TorchBackend(std::string name, const ModelSpec& spec,
                           const BackendOptions& options, c10::Device device)
    : name_(std::move(name)),
      spec_(spec),
      options_(options),
      device_(device) {}

absl::Status TorchBackend::Run(absl::Span<const ClipView> clips,
                               std::vector<float>* logits) {
  if (logits == nullptr) {
    return absl::InvalidArgumentError("Run: logits must not be null");
  }
  absl::StatusOr<int64_t> batch = CheckClips(clips);
  if (!batch.ok()) {
    logits->clear();
    return batch.status();
  }
  if (*batch == 0) {
    logits->clear();
    return absl::OkStatus();
  }
  // Under OpenMP the thread count is per calling thread; set it on ours.
  // LibTorch's own lazy per-thread init (first parallel op on a thread)
  // would reset it from the process-wide value, so have that happen first.
  const int threads = options_.intra_op_threads;
  if (threads > 0) at::internal::lazy_init_num_threads();
  if (threads > 0 && at::get_num_threads() != threads) {
    at::set_num_threads(threads);
  }
  return Execute(clips, *batch, logits, absl::StatusCode::kInternal);
}

absl::Status TorchBackend::WarmUp() {
  const ClipShape& shape = spec_.input;
  if (shape.frames < 1 || shape.height < 1 || shape.width < 1) {
    return absl::OkStatus();  // No fixed shape to warm up with.
  }
  // Every view points at the same zero clip: one clip of memory whatever
  // the batch size.
  const std::vector<uint8_t> zeros(static_cast<size_t>(shape.elements()), 0);
  ClipView zero_view;
  zero_view.dtype = ClipDType::kUInt8;
  zero_view.shape = shape;
  zero_view.count = 1;
  zero_view.data = zeros.data();
  std::vector<float> logits;
  for (int64_t batch : options_.warmup_batch_sizes) {
    const std::vector<ClipView> views(static_cast<size_t>(batch), zero_view);
    for (int round = 0; round < 2; ++round) {
      absl::Status status = Execute(views, batch, &logits,
                                    absl::StatusCode::kInvalidArgument);
      if (!status.ok()) {
        return absl::Status(
            status.code(), absl::StrCat(status.message(),
                                        " (at load, warm-up with batch size ",
                                        batch, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> TorchBackend::CheckClips(
    absl::Span<const ClipView> clips) const {
  if (clips.empty()) return 0;
  const ClipView& first = clips.front();
  if (ElementSize(first.dtype) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown clip dtype ", static_cast<int>(first.dtype)));
  }
  const ClipShape& got = first.shape;
  const ClipShape& want = spec_.input;
  if (got.channels != want.channels || !Fits(got.frames, want.frames) ||
      !Fits(got.height, want.height) || !Fits(got.width, want.width)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clip shape [C, T, H, W] ", ShapeString(got), " does not fit model ",
        name_, " input ", ShapeString(want)));
  }
  int64_t batch = 0;
  for (size_t i = 0; i < clips.size(); ++i) {
    const ClipView& view = clips[i];
    if (view.dtype != first.dtype || !(view.shape == got)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clip view ", i, " differs in dtype or shape from view 0 (",
          ShapeString(view.shape), " vs ", ShapeString(got), ")"));
    }
    if (view.count < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("clip view ", i, " has negative count ", view.count));
    }
    if (view.count > 0 && view.data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("clip view ", i, " has no data"));
    }
    batch += view.count;
  }
  return batch;
}

at::Tensor TorchBackend::AllocateHostBatch(at::IntArrayRef sizes,
                                           at::ScalarType type) const {
  return at::empty(sizes, at::TensorOptions().dtype(type));
}

at::Tensor TorchBackend::AssembleBatch(absl::Span<const ClipView> clips,
                                       int64_t batch) const {
  const ClipShape& s = clips.front().shape;
  at::Tensor host =
      clips.front().dtype == ClipDType::kUInt8
          ? AllocateHostBatch({batch, s.frames, s.height, s.width, s.channels},
                              at::kByte)
          : AllocateHostBatch({batch, s.channels, s.frames, s.height, s.width},
                              at::kFloat);
  auto* dst = static_cast<char*>(host.data_ptr());
  for (const ClipView& view : clips) {
    const size_t bytes = view.bytes();
    if (bytes == 0) continue;
    std::memcpy(dst, view.data, bytes);
    dst += bytes;
  }
  return host;
}

at::Tensor TorchBackend::ToModelInput(const at::Tensor& host) const {
  at::Tensor on_device = host.to(device_);  // The same tensor on CPU.
  if (on_device.scalar_type() == at::kFloat) return on_device;
  // uint8 [B, T, H, W, C] -> float [B, C, T, H, W]: one cast-and-permute
  // pass, then x / 127.5 - 1 in place (0 -> -1, 255 -> 1 exactly).
  const at::IntArrayRef s = on_device.sizes();
  at::Tensor input = at::empty({s[0], s[4], s[1], s[2], s[3]},
                               on_device.options().dtype(at::kFloat));
  input.copy_(on_device.permute({0, 4, 1, 2, 3}));
  input.div_(127.5).sub_(1.0);
  return input;
}

absl::Status TorchBackend::Execute(absl::Span<const ClipView> clips,
                                   int64_t batch, std::vector<float>* logits,
                                   absl::StatusCode failure_code) {
  try {
    c10::InferenceMode inference_mode;
    // Makes device_ current for this thread (a no-op on the CPU).
    const c10::DeviceGuard device_guard(device_);

    const at::Tensor output = Forward(ToModelInput(AssembleBatch(clips, batch)));

    const int64_t classes = spec_.num_classes;
    if (!output.defined() || output.dim() != 2 || output.size(0) != batch ||
        output.size(1) != classes) {
      logits->clear();
      return absl::Status(
          failure_code,
          absl::StrCat("model ", name_, " returned ",
                       output.defined() ? ShapeString(output.sizes())
                                        : std::string("an undefined tensor"),
                       " for a batch of ", batch, "; expected [", batch, ", ",
                       classes, "]"));
    }
    logits->resize(static_cast<size_t>(batch * classes));
    // One copy: device -> host, any dtype/strides -> row-major float.
    at::from_blob(logits->data(), {batch, classes},
                  at::TensorOptions().dtype(at::kFloat))
        .copy_(output);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    logits->clear();
    return absl::Status(failure_code, absl::StrCat("model ", name_,
                                                   " failed: ",
                                                   TorchErrorSummary(e)));
  }
}

}  // namespace clipserve::runtime
