#include "runtime/torch_backend.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <utility>

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/cuda_graphs.h"

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
  if (options.max_batch_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid max_batch_size ", options.max_batch_size, ": must be >= 0"));
  }
  for (size_t i = 0; i < options.batch_buckets.size(); ++i) {
    const int64_t b = options.batch_buckets[i];
    if (b < 1 || (i > 0 && b <= options.batch_buckets[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid batch buckets [",
                       absl::StrJoin(options.batch_buckets, ", "),
                       "]: must be positive and strictly ascending"));
    }
  }
  if (options.cuda_graphs) {
    if (options.batch_buckets.empty()) {
      return absl::InvalidArgumentError(
          "CUDA graphs need batch buckets (one graph per bucket)");
    }
    if (in.frames < 1 || in.height < 1 || in.width < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CUDA graphs need a fixed input shape, got ", ShapeString(in)));
    }
  }
  if (options.cuda_staging_slots < 1 || options.cuda_staging_slots > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid cuda_staging_slots ", options.cuda_staging_slots,
                     ": must be in 1..8"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<c10::Device>> ResolveInstances(
    const ModelSpec& spec, const std::vector<BackendOptions>& instances) {
  if (instances.empty()) {
    return absl::InvalidArgumentError("no instances to load");
  }
  std::vector<c10::Device> devices;
  for (const BackendOptions& options : instances) {
    absl::Status valid = ValidateSpecAndOptions(spec, options);
    if (!valid.ok()) return valid;
    absl::StatusOr<c10::Device> device = ResolveDevice(options.device);
    if (!device.ok()) return device.status();
    devices.push_back(*device);
  }
  return devices;
}

at::ScalarType ScalarTypeOf(Precision precision) {
  switch (precision) {
    case Precision::kFp16:
      return at::kHalf;
    case Precision::kBf16:
      return at::kBFloat16;
    case Precision::kFp32:
      break;
  }
  return at::kFloat;
}

bool IsStickyDeviceError(const std::exception& e) {
  if (const auto* accel = dynamic_cast<const c10::AcceleratorError*>(&e)) {
    // cudaError_t values that poison the context: ECC uncorrectable (214),
    // illegal address (700), launch timeout (702), device-side assert (710),
    // hardware stack error (714), illegal instruction (715), misaligned
    // address (716), invalid address space (717), invalid PC (718), launch
    // failure (719).
    switch (accel->get_error_code()) {
      case 214: case 700: case 702: case 710: case 714: case 715: case 716:
      case 717: case 718: case 719:
        return true;
      default:
        return false;
    }
  }
  const absl::string_view what = e.what();
  return absl::StrContains(what, "device-side assert triggered") ||
         absl::StrContains(what, "illegal memory access") ||
         absl::StrContains(what, "unspecified launch failure");
}

TorchBackend::TorchBackend(std::string name, const ModelSpec& spec,
                           const BackendOptions& options, c10::Device device)
    : name_(std::move(name)),
      spec_(spec),
      options_(options),
      device_(device),
      cuda_(device.is_cuda()),
      slots_(cuda_ ? static_cast<size_t>(options.cuda_staging_slots) : 1) {
  for (int i = static_cast<int>(slots_.size()) - 1; i >= 0; --i) {
    free_slots_.push_back(i);
  }
  if (cuda_) {
    c10::impl::VirtualGuardImpl guard(c10::DeviceType::CUDA);
    copy_stream_ = guard.getStreamFromGlobalPool(device_);
    compute_stream_ = guard.getStreamFromGlobalPool(device_);
    for (Slot& slot : slots_) {
      // Timed events (BACKEND_DEFAULT keeps timing on).
      for (auto* e : {&slot.upload_start, &slot.uploaded, &slot.forward_start,
                      &slot.forward_end, &slot.downloaded}) {
        e->emplace(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
      }
    }
  }
}

TorchBackend::~TorchBackend() {
  // Graphs hold pool memory of the device: release it with the device set.
  if (graphs_ != nullptr) {
    const c10::DeviceGuard device_guard(device_);
    graphs_.reset();
  }
}

absl::Status TorchBackend::health() const {
  if (!poisoned_.load(std::memory_order_acquire)) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(health_mu_);
  return health_;
}

absl::Status TorchBackend::Run(absl::Span<const ClipView> clips,
                               std::vector<float>* logits,
                               RunTimings* timings) {
  if (logits == nullptr) {
    return absl::InvalidArgumentError("Run: logits must not be null");
  }
  if (poisoned_.load(std::memory_order_acquire)) {
    logits->clear();
    return health();
  }
  absl::StatusOr<int64_t> batch = CheckClips(clips);
  if (!batch.ok()) {
    logits->clear();
    return batch.status();
  }
  if (*batch == 0) {
    logits->clear();
    if (timings != nullptr) *timings = RunTimings{};
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
  return Execute(clips, *batch, logits, timings, absl::StatusCode::kInternal);
}

absl::Status TorchBackend::Prepare() {
  if (cuda_) {
    // cuDNN times its algorithms once per input shape and keeps the
    // fastest; the warm-up below pays for every bucket the batcher forms.
    at::globalContext().setBenchmarkCuDNN(true);
  }
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
  std::vector<int64_t> sizes;
  for (int64_t b : options_.warmup_batch_sizes) {
    sizes.push_back(BucketFor(b, options_.batch_buckets));
  }
  if (graphs_ == nullptr && options_.cuda_graphs) {
    // Every captured bucket must have run before capture.
    sizes.insert(sizes.end(), options_.batch_buckets.begin(),
                 options_.batch_buckets.end());
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  std::vector<float> logits;
  for (int64_t batch : sizes) {
    const std::vector<ClipView> views(static_cast<size_t>(batch), zero_view);
    for (int round = 0; round < 2; ++round) {
      absl::Status status = Execute(views, batch, &logits, nullptr,
                                    absl::StatusCode::kInvalidArgument);
      if (!status.ok()) {
        return absl::Status(
            status.code(), absl::StrCat(status.message(),
                                        " (at load, warm-up with batch size ",
                                        batch, ")"));
      }
    }
  }
  if (!options_.cuda_graphs) return absl::OkStatus();
  if (!cuda_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA graphs need a CUDA device; model ", name_, " runs on ",
        device_.str()));
  }
  try {
    c10::InferenceMode inference_mode;
    const c10::DeviceGuard device_guard(device_);
    const c10::StreamGuard stream_guard(*compute_stream_);
    std::lock_guard<std::mutex> lock(compute_mu_);
    // The warm-up sized input_ for the largest bucket.
    absl::StatusOr<std::unique_ptr<CapturedForward>> graphs =
        CapturedForward::Capture(
            [this](const at::Tensor& input) { return Forward(input); }, input_,
            options_.batch_buckets, *compute_stream_);
    if (!graphs.ok()) {
      return absl::Status(graphs.status().code(),
                          absl::StrCat("model ", name_, ": ",
                                       graphs.status().message()));
    }
    graphs_ = *std::move(graphs);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "model ", name_, ": CUDA graph capture failed: ", TorchErrorSummary(e)));
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

int TorchBackend::AcquireSlot() {
  std::unique_lock<std::mutex> lock(slots_mu_);
  // The batcher runs at most max_concurrent_runs() lanes, so this waits only
  // for a caller that runs more threads than that.
  slot_freed_.wait(lock, [this] { return !free_slots_.empty(); });
  const int slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void TorchBackend::ReleaseSlot(int slot) {
  {
    std::lock_guard<std::mutex> lock(slots_mu_);
    free_slots_.push_back(slot);
  }
  slot_freed_.notify_one();
}

at::Tensor TorchBackend::Staging(at::Tensor* buffer, at::IntArrayRef sizes,
                                 at::ScalarType type, bool pinned,
                                 bool on_device) {
  // Reuse when the type and the per-row shape match and there are rows
  // enough; else allocate for max(rows, max_batch_size bucket) rows.
  bool fits = buffer->defined() && buffer->scalar_type() == type &&
              buffer->dim() == static_cast<int64_t>(sizes.size()) &&
              buffer->size(0) >= sizes[0];
  for (size_t d = 1; fits && d < sizes.size(); ++d) {
    fits = buffer->size(static_cast<int64_t>(d)) == sizes[d];
  }
  if (!fits) {
    std::vector<int64_t> alloc(sizes.begin(), sizes.end());
    alloc[0] = std::max(
        alloc[0], BucketFor(options_.max_batch_size, options_.batch_buckets));
    at::TensorOptions opts = at::TensorOptions().dtype(type);
    if (on_device) {
      opts = opts.device(device_);
    } else if (pinned) {
      opts = opts.pinned_memory(true);
    }
    *buffer = at::Tensor();  // Free the old one first.
    *buffer = at::empty(alloc, opts);
    staging_allocations_.fetch_add(1, std::memory_order_relaxed);
  }
  return buffer->narrow(0, 0, sizes[0]);
}

at::Tensor TorchBackend::Assemble(Slot& slot, absl::Span<const ClipView> clips,
                                  int64_t batch) {
  const ClipShape& s = clips.front().shape;
  const bool u8 = clips.front().dtype == ClipDType::kUInt8;
  // Per batch: sizes on the stack, not the heap.
  const std::array<int64_t, 5> sizes =
      u8 ? std::array<int64_t, 5>{batch, s.frames, s.height, s.width, s.channels}
         : std::array<int64_t, 5>{batch, s.channels, s.frames, s.height, s.width};
  at::Tensor host = Staging(&slot.host, sizes, u8 ? at::kByte : at::kFloat,
                            /*pinned=*/cuda_, /*on_device=*/false);
  auto* dst = static_cast<char*>(host.data_ptr());
  for (const ClipView& view : clips) {
    const size_t bytes = view.bytes();
    if (bytes == 0) continue;
    std::memcpy(dst, view.data, bytes);
    dst += bytes;
  }
  return host;
}

at::Tensor TorchBackend::Normalise(const at::Tensor& staged, int64_t padded) {
  const int64_t batch = staged.size(0);
  const bool u8 = staged.scalar_type() == at::kByte;
  const at::IntArrayRef s = staged.sizes();
  // Model input: [rows, C, T, H, W] in the instance's precision.
  const std::array<int64_t, 5> sizes =
      u8 ? std::array<int64_t, 5>{padded, s[4], s[1], s[2], s[3]}
         : std::array<int64_t, 5>{padded, s[1], s[2], s[3], s[4]};
  // Captured graphs read input_ where it is: a batch beyond the largest
  // bucket gets a buffer of its own rather than moving input_.
  const bool oversized = graphs_ != nullptr && padded > input_.size(0);
  at::Tensor scratch;
  at::Tensor input =
      Staging(oversized ? &scratch : &input_, sizes,
              ScalarTypeOf(options_.precision), /*pinned=*/false,
              /*on_device=*/true);
  at::Tensor rows = input.narrow(0, 0, batch);
  if (u8) {
    // uint8 [B, T, H, W, C] -> [B, C, T, H, W]: one cast-and-permute pass,
    // then x / 127.5 - 1 in place (0 -> -1, 255 -> 1 exactly).
    rows.copy_(staged.permute({0, 4, 1, 2, 3}));
    rows.div_(127.5).sub_(1.0);
  } else {
    rows.copy_(staged);
  }
  if (padded > batch) input.narrow(0, batch, padded - batch).zero_();
  return input;
}

at::Tensor TorchBackend::ForwardPadded(const at::Tensor& input,
                                       int64_t padded) {
  if (options_.before_forward) options_.before_forward(padded);
  if (graphs_ != nullptr && graphs_->Has(padded)) return graphs_->Replay(padded);
  return Forward(input);
}

absl::Status TorchBackend::CheckOutput(const at::Tensor& output, int64_t rows,
                                       int64_t batch,
                                       absl::StatusCode failure_code) const {
  const int64_t classes = spec_.num_classes;
  if (output.defined() && output.dim() == 2 && output.size(0) == rows &&
      output.size(1) == classes) {
    return absl::OkStatus();
  }
  return absl::Status(
      failure_code,
      absl::StrCat("model ", name_, " returned ",
                   output.defined() ? ShapeString(output.sizes())
                                    : std::string("an undefined tensor"),
                   " for a batch of ", rows, "; expected [", rows, ", ",
                   classes, "]",
                   rows != batch ? absl::StrCat(" (", batch, " clips padded to ",
                                                rows, ")")
                                 : std::string()));
}

absl::Status TorchBackend::RunOnCpu(Slot& slot,
                                    absl::Span<const ClipView> clips,
                                    int64_t batch, std::vector<float>* logits,
                                    RunTimings* timings) {
  const int64_t padded = BucketFor(batch, options_.batch_buckets);
  const at::Tensor staged = Assemble(slot, clips, batch);
  // Float clips in fp32 at their own size are the model's input as they
  // are: no second copy.
  const bool as_is = staged.scalar_type() == at::kFloat &&
                     options_.precision == Precision::kFp32 && padded == batch;
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor input = as_is ? staged : Normalise(staged, padded);
  const at::Tensor output = ForwardPadded(input, padded);
  const auto done = std::chrono::steady_clock::now();
  absl::Status shape = CheckOutput(output, padded, batch,
                                   absl::StatusCode::kInternal);
  if (!shape.ok()) return shape;
  const int64_t classes = spec_.num_classes;
  logits->resize(static_cast<size_t>(batch * classes));
  // One copy: any dtype/strides -> row-major float, the caller's rows only.
  at::from_blob(logits->data(), {batch, classes},
                at::TensorOptions().dtype(at::kFloat))
      .copy_(output.narrow(0, 0, batch));
  if (timings != nullptr) {
    *timings = RunTimings{};
    timings->batch = padded;
    timings->compute_us =
        std::chrono::duration_cast<std::chrono::microseconds>(done - start)
            .count();
  }
  return absl::OkStatus();
}

absl::Status TorchBackend::RunOnCuda(Slot& slot,
                                     absl::Span<const ClipView> clips,
                                     int64_t batch, std::vector<float>* logits,
                                     RunTimings* timings) {
  const int64_t padded = BucketFor(batch, options_.batch_buckets);
  const int64_t classes = spec_.num_classes;
  const at::Tensor staged = Assemble(slot, clips, batch);
  at::Tensor uploaded;
  {
    // One asynchronous copy of the whole batch, on the copy stream, from
    // pinned memory.
    const c10::StreamGuard stream_guard(*copy_stream_);
    uploaded = Staging(&slot.upload, staged.sizes(), staged.scalar_type(),
                       /*pinned=*/false, /*on_device=*/true);
    slot.upload_start->record(*copy_stream_);
    uploaded.copy_(staged, /*non_blocking=*/true);
    slot.uploaded->record(*copy_stream_);
  }
  at::Tensor host_logits =
      Staging(&slot.host_logits, {batch, classes}, at::kFloat, /*pinned=*/true,
              /*on_device=*/false);
  {
    std::lock_guard<std::mutex> lock(compute_mu_);
    const c10::StreamGuard stream_guard(*compute_stream_);
    slot.uploaded->block(*compute_stream_);
    slot.forward_start->record(*compute_stream_);
    const at::Tensor input = Normalise(uploaded, padded);
    // The upload buffer is this slot's until its next batch, which begins
    // only after `downloaded` below: no event needed to guard it.
    const at::Tensor output = ForwardPadded(input, padded);
    slot.forward_end->record(*compute_stream_);
    absl::Status shape = CheckOutput(output, padded, batch,
                                     absl::StatusCode::kInternal);
    if (!shape.ok()) return shape;
    host_logits.copy_(output.narrow(0, 0, batch).to(at::kFloat),
                      /*non_blocking=*/true);
    slot.downloaded->record(*compute_stream_);
  }
  slot.downloaded->synchronize();
  logits->assign(host_logits.data_ptr<float>(),
                 host_logits.data_ptr<float>() + batch * classes);
  if (timings != nullptr) {
    timings->device_copies = true;
    timings->batch = padded;
    const auto us = [](const c10::Event& from, const c10::Event& to) {
      return static_cast<int64_t>(from.elapsedTime(to) * 1000.0);
    };
    timings->upload_us = us(*slot.upload_start, *slot.uploaded);
    timings->compute_us = us(*slot.forward_start, *slot.forward_end);
    timings->download_us = us(*slot.forward_end, *slot.downloaded);
  }
  return absl::OkStatus();
}

absl::Status TorchBackend::Execute(absl::Span<const ClipView> clips,
                                   int64_t batch, std::vector<float>* logits,
                                   RunTimings* timings,
                                   absl::StatusCode failure_code) {
  const int slot_index = AcquireSlot();
  Slot& slot = slots_[static_cast<size_t>(slot_index)];
  absl::Status status;
  try {
    c10::InferenceMode inference_mode;
    // Makes device_ current for this thread (a no-op on the CPU).
    const c10::DeviceGuard device_guard(device_);
    status = cuda_ ? RunOnCuda(slot, clips, batch, logits, timings)
                   : RunOnCpu(slot, clips, batch, logits, timings);
    // A wrong output shape is the model not fitting its spec at load.
    if (status.code() == absl::StatusCode::kInternal) {
      status = absl::Status(failure_code, status.message());
    }
  } catch (const c10::OutOfMemoryError& e) {
    const int64_t padded = BucketFor(batch, options_.batch_buckets);
    if (cuda_) {
      // Give the cached blocks back so that smaller batches (and the other
      // instances on this device) can still allocate.
      try {
        at::accelerator::emptyCache();
      } catch (const std::exception&) {
      }
    }
    status = absl::ResourceExhaustedError(absl::StrCat(
        "model ", name_, " ran out of memory on ", device_.str(),
        " running a batch of ", batch,
        padded != batch ? absl::StrCat(" (padded to ", padded, ")")
                        : std::string(),
        ": ", TorchErrorSummary(e)));
  } catch (const std::exception& e) {
    if (IsStickyDeviceError(e)) {
      absl::Status unusable = absl::UnavailableError(absl::StrCat(
          device_.str(), " is unusable after a device error in model ", name_,
          ": ", TorchErrorSummary(e)));
      {
        std::lock_guard<std::mutex> lock(health_mu_);
        health_ = unusable;
      }
      poisoned_.store(true, std::memory_order_release);
      status = absl::InternalError(absl::StrCat(
          "model ", name_, " failed: ", TorchErrorSummary(e),
          " (the device is now unusable; this instance refuses further "
          "batches)"));
    } else {
      status = absl::Status(failure_code, absl::StrCat("model ", name_,
                                                       " failed: ",
                                                       TorchErrorSummary(e)));
    }
  }
  ReleaseSlot(slot_index);
  if (!status.ok()) logits->clear();
  return status;
}

}  // namespace clipserve::runtime
