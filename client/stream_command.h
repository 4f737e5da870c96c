// `clipserve-client stream SOURCE`: one ClassifyStream call. The client
// sends the StreamOpen, then (for a local file) pushes its chunks, as fast
// as the server reads them (gRPC flow control) or, with `realtime`, each
// chunk at its stream time after the first; then half-closes and reads on
// until the server ends the stream. A URL is pulled by the server: nothing
// follows the StreamOpen, and the client half-closes only after `seconds`
// or on Ctrl-C (which, for a pushed file, stops the push early too; a
// second Ctrl-C kills the client).
//
// Output (stdout), one line each as the answers come:
//   started: model M version V, window 16 frames, stride 16, crop 224x224
//   window 3 frames 48-63 (1.920-2.520 s): 0.41 label_a, 0.20 class 17 ...
//       latency 38 ms (decode 2, queue 2, compute 30, batch 3)
//   event WINDOWS_DROPPED count 2: <message>
// then the summary:
//   ended OK: 31 windows, 2 dropped, events: WINDOWS_DROPPED 1; pushed
//       512 messages, 8388608 bytes in 20.3 s
// On an error the summary says "ended CODE_NAME", and "error: CODE_NAME
// (code N): message" goes to stderr. Exit status: 0 when the stream ended
// OK, else the gRPC status code (64 for a usage error or unreadable file).
#ifndef CLIPSERVE_CLIENT_STREAM_COMMAND_H_
#define CLIPSERVE_CLIENT_STREAM_COMMAND_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "clipserve/v1/video_classifier.pb.h"

namespace clipserve::client {

struct StreamCommandOptions {
  // Model, window, sampling, top_k, priority, every_window and source
  // options; source_url and input are filled in from `source`.
  v1::StreamOpen open;
  std::string source;       // a URL or a local file (stream_input.h)
  bool realtime = false;    // pace a pushed file by its packets' times
  double seconds = 0;       // > 0: half-close after this long
  size_t chunk_bytes = 64 << 10;  // raw files, untimed
};

// Runs the stream; returns the exit status (see above).
int RunStreamCommand(const std::shared_ptr<grpc::Channel>& channel,
                     const StreamCommandOptions& options);

// What the stream's answers added up to.
struct StreamTally {
  int64_t windows = 0;
  int64_t dropped = 0;  // sum of WINDOWS_DROPPED counts
  std::map<std::string, int64_t> events;       // kind name -> events
  std::map<std::string, int64_t> event_counts; // kind name -> sum of counts
  void Add(const v1::StreamResponse& response);
};

// The lines above (each without a newline).
std::string FormatStarted(const v1::StreamStarted& started);
std::string FormatWindow(const v1::WindowResult& window);
std::string FormatEvent(const v1::StreamEvent& event);
std::string FormatSummary(const StreamTally& tally, const std::string& code_name,
                          int64_t messages, int64_t bytes, double seconds);

// When a paced chunk is due: the first chunk at once, each later one at its
// stream time after the first's (times of -1, untimed, are due at once).
class Pacer {
 public:
  using Clock = std::chrono::steady_clock;
  Clock::time_point Due(int64_t time_us, Clock::time_point now);

 private:
  bool started_ = false;
  Clock::time_point origin_;
  int64_t first_us_ = 0;
};

}  // namespace clipserve::client

#endif  // CLIPSERVE_CLIENT_STREAM_COMMAND_H_
