#include "server/kserve_tensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/clip_validation.h"
#include "server/postprocess.h"

namespace clipserve::server::kserve {
namespace {

using inference::InferParameter;
using inference::ModelInferRequest;

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

// A non-negative integer parameter, from int64_param or uint64_param.
absl::Status ReadCount(const ModelInferRequest& request, const char* name,
                       uint64_t* out) {
  auto it = request.parameters().find(name);
  if (it == request.parameters().end()) return absl::OkStatus();
  const InferParameter& p = it->second;
  switch (p.parameter_choice_case()) {
    case InferParameter::kUint64Param:
      *out = p.uint64_param();
      return absl::OkStatus();
    case InferParameter::kInt64Param:
      if (p.int64_param() >= 0) {
        *out = static_cast<uint64_t>(p.int64_param());
        return absl::OkStatus();
      }
      break;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "parameter '", name, "' must be a non-negative int64 or uint64"));
}

std::string OutputNames(const ModelIo& io) {
  return absl::StrCat("'", io.logits_name, "' and '", kProbabilitiesOutput, "'");
}

absl::Status ParseOutputs(const ModelInferRequest& request, const ModelIo& io,
                          ParsedInfer* out) {
  out->outputs.clear();
  if (request.outputs().empty()) {
    out->outputs = {Output::kLogits, Output::kProbabilities};
    return absl::OkStatus();
  }
  for (const auto& o : request.outputs()) {
    Output which;
    if (o.name() == io.logits_name) {
      which = Output::kLogits;
    } else if (o.name() == kProbabilitiesOutput) {
      which = Output::kProbabilities;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown output '", o.name(), "': model '",
                       io.model_name, "' has outputs ", OutputNames(io)));
    }
    for (Output seen : out->outputs) {
      if (seen == which) {
        return absl::InvalidArgumentError(
            absl::StrCat("output '", o.name(), "' is requested twice"));
      }
    }
    out->outputs.push_back(which);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseInferRequest(const ModelInferRequest& request,
                               const ModelIo& io, ParsedInfer* out) {
  if (request.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", io.model_name, "' takes one input, '", io.input_name,
        "'; the request has ", request.inputs_size()));
  }
  const ModelInferRequest::InferInputTensor& input = request.inputs(0);
  if (input.name() != io.input_name) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown input '", input.name(), "': model '",
                     io.model_name, "' takes one input, '", io.input_name, "'"));
  }
  // Messages name the input; built only on the error paths.
  const auto what = [&input] { return absl::StrCat("input '", input.name(), "'"); };
  out->raw = request.raw_input_contents_size() > 0;
  if (out->raw) {
    if (input.has_contents()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), " sets contents while the request uses raw_input_contents; "
                "use one or the other"));
    }
    if (request.raw_input_contents_size() != request.inputs_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "raw_input_contents has ", request.raw_input_contents_size(),
          " entries for ", request.inputs_size(), " input(s)"));
    }
  }

  const int64_t c = io.spec.input.channels;
  const bool uint8 = input.datatype() == "UINT8";
  if (!uint8 && input.datatype() != "FP32") {
    return absl::InvalidArgumentError(absl::StrCat(
        what(), ": datatype ", input.datatype().empty() ? "(empty)" : input.datatype(),
        " is not accepted; model '", io.model_name, "' takes UINT8 [B, T, H, W, ",
        c, "] or FP32 [B, ", c, ", T, H, W]"));
  }
  const auto& shape = input.shape();
  const char* layout = uint8 ? "[B, T, H, W, C]" : "[B, C, T, H, W]";
  if (shape.size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat(what(), ": shape must be ", layout, " for ", input.datatype(),
                     ", got ", ShapeString(shape)));
  }
  for (int64_t d : shape) {
    if (d <= 0 || d > kMaxClipDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": shape ", ShapeString(shape),
          " has a dimension that is not in 1..", kMaxClipDim));
    }
  }
  const int64_t batch = shape[0];
  if (batch > io.max_batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        what(), ": a batch of ", batch, " clips exceeds model '", io.model_name,
        "''s max_batch_size, ", io.max_batch_size));
  }
  runtime::ClipView& clip = out->clip;
  clip.dtype = uint8 ? runtime::ClipDType::kUInt8 : runtime::ClipDType::kFloat32;
  clip.count = batch;
  clip.shape = uint8 ? runtime::ClipShape{shape[4], shape[1], shape[2], shape[3]}
                     : runtime::ClipShape{shape[1], shape[2], shape[3], shape[4]};
  if (!ClipFitsModel(clip.shape, io.spec)) {
    return ClipMisfitError(clip.shape, io.spec, io.model_name, what(),
                           absl::StrCat(input.datatype(), " layout is ", layout));
  }
  // Five dimensions below 2^20 fit in 100 bits.
  const unsigned __int128 elements = static_cast<unsigned __int128>(batch) *
                                     shape[1] * shape[2] * shape[3] * shape[4];
  const auto needs = [&](unsigned __int128 n) {
    return n > (static_cast<unsigned __int128>(1) << 62)
               ? std::string("over 2^62")
               : absl::StrCat(static_cast<uint64_t>(n));
  };

  if (out->raw) {
    const std::string& bytes = request.raw_input_contents(0);
    const unsigned __int128 want = elements * runtime::ElementSize(clip.dtype);
    if (bytes.size() != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": raw_input_contents[0] has ", bytes.size(), " bytes; shape ",
          ShapeString(shape), " of ", input.datatype(), " needs ", needs(want)));
    }
    clip.data = bytes.data();
  } else if (uint8) {
    const auto& values = input.contents().uint_contents();
    if (static_cast<unsigned __int128>(values.size()) != elements) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": contents.uint_contents has ", values.size(),
          " values; shape ", ShapeString(shape), " needs ", needs(elements)));
    }
    out->converted.resize(values.size());
    char* dst = out->converted.data();
    for (int i = 0; i < values.size(); ++i) {
      const uint32_t v = values[i];
      if (v > 255) {
        return absl::InvalidArgumentError(absl::StrCat(
            what(), ": contents.uint_contents[", i, "] is ", v,
            ", over 255 for UINT8"));
      }
      dst[i] = static_cast<char>(v);
    }
    clip.data = out->converted.data();
  } else {
    const auto& values = input.contents().fp32_contents();
    if (static_cast<unsigned __int128>(values.size()) != elements) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": contents.fp32_contents has ", values.size(),
          " values; shape ", ShapeString(shape), " needs ", needs(elements)));
    }
    clip.data = values.data();
  }

  if (absl::Status s = ParseOutputs(request, io, out); !s.ok()) return s;
  out->priority = 0;
  if (absl::Status s = ReadCount(request, "priority", &out->priority); !s.ok()) {
    return s;
  }
  uint64_t timeout = 0;
  if (absl::Status s = ReadCount(request, "timeout", &timeout); !s.ok()) {
    return s;
  }
  // Over a day is surely a units mistake; it also keeps the sum finite.
  constexpr uint64_t kMaxTimeoutUs = 86400ull * 1000 * 1000;
  if (timeout > kMaxTimeoutUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter 'timeout' is ", timeout,
                     " microseconds, over a day"));
  }
  out->timeout_us = static_cast<int64_t>(timeout);
  return absl::OkStatus();
}

