// clipserve-perf: throughput and latency of a clipserve server under load.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/channel.h"
#include "client/clips.h"
#include "client/flags.h"
#include "client/perf.h"
#include "client/perf_report.h"
#include "client/perf_stream.h"
#include "client/perf_stream_report.h"
#include "client/perf_target.h"
#include "client/av_stream.h"

namespace {

using namespace clipserve::client;

constexpr const char* kUsage = R"(Usage: clipserve-perf [flags]
       clipserve-perf --streams N [stream flags]
       clipserve-perf --find-max-streams [stream flags]

Load on a clipserve server, in steps; each step runs a warm-up, then a
measurement window, then waits (up to --drain-seconds) for the window's
requests to finish. Per step it reports throughput, client latency
percentiles, errors by status code, the server's own queue/compute (and
decode) split and the batch sizes it reports.

  Closed loop (--concurrency): that many calls always in flight, each
    followed at once by the next.
  Open loop (--request-rate): Poisson arrivals at that many requests per
    second (seeded), sent asynchronously whatever the server does; arrivals
    while --max-outstanding calls are in flight are dropped and counted.

Latency, errors, the server split and batch sizes describe the requests sent
inside the window (whenever they finish); throughput counts the OK responses
received inside the window, over its length.

Flags:
  --server HOST:PORT     Server address (default localhost:8001).
  --ssl                  TLS, verifying the server against the system's roots.
  --ssl-ca FILE          TLS, verifying the server against this PEM CA.
  --ssl-cert FILE --ssl-key FILE
                         Mutual TLS: this client's PEM certificate and key.
  --model NAME           Model (default: the server's default model; needed
                         with --protocol kserve).
  --model-version V      Version (default: the loaded one).
  --protocol P           clipserve (its own API, Classify; default) or kserve
                         (the Open Inference Protocol, ModelInfer).
 Load:
  --concurrency LIST     Closed loop: comma-separated levels (default 1,2,4,8).
  --request-rate LIST    Open loop: comma-separated rates, requests/s
                         (e.g. 5,10,20); not with --concurrency.
  --max-outstanding N    Open loop: most calls in flight (default 1024).
  --seed N               Open loop: arrival seed, + step index (default 1);
                         also seeds the random clips.
  --warmup-seconds S     Per step, not measured (default 2).
  --window-seconds S     Per step, measured (default 10).
  --drain-seconds S      Per step, most wait for the window's calls after it
                         (default 10); those left are cancelled, "unfinished".
  --timeout-ms MS        Per-call deadline (default: none).
 Payload:
  --payload tensor|video Random clips (default), or --video's file sent
                         encoded for the server to decode (clipserve only).
  --video FILE           The video (implies --payload video).
  --dtype uint8|fp32     Clip type (default uint8): uint8 [T, H, W, 3] frames
                         or fp32 [3, T, H, W].
  --frames N --height N --width N
                         Clip shape (default: the model's).
  --batch B              Clips per request (kserve only; default 1).
  --kserve-contents raw|typed
                         KServe input in raw_input_contents (default) or in
                         typed contents (uint_contents / fp32_contents).
  --kserve-outputs LIST  Outputs to request, e.g. logits (default: all).
 Live streams (ClassifyStream; --server, --ssl*, --model, --model-version,
 --drain-seconds, --json and --csv as above):
  --streams N            Simulate N cameras: each pushes a pre-encoded H.264
                         stream (a synthetic moving pattern, 2 s looped,
                         libx264 ultrafast/zerolatency, no B-frames), one
                         access unit per message at --stream-fps, starts
                         staggered over one frame interval.
  --stream-fps F         Frames per second (default 25).
  --stream-size WxH      Frame size (default 1920x1080).
  --stream-seconds S     Length of a run (default 20).
  --stream-window N      Frames per window (default: the model's T).
  --stream-stride N      Frames between windows (default: the window).
  --stream-channels C    gRPC connections, streams spread over them
                         (default min(N, 4)).
  --stream-pull          The server pulls instead: the stream is written to
                         an MPEG-TS file and each stream opens it as a file://
                         URL at replay speed 1 (the server must run on this
                         host with --stream-source-prefix covering the file).
  --stream-pull-dir DIR  Where that file goes (default $TMPDIR or /tmp).
  --latency-budget-ms MS p99 of the server-measured window latency a run
                         must stay within to pass (default 200).
  --find-max-streams     Runs 1, 2, 4, ... streams while a run passes (every
                         stream ends OK, no window dropped, p99 within the
                         budget), then bisects; reports the most streams that
                         passed. --streams caps the search (default 1024).
 Output:
  --json FILE            The run and its steps as JSON.
  --csv FILE             One row per step, with a header row.
A table goes to stdout; on a terminal, a live progress line to stderr.
Exit status: 0 when some request succeeded, 1 when none did, 64 on usage.
With --streams: 0 when every stream ended OK with windows answered; with
--find-max-streams: 0 when some run answered windows.
)";

std::vector<double> RateList(const FlagReader& flags) {
  std::vector<double> out;
  const std::string text = flags.String("request-rate", "");
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(part, &v) || !(v > 0) || v > 1e6) {
      flags.Fail(absl::StrCat("--request-rate must list rates in (0, 1e6], got \"",
                              text, "\""));
    }
    out.push_back(v);
  }
  return out;
}

