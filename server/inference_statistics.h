// InferenceStatistics: what one served model version has done since it was
// loaded, in the terms of Triton's statistics extension (the KServe
// ModelStatistics RPC): requests answered OK or not and their time, the
// per-request time in the queue and in each compute phase, and executions
// per batch size. Requests of both protocols count alike.
//
// Recording costs a few relaxed atomic additions (no lock): per answered
// request one pair, per executed batch a handful, whatever its size. Read()
// may run at any time. Every count of an execution is recorded before its
// requests are answered, so a client that has its answer sees it counted;
// only the execution's compute_output time is added after the answers are
// handed to gRPC, microseconds later.
//
// The phases of an execution (Triton's names; one instance thread runs them
// in turn):
//   compute_input   the instance took the batch until the model run starts
//                   (gathering the clips; their copy into the batch tensor
//                   happens inside the run)
//   compute_infer   the model run: batch tensor, normalisation, forward
//   compute_output  answering the batch's requests: softmax, top-k or the
//                   output tensors, handing each answer to gRPC
// Per request (InferStatistics) each request of a batch is charged the
// batch's whole phase time; per batch size (batch_stats) each execution
// counts once.
#ifndef CLIPSERVE_SERVER_INFERENCE_STATISTICS_H_
#define CLIPSERVE_SERVER_INFERENCE_STATISTICS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace clipserve::server {

class InferenceStatistics {
 public:
  // A count and a total time.
  struct Duration {
    uint64_t count = 0;
    uint64_t ns = 0;
  };
  struct BatchSize {
    uint64_t batch_size = 0;  // clips
    // count: executions of this size.
    Duration compute_input, compute_infer, compute_output;
  };
  struct Snapshot {
    // End of the last execution, milliseconds since the Unix epoch; 0: none.
    uint64_t last_inference_ms = 0;
    uint64_t inference_count = 0;  // clips of successful executions
    uint64_t execution_count = 0;  // successful executions
    // Per request.
    Duration success, fail, queue, compute_input, compute_infer, compute_output;
    // Sizes executed at least once, ascending.
    std::vector<BatchSize> batch_sizes;
  };

  // Batches of 1..max_batch_size clips (at least 1).
  explicit InferenceStatistics(int max_batch_size);

  InferenceStatistics(const InferenceStatistics&) = delete;
  InferenceStatistics& operator=(const InferenceStatistics&) = delete;

  // One request of this model answered, OK or not, `ns` after it arrived.
  void RecordRequest(bool ok, uint64_t ns);

  // One batch of `batch_size` clips from `requests` requests ran
  // successfully: `queue_ns` is the requests' queue time summed, the others
  // the batch's phases. Called before the requests are answered, and
  // AddComputeOutputTime with the same batch_size and requests once they are.
  void RecordExecution(int batch_size, uint64_t requests, uint64_t queue_ns,
                       uint64_t input_ns, uint64_t infer_ns,
                       uint64_t last_inference_ms);
  void AddComputeOutputTime(int batch_size, uint64_t requests, uint64_t output_ns);

  Snapshot Read() const;

 private:
  struct AtomicDuration {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> ns{0};
    void Add(uint64_t n, uint64_t t) {
      count.fetch_add(n, std::memory_order_relaxed);
      ns.fetch_add(t, std::memory_order_relaxed);
    }
    Duration Load() const {
      return {count.load(std::memory_order_relaxed), ns.load(std::memory_order_relaxed)};
    }
  };
  struct BatchSlot {
    std::atomic<uint64_t> executions{0};  // the count of all three phases
    std::atomic<uint64_t> input_ns{0}, infer_ns{0}, output_ns{0};
  };
  // The slot of `batch_size`, or null outside 1..max_batch_size.
  BatchSlot* Slot(int batch_size) const;

  const int max_batch_size_;
  std::atomic<uint64_t> last_inference_ms_{0};
  std::atomic<uint64_t> inference_count_{0};
  std::atomic<uint64_t> execution_count_{0};
  AtomicDuration success_, fail_, queue_, compute_input_, compute_infer_,
      compute_output_;
  // Index batch_size - 1.
  const std::unique_ptr<BatchSlot[]> batches_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_INFERENCE_STATISTICS_H_