void FillInferResponse(const ModelInferRequest& request,
                       const ParsedInfer& parsed, const ModelIo& io,
                       absl::Span<const float> logits, int64_t num_classes,
                       const ExecutionStats& stats,
                       inference::ModelInferResponse* response) {
  const int64_t rows = parsed.clip.count;
  const size_t values = static_cast<size_t>(rows * num_classes);
  response->set_id(request.id());
  for (Output which : parsed.outputs) {
    auto* tensor = response->add_outputs();
    tensor->set_name(which == Output::kLogits ? std::string(io.logits_name)
                                              : kProbabilitiesOutput);
    tensor->set_datatype("FP32");
    tensor->add_shape(rows);
    tensor->add_shape(num_classes);
    float* dst;
    if (parsed.raw) {
      std::string* bytes = response->add_raw_output_contents();
      bytes->resize(values * sizeof(float));
      dst = reinterpret_cast<float*>(bytes->data());
    } else {
      auto* typed = tensor->mutable_contents()->mutable_fp32_contents();
      typed->Resize(static_cast<int>(values), 0.0f);
      dst = typed->mutable_data();
    }
    if (which == Output::kLogits) {
      std::memcpy(dst, logits.data(), values * sizeof(float));
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        Softmax(logits.subspan(r * num_classes, num_classes),
                dst + r * num_classes);
      }
    }
  }
  auto& params = *response->mutable_parameters();
  params["queue_us"].set_int64_param(stats.queue_us);
  params["compute_us"].set_int64_param(stats.compute_us);
  params["batch_size"].set_int64_param(stats.batch_size);
}