std::chrono::milliseconds Millis(const FlagReader& flags, const std::string& name,
                                 double dflt_seconds) {
  return std::chrono::milliseconds(
      static_cast<int64_t>(flags.Double(name, dflt_seconds) * 1000));
}

// Falls back to the flags when the model takes any size.
int64_t Dim(int64_t from_model, int64_t fallback) {
  return from_model > 0 ? from_model : fallback;
}

// Writes `text` to `path`; false, with a message, when it cannot.
bool WriteReport(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (out.flush()) return true;
  std::fprintf(stderr, "error: cannot write %s\n", path.c_str());
  return false;
}

// "1920x1080" -> width, height.
bool ParseSize(const std::string& text, int* width, int* height) {
  std::vector<std::string> parts = absl::StrSplit(text, 'x');
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], width) &&
         absl::SimpleAtoi(parts[1], height);
}

int RunStreamsMode(const FlagReader& flags) {
  for (const char* f : {"concurrency", "request-rate", "protocol", "payload", "video", "dtype",
                        "frames", "height", "width", "batch", "kserve-contents",
                        "kserve-outputs", "warmup-seconds", "window-seconds", "max-outstanding",
                        "timeout-ms"}) {
    if (flags.Has(f)) flags.Fail(absl::StrCat("--", f, " is not for --streams runs"));
  }
  const bool find_max = flags.Has("find-max-streams");
  const int streams = static_cast<int>(flags.Int("streams", find_max ? 1024 : 1, 1, 100000));
  const double fps = flags.Double("stream-fps", 25);
  if (!(fps > 0) || fps > 1000) flags.Fail("--stream-fps must be in (0, 1000]");
  int width = 0, height = 0;
  const std::string size = flags.String("stream-size", "1920x1080");
  if (!ParseSize(size, &width, &height) || width < 16 || height < 16 || width % 2 != 0 ||
      height % 2 != 0 || width > 8192 || height > 8192) {
    flags.Fail(absl::StrCat("--stream-size must be WxH, even, 16..8192, got \"", size, "\""));
  }
  const double seconds = flags.Double("stream-seconds", 20);
  if (seconds * fps < 1) flags.Fail("--stream-seconds must cover at least one frame");
  const double budget_ms = flags.Double("latency-budget-ms", 200);
  const bool pull = flags.Has("stream-pull");
  const int channels_flag = static_cast<int>(flags.Int("stream-channels", 0, 1, 1024));

  auto channel_options = ChannelOptionsFromFlags(flags);
  auto first_channel = MakeChannelFromFlags(flags);
  std::string model = flags.String("model", "");
  std::string version = flags.String("model-version", "");
  int window = static_cast<int>(flags.Int("stream-window", 0, 0, 1 << 20));
  clipserve::v1::ModelMetadataResponse metadata;
  const grpc::Status meta = FetchModelMetadata(first_channel, model, &metadata);
  if (meta.ok()) {
    model = metadata.model_name();
    if (version.empty()) version = metadata.model_version();
    if (!flags.Has("stream-window")) window = static_cast<int>(ModelDim(metadata, 1, 0));
  } else {
    std::fprintf(stderr, "warning: model metadata: %s: %s; the server picks the window\n",
                 StatusCodeName(meta.error_code()).c_str(), meta.error_message().c_str());
  }
  const int stride = static_cast<int>(flags.Int("stream-stride", window, 0, 1 << 20));

  // The content, encoded once.
  TestStreamOptions encode;
  encode.width = width;
  encode.height = height;
  encode.fps = fps;
  encode.gop = std::max(1, static_cast<int>(std::lround(fps)));
  encode.frames = 2 * encode.gop;
  std::fprintf(stderr, "encoding the test stream (%d frames, %dx%d)...\n", encode.frames,
               width, height);
  absl::StatusOr<std::vector<std::string>> units = EncodeTestStream(encode);
  if (!units.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(units.status().message()).c_str());
    return 1;
  }
  std::vector<clipserve::v1::StreamRequest> messages(units->size());
  int64_t stream_bytes = 0;
  for (size_t i = 0; i < units->size(); ++i) {
    stream_bytes += static_cast<int64_t>((*units)[i].size());
    messages[i].set_data((*units)[i]);  // once; pull mode writes the units too
  }

  StreamRunInfo run;
  run.started = std::chrono::system_clock::now();
  run.server = flags.String("server", "localhost:8001");
  run.model = model;
  run.model_version = version;
  run.pull = pull;
  run.width = width;
  run.height = height;
  run.fps = fps;
  run.seconds = seconds;
  run.window_frames = window;
  run.stride_frames = stride;
  run.latency_budget_ms = budget_ms;
  run.test_stream_frames = encode.frames;
  run.test_stream_bytes = stream_bytes;

  StreamRunOptions options;
  options.fps = fps;
  options.seconds = seconds;
  options.drain = Millis(flags, "drain-seconds", 10);
  options.open.set_model_name(model);
  options.open.set_model_version(flags.String("model-version", ""));
  options.open.set_window_frames(window);
  options.open.set_stride_frames(stride);
  options.open.set_top_k(1);
  std::string pull_file;
  if (pull) {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = flags.String("stream-pull-dir", tmp != nullptr && *tmp ? tmp : "/tmp");
    std::string templ = absl::StrCat(dir, "/clipserve-perf-XXXXXX");
    if (mkdtemp(templ.data()) == nullptr) flags.Fail(absl::StrCat("cannot create a directory in ", dir));
    char* real = realpath(templ.c_str(), nullptr);
    pull_file = absl::StrCat(real != nullptr ? real : templ.c_str(), "/stream.ts");
    std::free(real);
    const absl::Status written = WriteMpegTsFile(*units, width, height, fps,
                                                 std::llround(fps * seconds), pull_file);
    if (!written.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(written.message()).c_str());
      std::remove(pull_file.c_str());
      std::remove(pull_file.substr(0, pull_file.rfind('/')).c_str());
      return 1;
    }
    options.source_url = absl::StrCat("file://", pull_file);
    run.source_url = options.source_url;
  } else {
    options.units = &messages;
  }

  // Channels for a run of n streams.
  auto make_channels = [&](int n) {
    const int count = std::min(n, channels_flag > 0 ? channels_flag : 4);
    std::vector<std::shared_ptr<grpc::Channel>> out;
    for (int i = 0; i < count; ++i) {
      ChannelOptions o = channel_options;
      o.own_connection = count > 1;
      absl::StatusOr<std::shared_ptr<grpc::Channel>> c = MakeChannel(o);
      if (!c.ok()) flags.Fail(std::string(c.status().message()));
      out.push_back(*std::move(c));
    }
    return out;
  };
  // --find-max-streams: the most; each run uses min(N, this).
  run.channels = find_max ? (channels_flag > 0 ? channels_flag : 4)
                          : std::min(streams, channels_flag > 0 ? channels_flag : 4);

  std::fputs(StreamPreamble(run).c_str(), stdout);
  std::vector<StreamRunRecord> records;
  std::optional<int> max_streams;
  auto one_run = [&](int n) {
    options.streams = n;
    StreamRunRecord record;
    record.result = RunStreams(make_channels(n), options);
    record.passed = WithinBudget(record.result.overall, budget_ms * 1000);
    records.push_back(std::move(record));
    return records.back();
  };
  if (find_max) {
    std::fputs(StreamTableHeader("streams", true).c_str(), stdout);
    std::fflush(stdout);
    StreamSearch search = FindMaxStreams(
        [&](int n) {
          const StreamRunRecord& r = one_run(n);
          std::fputs(StreamTableRow(absl::StrCat(n), r.result.overall, pull,
                                    r.passed ? "pass" : "fail").c_str(), stdout);
          std::fflush(stdout);
          return r.passed;
        },
        streams);
    max_streams = search.max_streams;
    std::printf("max streams within budget: %d\n", search.max_streams);
  } else {
    std::fputs(StreamTableHeader("stream", false).c_str(), stdout);
    std::fflush(stdout);
    const StreamRunRecord& r = one_run(streams);
    for (size_t i = 0; i < r.result.per_stream.size(); ++i) {
      std::fputs(StreamTableRow(absl::StrCat(i), Summarise({&r.result.per_stream[i]}, fps),
                                pull, "").c_str(), stdout);
    }
    std::fputs(StreamTableRow("all", r.result.overall, pull, "").c_str(), stdout);
    for (size_t i = 0; i < r.result.per_stream.size(); ++i) {
      const StreamStats& st = r.result.per_stream[i];
      if (st.code != "OK") {
        std::fprintf(stderr, "stream %zu: %s: %s\n", i, st.code.c_str(), st.message.c_str());
      }
    }
  }
  run.finished = std::chrono::system_clock::now();
  if (!pull_file.empty()) {
    std::remove(pull_file.c_str());
    std::remove(pull_file.substr(0, pull_file.rfind('/')).c_str());
  }

  int status = 0;
  if (flags.Has("json") &&
      !WriteReport(flags.String("json", ""), StreamReportJson(run, records, max_streams))) {
    status = 1;
  }
  if (flags.Has("csv") && !WriteReport(flags.String("csv", ""), StreamReportCsv(records))) {
    status = 1;
  }
  if (find_max) {
    bool any = false;
    for (const StreamRunRecord& r : records) any |= r.result.overall.windows > 0;
    if (!any) {
      std::fprintf(stderr, "error: no run answered a window\n");
      status = 1;
    }
  } else if (records.back().result.overall.failed() > 0 ||
             records.back().result.overall.windows == 0) {
    std::fprintf(stderr, "error: %lld of %d streams did not end OK, %lld windows answered\n",
                 static_cast<long long>(records.back().result.overall.failed()), streams,
                 static_cast<long long>(records.back().result.overall.windows));
    status = 1;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> known = {
      "model", "model-version", "protocol", "concurrency", "request-rate",
      "max-outstanding", "seed", "warmup-seconds", "window-seconds",
      "drain-seconds", "timeout-ms", "payload", "video", "dtype", "frames",
      "height", "width", "batch", "kserve-contents", "kserve-outputs", "json",
      "csv", "streams", "stream-fps", "stream-size", "stream-seconds", "stream-window",
      "stream-stride", "stream-channels", "stream-pull-dir", "latency-budget-ms"};
  known.insert(known.end(), kChannelFlags.begin(), kChannelFlags.end());
  std::vector<std::string> switches = {"stream-pull", "find-max-streams"};
  switches.insert(switches.end(), kChannelSwitches.begin(), kChannelSwitches.end());
  FlagReader flags(argc, argv, kUsage, known, switches);
  if (flags.Has("streams") || flags.Has("find-max-streams")) return RunStreamsMode(flags);
  for (const char* f : {"stream-fps", "stream-size", "stream-seconds", "stream-window",
                        "stream-stride", "stream-channels", "stream-pull", "stream-pull-dir",
                        "latency-budget-ms"}) {
    if (flags.Has(f)) flags.Fail(absl::StrCat("--", f, " needs --streams or --find-max-streams"));
  }

  // What to send.
  const std::string protocol = flags.String("protocol", "clipserve");
  if (protocol != "clipserve" && protocol != "kserve") {
    flags.Fail("--protocol must be clipserve or kserve");
  }
  const bool kserve = protocol == "kserve";
  const std::string payload =
      flags.String("payload", flags.Has("video") ? "video" : "tensor");
  if (payload != "tensor" && payload != "video") {
    flags.Fail("--payload must be tensor or video");
  }
  const bool video = payload == "video";
  if (video && kserve) {
    flags.Fail(
        "--payload video needs --protocol clipserve: the Open Inference "
        "Protocol has no encoded-video input (decode the frames and send them "
        "as --payload tensor)");
  }
  if (video && !flags.Has("video")) flags.Fail("--payload video needs --video FILE");
  if (!video && flags.Has("video")) flags.Fail("--video needs --payload video");
  if (video) {
    for (const char* f : {"dtype", "frames", "height", "width"}) {
      if (flags.Has(f)) flags.Fail(absl::StrCat("--", f, " is for tensor payloads"));
    }
  }
  const int batch = static_cast<int>(flags.Int("batch", 1, 1, 4096));
  if (!kserve && batch != 1) {
    flags.Fail("--batch needs --protocol kserve: clipserve's Classify takes one clip");
  }
  if (!kserve && (flags.Has("kserve-contents") || flags.Has("kserve-outputs"))) {
    flags.Fail("--kserve-contents and --kserve-outputs need --protocol kserve");
  }
  const std::string contents = flags.String("kserve-contents", "raw");
  if (contents != "raw" && contents != "typed") {
    flags.Fail("--kserve-contents must be raw or typed");
  }
  const std::string dtype = flags.String("dtype", "uint8");
  if (dtype != "uint8" && dtype != "fp32") flags.Fail("--dtype must be uint8 or fp32");
  std::string model = flags.String("model", "");
  const std::string version = flags.String("model-version", "");
  if (kserve && model.empty()) flags.Fail("--protocol kserve needs --model");

  // How to load.
  if (flags.Has("concurrency") && flags.Has("request-rate")) {
    flags.Fail("give --concurrency or --request-rate, not both");
  }
  StepOptions options;
  options.mode = flags.Has("request-rate") ? LoadMode::kRequestRate
                                           : LoadMode::kConcurrency;
  options.warmup = Millis(flags, "warmup-seconds", 2);
  options.window = Millis(flags, "window-seconds", 10);
  options.drain = Millis(flags, "drain-seconds", 10);
  options.timeout = std::chrono::milliseconds(flags.Int("timeout-ms", 0, 0, 86400000));
  options.max_outstanding =
      static_cast<int>(flags.Int("max-outstanding", 1024, 1, 1 << 20));
  const uint64_t seed = static_cast<uint64_t>(flags.Int("seed", 1, 0, INT64_MAX));
  if (options.window.count() <= 0) flags.Fail("--window-seconds must be > 0");
  std::vector<double> levels;
  if (options.mode == LoadMode::kRequestRate) {
    levels = RateList(flags);
  } else {
    for (int64_t c : flags.IntList("concurrency", {1, 2, 4, 8})) {
      if (c > 100000) flags.Fail("--concurrency levels must be at most 100000");
      levels.push_back(static_cast<double>(c));
    }
  }

  auto channel = MakeChannelFromFlags(flags);
  RunInfo run;
  run.started = std::chrono::system_clock::now();
  run.server = flags.String("server", "localhost:8001");
  run.protocol = protocol;
  run.payload = payload;
  run.mode = options.mode;
  run.batch = batch;
  run.kserve_contents = kserve ? contents : "";
  run.warmup_seconds = options.warmup.count() / 1000.0;
  run.window_seconds = options.window.count() / 1000.0;
  run.drain_seconds = options.drain.count() / 1000.0;
  run.max_outstanding = options.max_outstanding;
  run.seed = seed;
  run.timeout_ms = options.timeout.count();

  // The model's name and clip shape. Without metadata (e.g. an unknown
  // model) the run goes on when the flags give the whole shape: the errors
  // are then what it measures.
  std::vector<int64_t> dims = {-1, -1, -1};  // T, H, W
  grpc::Status meta_status;
  if (kserve) {
    inference::ModelMetadataResponse metadata;
    meta_status = FetchKServeMetadata(channel, model, &metadata);
    if (meta_status.ok()) {
      model = metadata.name().empty() ? model : metadata.name();
      if (version.empty() && metadata.versions_size() > 0) {
        run.model_version = metadata.versions(metadata.versions_size() - 1);
      }
      if (auto d = KServeClipDims(metadata)) dims = *d;
    }
  } else {
    clipserve::v1::ModelMetadataResponse metadata;
    meta_status = FetchModelMetadata(channel, model, &metadata);
    if (meta_status.ok()) {
      model = metadata.model_name();
      if (version.empty()) run.model_version = metadata.model_version();
      for (int i = 0; i < 3; ++i) dims[i] = ModelDim(metadata, i + 1, -1);
    }
  }
  if (!version.empty()) run.model_version = version;
  const int64_t frames = flags.Int("frames", Dim(dims[0], 16), 1, 4096);
  const int64_t height = flags.Int("height", Dim(dims[1], 224), 1, 8192);
  const int64_t width = flags.Int("width", Dim(dims[2], 224), 1, 8192);
  if (!meta_status.ok()) {
    const bool shape_known = video || (flags.Has("frames") && flags.Has("height") &&
                                       flags.Has("width"));
    std::fprintf(stderr, "%s: model metadata: %s: %s\n",
                 shape_known ? "warning" : "error",
                 StatusCodeName(meta_status.error_code()).c_str(),
                 meta_status.error_message().c_str());
    if (!shape_known) return meta_status.error_code();
    std::fprintf(stderr, "warning: going on with %s\n",
                 video ? "the video" : "the shape --frames/--height/--width give");
  }
  run.model = model;

  // The request, built once; every call of every step sends it.
  std::unique_ptr<LoadTarget> target;
  const clipserve::v1::DataType type =
      dtype == "fp32" ? clipserve::v1::FP32 : clipserve::v1::UINT8;
  if (kserve) {
    std::vector<clipserve::v1::Tensor> clips;
    for (int b = 0; b < batch; ++b) {
      clips.push_back(RandomClip(type, frames, height, width, seed + b));
    }
    std::vector<std::string> outputs;
    if (flags.Has("kserve-outputs")) {
      outputs = absl::StrSplit(flags.String("kserve-outputs", ""), ',', absl::SkipEmpty());
    }
    auto request = BuildKServeRequest(model, version, clips, contents == "raw"
                                          ? KServeContents::kRaw : KServeContents::kTyped,
                                      outputs);
    if (!request.ok()) flags.Fail(std::string(request.status().message()));
    run.dtype = dtype;
    run.shape.assign(request->inputs(0).shape().begin(), request->inputs(0).shape().end());
    target = MakeKServeTarget(channel, *std::move(request));
  } else {
    clipserve::v1::ClassifyRequest request;
    request.set_model_name(model);
    request.set_model_version(version);
    request.set_top_k(1);
    if (video) {
      const std::string path = flags.String("video", "");
      absl::StatusOr<std::string> bytes = ReadFileBytes(path);
      if (!bytes.ok()) flags.Fail(std::string(bytes.status().message()));
      request.mutable_video()->set_data(*std::move(bytes));
      run.video = path;
      run.video_bytes = static_cast<int64_t>(request.video().data().size());
    } else {
      *request.mutable_clip() = RandomClip(type, frames, height, width, seed);
      run.dtype = dtype;
      run.shape.assign(request.clip().shape().begin(), request.clip().shape().end());
    }
    target = MakeClipserveTarget(channel, std::move(request));
  }

  options.progress = isatty(STDERR_FILENO) == 1;
  std::fputs(TableHeader(options.mode, video).c_str(), stdout);
  std::fflush(stdout);
  std::vector<StepResult> steps;
  for (size_t i = 0; i < levels.size(); ++i) {
    if (options.mode == LoadMode::kConcurrency) {
      options.concurrency = static_cast<int>(levels[i]);
      options.progress_label = absl::StrCat("concurrency ", options.concurrency);
    } else {
      options.request_rate = levels[i];
      options.seed = seed + i;
      options.progress_label = absl::StrCat("rate ", levels[i], "/s");
    }
    steps.push_back(RunStep(*target, options));
    std::fputs(TableRow(steps.back(), video).c_str(), stdout);
    std::fflush(stdout);
  }
  run.finished = std::chrono::system_clock::now();

  int status = 0;
  if (flags.Has("json") && !WriteReport(flags.String("json", ""), ReportJson(run, steps))) {
    status = 1;
  }
  if (flags.Has("csv") && !WriteReport(flags.String("csv", ""), ReportCsv(run, steps))) {
    status = 1;
  }
  int64_t ok = 0;
  for (const StepResult& s : steps) ok += s.ok + s.ok_received;
  if (ok == 0) {
    std::fprintf(stderr, "error: no request succeeded\n");
    status = 1;
  }
  return status;
}
