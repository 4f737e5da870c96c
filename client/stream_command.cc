#include "client/stream_command.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/clips.h"
#include "client/stream_input.h"
#include "clipserve/v1/video_classifier.grpc.pb.h"

namespace clipserve::client {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_interrupts{0};

void OnInterrupt(int) {
  if (g_interrupts.fetch_add(1) == 0) {
    static const char kMsg[] =
        "\nhalf-closing: the server answers what it has; Ctrl-C again to abort\n";
    (void)!write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
  } else {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
}

std::string Ms(int64_t us) { return absl::StrFormat("%.0f", us / 1000.0); }

std::string Seconds(int64_t us) { return absl::StrFormat("%.3f", us / 1e6); }

// The writer's side of the call: the StreamOpen, then the chunks.
class Pusher {
 public:
  Pusher(grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>* stream,
         grpc::ClientContext* context, const StreamCommandOptions& options,
         std::unique_ptr<ChunkReader> chunks)
      : stream_(stream), context_(context), options_(options), chunks_(std::move(chunks)) {}

  void Run() {
    started_ = Clock::now();
    v1::StreamRequest request;
    *request.mutable_open() = options_.open;
    if (!stream_->Write(request)) return;  // the reader sees why
    if (chunks_ == nullptr) {
      // A pulled source: half-close only when told to.
      if (Wait(Clock::time_point::max())) stream_->WritesDone();
      return;
    }
    request.Clear();
    std::string* data = request.mutable_data();
    Pacer pacer;
    for (;;) {
      int64_t time_us = -1;
      absl::StatusOr<bool> more = chunks_->Next(data, &time_us);
      if (!more.ok()) {
        local_error_ = std::string(more.status().message());
        context_->TryCancel();
        return;
      }
      if (!*more) break;
      if (options_.realtime && !Wait(pacer.Due(time_us, Clock::now()))) break;
      if (Stopping()) break;
      if (!stream_->Write(request)) return;  // the stream ended; the reader sees why
      ++messages_;
      bytes_ += static_cast<int64_t>(data->size());
    }
    stream_->WritesDone();
  }

  // The reader is done: the writer stops waiting.
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }

  const std::string& local_error() const { return local_error_; }
  int64_t messages() const { return messages_; }
  int64_t bytes() const { return bytes_; }

 private:
  // Interrupted or past --seconds: half-close now.
  bool Stopping() const {
    return g_interrupts.load() > 0 ||
           (options_.seconds > 0 &&
            Clock::now() - started_ >= std::chrono::duration<double>(options_.seconds));
  }

  // Waits until `until`; false when the writer should half-close first
  // (Ctrl-C, --seconds) or stop (the reader is done: then also false, and
  // WritesDone is harmless). Wakes every 100 ms to see a Ctrl-C.
  bool Wait(Clock::time_point until) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (stopped_) return false;
      if (Stopping()) return !stopped_;
      const Clock::time_point now = Clock::now();
      if (now >= until) return true;
      const Clock::time_point slice = now + std::chrono::milliseconds(100);
      cv_.wait_until(lock, std::min(until, slice));
    }
  }

  grpc::ClientReaderWriter<v1::StreamRequest, v1::StreamResponse>* stream_;
  grpc::ClientContext* context_;
  const StreamCommandOptions& options_;
  std::unique_ptr<ChunkReader> chunks_;
  Clock::time_point started_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::string local_error_;
  int64_t messages_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace

Pacer::Clock::time_point Pacer::Due(int64_t time_us, Clock::time_point now) {
  if (time_us < 0) return now;
  if (!started_) {
    started_ = true;
    origin_ = now;
    first_us_ = time_us;
    return now;
  }
  return origin_ + std::chrono::microseconds(time_us - first_us_);
}

void StreamTally::Add(const v1::StreamResponse& response) {
  if (response.has_window()) {
    ++windows;
  } else if (response.has_event()) {
    const v1::StreamEvent& e = response.event();
    const std::string kind = v1::StreamEvent::Kind_Name(e.kind());
    ++events[kind];
    event_counts[kind] += e.count();
    if (e.kind() == v1::StreamEvent::WINDOWS_DROPPED) dropped += e.count();
  }
}

std::string FormatStarted(const v1::StreamStarted& s) {
  return absl::StrCat("started: model ", s.model_name(), " version ", s.model_version(),
                      ", window ", s.window_frames(), " frames, stride ", s.stride_frames(),
                      ", crop ", s.crop_width(), "x", s.crop_height());
}