namespace {

// The declared input's dims, without the batch dimension: [C, T, H, W].
std::array<int64_t, 4> InputDims(const runtime::ClipShape& in) {
  return {in.channels, in.frames, in.height, in.width};
}

// The outputs every model answers with, in the order they are listed.
std::array<absl::string_view, 2> ListedOutputs(const ModelIo& io) {
  return {io.logits_name, kProbabilitiesOutput};
}

}  // namespace

void FillTensorMetadata(const ModelIo& io,
                        inference::ModelMetadataResponse* response) {
  auto* clip = response->add_inputs();
  clip->set_name(std::string(io.input_name));
  clip->set_datatype("FP32");
  clip->add_shape(-1);
  for (int64_t d : InputDims(io.spec.input)) clip->add_shape(d);
  for (absl::string_view name : ListedOutputs(io)) {
    auto* out = response->add_outputs();
    out->set_name(std::string(name));
    out->set_datatype("FP32");
    out->add_shape(-1);
    out->add_shape(io.spec.num_classes);
  }
}

namespace {

// The instance group `group`'s kind and gpus as its instances were loaded
// (`devices`, one per instance of the group); false when they do not agree
// on one kind.
bool LoadedKind(absl::Span<const std::string> devices,
                inference::ModelInstanceGroup* group) {
  bool cpu = false, gpu = false;
  for (const std::string& d : devices) {
    int index = 0;
    if (d == "cpu") {
      cpu = true;
    } else if (absl::StartsWith(d, "cuda:") &&
               absl::SimpleAtoi(absl::string_view(d).substr(5), &index)) {
      gpu = true;
      if (std::find(group->gpus().begin(), group->gpus().end(), index) ==
          group->gpus().end()) {
        group->add_gpus(index);
      }
    } else {
      return false;
    }
  }
  if (cpu == gpu) return false;  // both, or no instances
  group->set_kind(cpu ? inference::ModelInstanceGroup::KIND_CPU
                      : inference::ModelInstanceGroup::KIND_GPU);
  if (cpu) group->clear_gpus();
  return true;
}

void SetDuration(const InferenceStatistics::Duration& d,
                 inference::StatisticDuration* out) {
  out->set_count(d.count);
  out->set_ns(d.ns);
}

}  // namespace

