#include "server/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace clipserve::server {
namespace {

using config::ModelConfig;

// Collects the first error the text parser reports, with its position.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error_.empty()) {
      // The parser counts from zero; editors count from one.
      error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
    }
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status FieldError(const std::string& path, absl::string_view field,
                        absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, ": ", what));
}

bool ParseDevice(const std::string& device) {
  if (device == "cpu") return true;
  if (device.rfind("cuda:", 0) != 0) return false;
  int index = 0;
  return absl::SimpleAtoi(device.substr(5), &index) && index >= 0;
}

// A parameter's value, or "" when the config does not set it.
std::string Parameter(const ModelConfig& config, const std::string& key) {
  auto it = config.parameters().find(key);
  return it == config.parameters().end() ? std::string()
                                         : it->second.string_value();
}

// version_policy (absent: latest 1) and version_labels. Whether a label's
// version is served depends on the directories: see
// lifecycle/repository_scan.h.
absl::Status ValidateVersions(ModelConfig* config, const std::string& path) {
  config::ModelVersionPolicy* policy = config->mutable_version_policy();
  switch (policy->policy_choice_case()) {
    case config::ModelVersionPolicy::POLICY_CHOICE_NOT_SET:
      policy->mutable_latest()->set_num_versions(1);
      break;
    case config::ModelVersionPolicy::kLatest:
      if (policy->latest().num_versions() < 1) {
        return FieldError(path, "version_policy.latest.num_versions",
                          "must be at least 1");
      }
      break;
    case config::ModelVersionPolicy::kAll:
      break;
    case config::ModelVersionPolicy::kSpecific: {
      const auto& versions = policy->specific().versions();
      if (versions.empty()) {
        return FieldError(path, "version_policy.specific.versions",
                          "lists no version");
      }
      for (int i = 0; i < versions.size(); ++i) {
        if (versions[i] < 0) {
          return FieldError(path, "version_policy.specific.versions",
                            absl::StrCat(versions[i], " is negative"));
        }
        for (int j = 0; j < i; ++j) {
          if (versions[j] == versions[i]) {
            return FieldError(path, "version_policy.specific.versions",
                              absl::StrCat(versions[i], " is listed twice"));
          }
        }
      }
      break;
    }
  }
  for (const auto& [label, version] : config->version_labels()) {
    int64_t number = 0;
    const bool ok_chars =
        !label.empty() && label.size() <= 64 &&
        std::all_of(label.begin(), label.end(), [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                 c == '-' || c == '.';
        });
    if (!ok_chars || absl::SimpleAtoi(label, &number)) {
      return FieldError(
          path, "version_labels",
          absl::StrCat("label \"", label,
                       "\" must be 1 to 64 letters, digits, '_', '-' or '.', "
                       "and not a number (numbers are versions)"));
    }
    if (version < 0) {
      return FieldError(path, absl::StrCat("version_labels[", label, "]"),
                        absl::StrCat("version ", version, " is negative"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> ParseBuckets(const std::string& text,
                                                  int64_t max_batch_size) {
  if (text == "auto") return runtime::PowerOfTwoBuckets(max_batch_size);
  if (text == "none") return std::vector<int64_t>{};
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t b = 0;
    if (!absl::SimpleAtoi(part, &b) || b < 1 || b > max_batch_size ||
        (!out.empty() && b <= out.back())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "must be \"auto\", \"none\" or ascending batch sizes in "
          "1..max_batch_size (",
          max_batch_size, ") separated by commas, got \"", text, "\""));
    }
    out.push_back(b);
  }
  if (out.back() != max_batch_size) out.push_back(max_batch_size);
  return out;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text,
                                             const std::string& path) {
  ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", errors.error()));
  }
  return config;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path,
                                            const std::string& dir_name) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text.str(), path);
  if (!config.ok()) return config.status();
  if (absl::Status s = ValidateModelConfig(&*config, path, dir_name); !s.ok()) {
    return s;
  }
  return config;
}

