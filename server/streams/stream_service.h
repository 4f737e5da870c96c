// StreamService: clipserve.v1.VideoClassifier/ClassifyStream, live streams
// classified over sliding windows (docs/streams.md).
//
// Each stream has one worker thread of its own that takes its input (the
// client's messages one at a time, or packets from a source the server
// pulls), decodes it into a WindowBuffer of model-sized frames, and queues
// each completed window into the model's BatchQueue, where windows of every
// stream and ordinary clips share batches. gRPC's threads only hand messages
// over and write answers.
//
// The contract (each rule proven by the named test in
// tests/integration/stream_test.cc unless said otherwise):
//  - Answers, in order: one StreamStarted, then a WindowResult per
//    classified window and StreamEvents (PushedH264WindowsAreClassified,
//    RawFramesOfAnySizeAreWindowed).
//  - Backpressure: a stream reads its next message only when the previous
//    one is decoded, so a client that pushes faster than the server decodes
//    is slowed by gRPC's flow control, not buffered (the memory a stream
//    holds does not grow with what its client sends).
//  - Real time (default): a window still queued when its stream's next
//    window is ready is replaced by that one, which takes its place in the
//    queue; the replaced one is counted (outcome "superseded") and reported
//    in a WINDOWS_DROPPED event. every_window instead keeps up to
//    kWindowsInFlight windows queued or running and then waits, slowing the
//    stream's input (FreshestWindowWinsWhenTheModelFallsBehind,
//    EveryWindowAnswersAllBySlowingItsInput).
//  - Fairness: a real-time stream has at most one live window in the
//    model's queue, an every_window stream at most kWindowsInFlight queued
//    or running, whatever their rate, so one camera cannot fill the queue
//    ahead of the others (ManyStreamsShareBatchesAndNoneStarves).
//  - StreamOpen.priority is the batching level of every window of the
//    stream, as a clip's priority is its own
//    (AnUrgentStreamOvertakesTheQueuedWindowsOfALessUrgentOne).
//  - A stream's windows are answered before it ends; it ends OK when its
//    input ends (half-close, a replayed file's end), INVALID_ARGUMENT for
//    a bad open, a frame that does not fit or a stream that cannot be
//    decoded, RESOURCE_EXHAUSTED beyond max_streams, DEADLINE_EXCEEDED
//    after idle_timeout without input, UNAVAILABLE on Shutdown() (after its
//    queued windows are answered) or when a pulled source stays lost.
//  - Damaged input is skipped to the next keyframe and reported
//    (DECODE_ERRORS_SKIPPED); a pulled source that drops is reopened with
//    backoff (SOURCE_LOST, SOURCE_RECONNECTED), frame numbers going on.
//  - A client that stops reading answers: beyond max_pending_answers
//    queued answers, further ones are dropped and counted (outcome
//    "answer_dropped"), then reported (ANSWERS_DROPPED) once it reads again.
#ifndef CLIPSERVE_SERVER_STREAMS_STREAM_SERVICE_H_
#define CLIPSERVE_SERVER_STREAMS_STREAM_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>

#include <grpcpp/support/server_callback.h>

#include "clipserve/v1/video_classifier.pb.h"
#include "server/metrics.h"
#include "server/lifecycle/model_repository.h"
#include "server/streams/stream_metrics.h"
#include "video/decode.h"
#include "video/live_source.h"

namespace clipserve::server {

struct StreamOptions {
  // Streams open at once (--max-streams); more get RESOURCE_EXHAUSTED.
  int max_streams = 64;
  // A pushed stream with no message for this long ends with
  // DEADLINE_EXCEEDED (--stream-idle-timeout-seconds).
  std::chrono::milliseconds idle_timeout{30000};
  // Answers queued for a client that does not read them, beyond which more
  // are dropped (and counted).
  size_t max_pending_answers = 64;
  // Frame limits (max_width, max_height) for decoded and pushed frames, and
  // max_bytes for one pushed message's data.
  video::Limits limits;
  // Where sources may be pulled from (--stream-source-prefix; default
  // nowhere).
  video::SourcePolicy source_policy;
  // A pulled source with no data for this long is lost (and reconnected).
  std::chrono::milliseconds source_io_timeout{5000};
  // First wait before reconnecting a lost source; doubles up to 8 s.
  std::chrono::milliseconds reconnect_backoff{500};
  // Decoder threads per stream (frame threads of the codec).
  int decode_threads = 1;
};

class StreamCall;

class StreamService {
 public:
  // Windows an every_window stream may have queued or running at once.
  static constexpr size_t kWindowsInFlight = 4;
  // Window buffers a real-time stream may use at once: one queued plus
  // those running (one per lane of the model). Beyond that (a model with
  // more lanes) the new window is dropped ("backlog").
  static constexpr size_t kWindowBuffers = 8;

  // `models` and `metrics` must outlive the service.
  StreamService(const ModelRepository* models, Metrics* metrics,
                const StreamOptions& options);
  // Waits for every stream's worker thread to exit (Shutdown() first).
  ~StreamService();

  grpc::ServerBidiReactor<v1::StreamRequest, v1::StreamResponse>* Start(
      grpc::CallbackServerContext* context);

  // Ends every stream: input stops, queued windows are answered, then each
  // ends with UNAVAILABLE. Returns once every stream has finished, or after
  // `grace` (gRPC's own shutdown then cancels what is left). New streams get
  // UNAVAILABLE from the start.
  void Shutdown(std::chrono::milliseconds grace);


 private:
  friend class StreamCall;
  // A stream's worker is running (false: refused, at max_streams or
  // draining).
  bool Register(StreamCall* call);
  // The stream has ended: Drain() no longer reaches it.
  void Unregister(StreamCall* call);
  // A worker thread's last step (after its call may be deleted).
  void WorkerExited();

  const ModelRepository* const models_;
  const StreamOptions options_;
  StreamMetrics metrics_;
  mutable std::mutex mu_;
  std::condition_variable idle_;  // streams_ or workers_ became empty
  std::set<StreamCall*> streams_;
  int workers_ = 0;  // worker threads not yet exited
  bool draining_ = false;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_STREAMS_STREAM_SERVICE_H_