void FillModelConfig(const config::ModelConfig& config, const ModelIo& io,
                     bool has_labels, absl::Span<const std::string> devices,
                     inference::ModelConfig* out) {
  out->set_name(config.name());
  out->set_platform(config.backend());
  out->set_backend(config.backend());
  // The highest version directory is served.
  const config::ModelVersionPolicy& policy = config.version_policy();
  inference::ModelVersionPolicy* served = out->mutable_version_policy();
  if (policy.has_all()) {
    served->mutable_all();
  } else if (policy.has_specific()) {
    served->mutable_specific()->mutable_versions()->CopyFrom(policy.specific().versions());
  } else {
    served->mutable_latest()->set_num_versions(
        policy.has_latest() ? policy.latest().num_versions() : 1);
  }
  out->set_max_batch_size(config.max_batch_size());

  inference::ModelInput* input = out->add_input();
  input->set_name(std::string(io.input_name));
  input->set_data_type(inference::TYPE_FP32);
  for (int64_t d : InputDims(io.spec.input)) input->add_dims(d);
  for (absl::string_view name : ListedOutputs(io)) {
    inference::ModelOutput* output = out->add_output();
    output->set_name(std::string(name));
    output->set_data_type(inference::TYPE_FP32);
    output->add_dims(io.spec.num_classes);
    if (has_labels) output->set_label_filename("labels.txt");
  }

  int instances = 0;
  for (const config::ModelInstanceGroup& g : config.instance_group()) {
    instances += g.count();
  }
  const bool resolve = instances == static_cast<int>(devices.size());
  size_t first = 0;
  for (int i = 0; i < config.instance_group_size(); ++i) {
    const config::ModelInstanceGroup& g = config.instance_group(i);
    inference::ModelInstanceGroup* group = out->add_instance_group();
    group->set_name(absl::StrCat(config.name(), "_", i));
    group->set_count(g.count());
    if (!resolve || !LoadedKind(devices.subspan(first, g.count()), group)) {
      // Same numbers in both enums.
      group->set_kind(static_cast<inference::ModelInstanceGroup::Kind>(g.kind()));
      group->mutable_gpus()->CopyFrom(g.gpus());
    }
    first += g.count();
  }

  const config::ModelDynamicBatching& b = config.dynamic_batching();
  inference::ModelDynamicBatching* batching = out->mutable_dynamic_batching();
  batching->mutable_preferred_batch_size()->CopyFrom(b.preferred_batch_size());
  batching->set_max_queue_delay_microseconds(b.max_queue_delay_microseconds());
  batching->set_priority_levels(b.priority_levels());
  batching->set_default_priority_level(b.default_priority_level());
  inference::ModelQueuePolicy* queue = batching->mutable_default_queue_policy();
  // An expired request is answered DEADLINE_EXCEEDED without running; a
  // request's own "timeout" parameter overrides the default.
  queue->set_timeout_action(inference::ModelQueuePolicy::REJECT);
  queue->set_default_timeout_microseconds(b.default_timeout_microseconds());
  queue->set_allow_timeout_override(true);
  queue->set_max_queue_size(static_cast<uint32_t>(
      std::min<uint64_t>(b.max_queue_size(), std::numeric_limits<uint32_t>::max())));

  for (const auto& [key, value] : config.parameters()) {
    (*out->mutable_parameters())[key].set_string_value(value.string_value());
  }
}

void FillModelStatistics(const InferenceStatistics::Snapshot& stats,
                         inference::ModelStatistics* out) {
  out->set_last_inference(stats.last_inference_ms);
  out->set_inference_count(stats.inference_count);
  out->set_execution_count(stats.execution_count);
  inference::InferStatistics* infer = out->mutable_inference_stats();
  SetDuration(stats.success, infer->mutable_success());
  SetDuration(stats.fail, infer->mutable_fail());
  SetDuration(stats.queue, infer->mutable_queue());
  SetDuration(stats.compute_input, infer->mutable_compute_input());
  SetDuration(stats.compute_infer, infer->mutable_compute_infer());
  SetDuration(stats.compute_output, infer->mutable_compute_output());
  for (const InferenceStatistics::BatchSize& b : stats.batch_sizes) {
    inference::InferBatchStatistics* batch = out->add_batch_stats();
    batch->set_batch_size(b.batch_size);
    SetDuration(b.compute_input, batch->mutable_compute_input());
    SetDuration(b.compute_infer, batch->mutable_compute_infer());
    SetDuration(b.compute_output, batch->mutable_compute_output());
  }
}

}  // namespace clipserve::server::kserve