absl::Status ValidateModelConfig(ModelConfig* config, const std::string& path,
                                 const std::string& dir_name) {
  if (config->name().empty()) config->set_name(dir_name);
  if (config->name() != dir_name) {
    return FieldError(path, "name",
                      absl::StrCat("\"", config->name(),
                                   "\" differs from the model's directory \"",
                                   dir_name, "\""));
  }
  const bool i3d = config->backend() == kI3dBackend;
  if (config->backend() != kTorchScriptBackend && !i3d) {
    return FieldError(path, "backend",
                      absl::StrCat("unknown backend \"", config->backend(),
                                   "\" (known: ", kTorchScriptBackend, ", ",
                                   kI3dBackend, ")"));
  }
  if (config->max_batch_size() < 1) {
    return FieldError(path, "max_batch_size",
                      absl::StrCat("must be at least 1, got ",
                                   config->max_batch_size()));
  }

  if (config->input_size() != 1) {
    return FieldError(path, "input",
                      absl::StrCat("exactly one input is supported, got ",
                                   config->input_size()));
  }
  const config::ModelInput& input = config->input(0);
  if (input.name().empty()) return FieldError(path, "input.name", "is empty");
  if (input.data_type() != config::TYPE_FP32) {
    return FieldError(path, "input.data_type",
                      absl::StrCat("must be TYPE_FP32 (what the model consumes),"
                                   " got ",
                                   config::DataType_Name(input.data_type())));
  }
  if (input.dims_size() != 4) {
    return FieldError(path, "input.dims",
                      absl::StrCat("must be [C, T, H, W], got ",
                                   input.dims_size(), " dims"));
  }
  // RGB; the I3D backend also takes 2-channel optical flow.
  if (input.dims(0) != 3 && !(i3d && input.dims(0) == 2)) {
    return FieldError(
        path, "input.dims",
        absl::StrCat("channels (dims[0]) must be 3",
                     i3d ? " (RGB) or 2 (optical flow)" : "", ", got ",
                     input.dims(0)));
  }
  for (int i = 1; i < 4; ++i) {
    const int64_t d = input.dims(i);
    if (d == 0 || d < -1 || d > 65535) {
      return FieldError(path, "input.dims",
                        absl::StrCat("dims[", i, "] must be in 1..65535 or -1,"
                                     " got ",
                                     d));
    }
  }

  if (config->output_size() != 1) {
    return FieldError(path, "output",
                      absl::StrCat("exactly one output is supported, got ",
                                   config->output_size()));
  }
  const config::ModelOutput& output = config->output(0);
  if (output.name().empty()) return FieldError(path, "output.name", "is empty");
  if (output.data_type() != config::TYPE_FP32) {
    return FieldError(path, "output.data_type",
                      absl::StrCat("must be TYPE_FP32, got ",
                                   config::DataType_Name(output.data_type())));
  }
  if (output.dims_size() != 1 || output.dims(0) < 1) {
    return FieldError(path, "output.dims",
                      "must be [num_classes] with num_classes >= 1");
  }

  if (config->instance_group_size() == 0) {
    config::ModelInstanceGroup* group = config->add_instance_group();
    group->set_count(1);
    group->set_kind(config::ModelInstanceGroup::KIND_CPU);
  }
  for (config::ModelInstanceGroup& group : *config->mutable_instance_group()) {
    if (group.count() == 0) group.set_count(1);
    if (group.count() < 0 || group.count() > 64) {
      return FieldError(path, "instance_group.count",
                        absl::StrCat("must be in 1..64, got ", group.count()));
    }
    for (int gpu : group.gpus()) {
      if (gpu < 0) {
        return FieldError(path, "instance_group.gpus",
                          absl::StrCat("must not be negative, got ", gpu));
      }
    }
  }

  config::ModelDynamicBatching* batching = config->mutable_dynamic_batching();
  if (batching->max_queue_size() == 0) {
    batching->set_max_queue_size(kDefaultMaxQueueSize);
  }
  for (int p : batching->preferred_batch_size()) {
    if (p < 1 || p > config->max_batch_size()) {
      return FieldError(
          path, "dynamic_batching.preferred_batch_size",
          absl::StrCat(p, " is outside 1..max_batch_size (",
                       config->max_batch_size(), ")"));
    }
  }
  if (batching->priority_levels() == 0) {
    batching->set_priority_levels(kDefaultPriorityLevels);
  }
  if (batching->priority_levels() > kMaxPriorityLevels) {
    return FieldError(path, "dynamic_batching.priority_levels",
                      absl::StrCat(batching->priority_levels(), " is over ",
                                   kMaxPriorityLevels));
  }
  if (batching->default_priority_level() == 0) {
    batching->set_default_priority_level((batching->priority_levels() + 1) / 2);
  }
  if (batching->default_priority_level() > batching->priority_levels()) {
    return FieldError(path, "dynamic_batching.default_priority_level",
                      absl::StrCat(batching->default_priority_level(),
                                   " is outside 1..priority_levels (",
                                   batching->priority_levels(), ")"));
  }
  // An hour: beyond that a delay is surely a units mistake.
  constexpr uint64_t kMaxDelayMicros = 3600ull * 1000 * 1000;
  if (batching->max_queue_delay_microseconds() > kMaxDelayMicros) {
    return FieldError(path, "dynamic_batching.max_queue_delay_microseconds",
                      "is over an hour");
  }
  if (absl::Status s = ValidateVersions(config, path); !s.ok()) return s;

  for (const auto& [key, value] : config->parameters()) {
    const std::string& v = value.string_value();
    if (key == "intra_op_threads") {
      int threads = 0;
      if (!absl::SimpleAtoi(v, &threads) || threads < 0 || threads > 1024) {
        return FieldError(path, "parameters[intra_op_threads]",
                          absl::StrCat("must be an integer in 0..1024, got \"",
                                       v, "\""));
      }
    } else if (key == "device") {
      if (!ParseDevice(v)) {
        return FieldError(path, "parameters[device]",
                          absl::StrCat("must be \"cpu\" or \"cuda:N\", got \"",
                                       v, "\""));
      }
    } else if (key == "precision") {
      if (absl::StatusOr<runtime::Precision> p = runtime::ParsePrecision(v);
          !p.ok()) {
        return FieldError(path, "parameters[precision]", p.status().message());
      }
    } else if (key == "cuda_graphs") {
      if (v != "true" && v != "false") {
        return FieldError(path, "parameters[cuda_graphs]",
                          absl::StrCat("must be \"true\" or \"false\", got \"",
                                       v, "\""));
      }
    } else if (key == "batch_buckets") {
      if (absl::StatusOr<std::vector<int64_t>> b =
              ParseBuckets(v, config->max_batch_size());
          !b.ok()) {
        return FieldError(path, "parameters[batch_buckets]",
                          b.status().message());
      }
    } else {
      return FieldError(
          path, "parameters",
          absl::StrCat("unknown key \"", key,
                       "\" (known: intra_op_threads, device, precision, "
                       "batch_buckets, cuda_graphs)"));
    }
  }
  if (Parameter(*config, "cuda_graphs") == "true") {
    for (int64_t d : config->input(0).dims()) {
      if (d < 0) {
        return FieldError(path, "parameters[cuda_graphs]",
                          "needs a fixed input shape (no -1 in input.dims)");
      }
    }
    if (Parameter(*config, "batch_buckets") == "none") {
      return FieldError(path, "parameters[cuda_graphs]",
                        "needs batch buckets (one graph per bucket), but "
                        "batch_buckets is \"none\"");
    }
  }
  return absl::OkStatus();
}