std::string FormatWindow(const v1::WindowResult& w) {
  std::string out = absl::StrCat("window ", w.number(), " frames ", w.first_frame(), "-",
                                 w.last_frame(), " (", Seconds(w.first_pts_us()), "-",
                                 Seconds(w.last_pts_us()), " s):");
  bool first = true;
  for (const v1::Classification& c : w.classes()) {
    absl::StrAppend(&out, first ? " " : ", ", absl::StrFormat("%.2f", c.probability()), " ",
                    c.label().empty() ? absl::StrCat("class ", c.class_index()) : c.label());
    first = false;
  }
  const v1::Timings& t = w.timings();
  absl::StrAppend(&out, " latency ", Ms(w.latency_us()), " ms (decode ", Ms(t.decode_us()),
                  ", queue ", Ms(t.queue_us()), ", compute ", Ms(t.compute_us()), ", batch ",
                  t.batch_size(), ")");
  return out;
}

std::string FormatEvent(const v1::StreamEvent& e) {
  std::string out = absl::StrCat("event ", v1::StreamEvent::Kind_Name(e.kind()));
  if (e.count() != 0) absl::StrAppend(&out, " count ", e.count());
  if (!e.message().empty()) absl::StrAppend(&out, ": ", e.message());
  return out;
}

std::string FormatSummary(const StreamTally& tally, const std::string& code_name,
                          int64_t messages, int64_t bytes, double seconds) {
  std::string out = absl::StrCat("ended ", code_name, ": ", tally.windows, " windows, ",
                                 tally.dropped, " dropped, events:");
  if (tally.events.empty()) absl::StrAppend(&out, " none");
  bool first = true;
  for (const auto& [kind, n] : tally.events) {
    absl::StrAppend(&out, first ? " " : ", ", kind, " ", n);
    first = false;
  }
  absl::StrAppend(&out, "; pushed ", messages, " messages, ", bytes, " bytes in ",
                  absl::StrFormat("%.1f", seconds), " s");
  return out;
}

int RunStreamCommand(const std::shared_ptr<grpc::Channel>& channel,
                     const StreamCommandOptions& options) {
  absl::StatusOr<StreamSource> source = ClassifySource(options.source);
  if (!source.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(source.status().message()).c_str());
    return 64;
  }
  StreamCommandOptions o = options;
  std::unique_ptr<ChunkReader> chunks;
  if (!source->url.empty()) {
    o.open.set_source_url(source->url);
    o.open.clear_input();
    if (o.realtime) {
      std::fprintf(stderr, "error: --realtime is for pushed files; a URL is pulled by the "
                           "server (--replay-speed paces file:// sources)\n");
      return 64;
    }
  } else {
    o.open.set_input(source->input);
    o.open.clear_source_url();
    o.open.clear_source();
    ChunkOptions chunk_options;
    chunk_options.timed = o.realtime;
    chunk_options.raw_chunk_bytes = o.chunk_bytes;
    // Paced Annex B goes out one access unit a message: the server decodes
    // each as it comes, not when the next begins.
    o.open.set_whole_access_units(o.realtime && !source->remux &&
                                  source->input != v1::StreamOpen::MPEGTS);
    absl::StatusOr<std::unique_ptr<ChunkReader>> opened = OpenChunks(*source, chunk_options);
    if (!opened.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(opened.status().message()).c_str());
      return 64;
    }
    chunks = *std::move(opened);
  }

  auto stub = v1::VideoClassifier::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->ClassifyStream(&context);
  g_interrupts = 0;
  struct sigaction action {}, previous{};
  action.sa_handler = &OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &previous);

  const Clock::time_point start = Clock::now();
  Pusher pusher(stream.get(), &context, o, std::move(chunks));
  std::thread writer([&pusher] { pusher.Run(); });
  StreamTally tally;
  v1::StreamResponse response;
  while (stream->Read(&response)) {
    tally.Add(response);
    std::string line;
    switch (response.message_case()) {
      case v1::StreamResponse::kStarted: line = FormatStarted(response.started()); break;
      case v1::StreamResponse::kWindow: line = FormatWindow(response.window()); break;
      case v1::StreamResponse::kEvent: line = FormatEvent(response.event()); break;
      default: line = "(an empty answer)"; break;
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  pusher.Stop();
  writer.join();
  const grpc::Status status = stream->Finish();
  sigaction(SIGINT, &previous, nullptr);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::string code_name = StatusCodeName(status.error_code());
  std::printf("%s\n", FormatSummary(tally, code_name, pusher.messages(), pusher.bytes(),
                                    seconds).c_str());
  std::fflush(stdout);
  if (!pusher.local_error().empty()) {
    std::fprintf(stderr, "error: %s\n", pusher.local_error().c_str());
    return 64;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s (code %d): %s\n", code_name.c_str(),
                 static_cast<int>(status.error_code()), status.error_message().c_str());
    return static_cast<int>(status.error_code());
  }
  return 0;
}

}  // namespace clipserve::client