runtime::ModelSpec SpecFromConfig(const ModelConfig& config) {
  runtime::ModelSpec spec;
  const config::ModelInput& input = config.input(0);
  spec.input.channels = input.dims(0);
  spec.input.frames = input.dims(1);
  spec.input.height = input.dims(2);
  spec.input.width = input.dims(3);
  spec.num_classes = config.output(0).dims(0);
  return spec;
}

batching::BatchQueueOptions QueueOptionsFromConfig(const ModelConfig& config) {
  batching::BatchQueueOptions options;
  options.max_batch_size = config.max_batch_size();
  const config::ModelDynamicBatching& b = config.dynamic_batching();
  options.preferred_batch_sizes.assign(b.preferred_batch_size().begin(),
                                       b.preferred_batch_size().end());
  options.max_queue_delay =
      std::chrono::microseconds(b.max_queue_delay_microseconds());
  options.max_queue_size =
      b.max_queue_size() == 0 ? kDefaultMaxQueueSize : b.max_queue_size();
  return options;
}

absl::StatusOr<std::vector<runtime::BackendOptions>> InstanceOptionsFromConfig(
    const ModelConfig& config, int cuda_devices, int cpu_cores) {
  const std::string forced_device = Parameter(config, "device");
  int threads = 0;
  (void)absl::SimpleAtoi(Parameter(config, "intra_op_threads"), &threads);
  runtime::BackendOptions base;
  base.max_batch_size = config.max_batch_size();
  if (const std::string p = Parameter(config, "precision"); !p.empty()) {
    absl::StatusOr<runtime::Precision> precision = runtime::ParsePrecision(p);
    if (!precision.ok()) return precision.status();
    base.precision = *precision;
  }
  base.cuda_graphs = Parameter(config, "cuda_graphs") == "true";
  const std::string buckets = Parameter(config, "batch_buckets");

  std::vector<runtime::BackendOptions> instances;
  const auto add = [&](const std::string& device) {
    runtime::BackendOptions options = base;
    options.device = device;
    instances.push_back(std::move(options));
  };
  for (int g = 0; g < config.instance_group_size(); ++g) {
    const config::ModelInstanceGroup& group = config.instance_group(g);
    const bool gpu =
        forced_device.empty()
            ? group.kind() == config::ModelInstanceGroup::KIND_GPU ||
                  (group.kind() == config::ModelInstanceGroup::KIND_AUTO &&
                   cuda_devices > 0)
            : forced_device != "cpu";
    if (!gpu) {
      for (int i = 0; i < group.count(); ++i) add("cpu");
      continue;
    }
    if (!forced_device.empty()) {
      for (int i = 0; i < group.count(); ++i) add(forced_device);
      continue;
    }
    if (cuda_devices == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "instance_group[", g,
          "] is KIND_GPU but no CUDA device is visible (no GPU, no driver, "
          "CUDA_VISIBLE_DEVICES empty, or clipserve built without CUDA); use "
          "KIND_CPU or KIND_AUTO to run on the CPU"));
    }
    // As Triton: `count` instances on each listed GPU, all GPUs if none.
    std::vector<int> gpus(group.gpus().begin(), group.gpus().end());
    if (gpus.empty()) {
      for (int d = 0; d < cuda_devices; ++d) gpus.push_back(d);
    }
    for (int d : gpus) {
      if (d >= cuda_devices) {
        return absl::FailedPreconditionError(absl::StrCat(
            "instance_group[", g, "] lists GPU ", d, " but only ",
            cuda_devices, " CUDA device(s) are visible (0..",
            cuda_devices - 1, ")"));
      }
      for (int i = 0; i < group.count(); ++i) add(absl::StrCat("cuda:", d));
    }
  }
  // By default the CPU instances share the cores evenly.
  int cpu_instances = 0;
  for (const auto& o : instances) cpu_instances += o.device == "cpu";
  for (auto& o : instances) {
    const bool cpu = o.device == "cpu";
    if (threads > 0) {
      o.intra_op_threads = threads;
    } else if (cpu) {
      o.intra_op_threads = std::max(1, cpu_cores / std::max(1, cpu_instances));
    }
    // Buckets: on a GPU by default (every size the batcher forms then has
    // its cuDNN algorithms picked at load, or its CUDA graph); on the CPU
    // only when asked, since padding costs compute there.
    if (buckets == "none" || (buckets.empty() && cpu && !o.cuda_graphs)) {
      o.batch_buckets.clear();
    } else if (buckets.empty() || buckets == "auto") {
      o.batch_buckets = runtime::PowerOfTwoBuckets(config.max_batch_size());
    } else {
      absl::StatusOr<std::vector<int64_t>> b =
          ParseBuckets(buckets, config.max_batch_size());
      if (!b.ok()) return b.status();
      o.batch_buckets = *std::move(b);
    }
    // Warm up the sizes the batcher forms: every bucket, else 1 and the
    // largest.
    if (!o.batch_buckets.empty()) {
      o.warmup_batch_sizes = o.batch_buckets;
    } else {
      o.warmup_batch_sizes = {1};
      if (config.max_batch_size() > 1) {
        o.warmup_batch_sizes.push_back(config.max_batch_size());
      }
    }
  }
  return instances;
}

}  // namespace clipserve::server
