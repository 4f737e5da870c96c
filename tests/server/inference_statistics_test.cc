// InferenceStatistics: what a model's requests and executions add up to, as
// the KServe ModelStatistics RPC reports it; exact under concurrent recording.
#include "server/inference_statistics.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace clipserve::server {
namespace {

TEST(InferenceStatisticsTest, StartsAtZeroWithNoBatchSizes) {
  InferenceStatistics stats(8);
  const InferenceStatistics::Snapshot s = stats.Read();
  EXPECT_EQ(s.last_inference_ms, 0u);
  EXPECT_EQ(s.inference_count, 0u);
  EXPECT_EQ(s.execution_count, 0u);
  EXPECT_EQ(s.success.count, 0u);
  EXPECT_EQ(s.fail.count, 0u);
  EXPECT_TRUE(s.batch_sizes.empty());
}

TEST(InferenceStatisticsTest, RequestsCountBySuccessAndExecutionsByBatchSize) {
  InferenceStatistics stats(8);
  // A batch of 5 clips from 2 requests (2 + 3), then a batch of 1.
  stats.RecordExecution(5, 2, /*queue_ns=*/300, /*input_ns=*/10, /*infer_ns=*/1000,
                        /*last_inference_ms=*/1000);
  stats.AddComputeOutputTime(5, 2, 40);
  stats.RecordRequest(true, 2000);
  stats.RecordRequest(true, 2100);
  stats.RecordExecution(1, 1, 7, 1, 100, 900);  // finished before the other
  stats.AddComputeOutputTime(1, 1, 4);
  stats.RecordRequest(true, 150);
  stats.RecordRequest(false, 9);  // refused before it was queued

  const InferenceStatistics::Snapshot s = stats.Read();
  EXPECT_EQ(s.last_inference_ms, 1000u);  // the latest, not the last recorded
  EXPECT_EQ(s.inference_count, 6u);       // clips
  EXPECT_EQ(s.execution_count, 2u);
  EXPECT_EQ(s.success.count, 3u);
  EXPECT_EQ(s.success.ns, 4250u);
  EXPECT_EQ(s.fail.count, 1u);
  EXPECT_EQ(s.fail.ns, 9u);
  // Per request; each request of a batch pays the batch's phase time.
  EXPECT_EQ(s.queue.count, 3u);
  EXPECT_EQ(s.queue.ns, 307u);
  EXPECT_EQ(s.compute_input.count, 3u);
  EXPECT_EQ(s.compute_input.ns, 2 * 10u + 1);
  EXPECT_EQ(s.compute_infer.count, 3u);
  EXPECT_EQ(s.compute_infer.ns, 2 * 1000u + 100);
  EXPECT_EQ(s.compute_output.count, 3u);
  EXPECT_EQ(s.compute_output.ns, 2 * 40u + 4);
  // Per batch size, ascending; each execution once.
  ASSERT_EQ(s.batch_sizes.size(), 2u);
  EXPECT_EQ(s.batch_sizes[0].batch_size, 1u);
  EXPECT_EQ(s.batch_sizes[0].compute_infer.count, 1u);
  EXPECT_EQ(s.batch_sizes[0].compute_infer.ns, 100u);
  EXPECT_EQ(s.batch_sizes[0].compute_output.ns, 4u);
  EXPECT_EQ(s.batch_sizes[1].batch_size, 5u);
  EXPECT_EQ(s.batch_sizes[1].compute_input.count, 1u);
  EXPECT_EQ(s.batch_sizes[1].compute_input.ns, 10u);
  EXPECT_EQ(s.batch_sizes[1].compute_infer.ns, 1000u);
  EXPECT_EQ(s.batch_sizes[1].compute_output.count, 1u);
  EXPECT_EQ(s.batch_sizes[1].compute_output.ns, 40u);
}

TEST(InferenceStatisticsTest, CountsAreVisibleBeforeTheOutputTime) {
  InferenceStatistics stats(4);
  stats.RecordExecution(2, 1, 0, 1, 2, 5);
  // Recorded before the answer: the count is there, its time not yet.
  InferenceStatistics::Snapshot s = stats.Read();
  EXPECT_EQ(s.execution_count, 1u);
  EXPECT_EQ(s.compute_output.count, 1u);
  EXPECT_EQ(s.compute_output.ns, 0u);
  stats.AddComputeOutputTime(2, 1, 30);
  s = stats.Read();
  EXPECT_EQ(s.compute_output.ns, 30u);
  EXPECT_EQ(s.batch_sizes.at(0).compute_output.ns, 30u);
}

TEST(InferenceStatisticsTest, BatchSizesOutsideTheModelsRangeCountOnlyInTotals) {
  InferenceStatistics stats(2);
  stats.RecordExecution(3, 1, 0, 0, 0, 1);
  stats.AddComputeOutputTime(3, 1, 0);
  const InferenceStatistics::Snapshot s = stats.Read();
  EXPECT_EQ(s.execution_count, 1u);
  EXPECT_EQ(s.inference_count, 3u);
  EXPECT_TRUE(s.batch_sizes.empty());
}

TEST(InferenceStatisticsTest, ConcurrentRecordingLosesNothing) {
  InferenceStatistics stats(4);
  constexpr int kThreads = 4, kRounds = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&stats, t] {
      for (int i = 0; i < kRounds; ++i) {
        const int size = 1 + (i + t) % 4;
        stats.RecordExecution(size, 1, 1, 1, 1, static_cast<uint64_t>(i));
        stats.AddComputeOutputTime(size, 1, 1);
        stats.RecordRequest(i % 10 != 0, 1);
      }
    });
  }
  // Reading while they record is allowed.
  for (int i = 0; i < 100; ++i) EXPECT_LE(stats.Read().execution_count, 1u * kThreads * kRounds);
  for (std::thread& t : threads) t.join();
  const InferenceStatistics::Snapshot s = stats.Read();
  constexpr uint64_t kTotal = uint64_t{kThreads} * kRounds;
  EXPECT_EQ(s.execution_count, kTotal);
  EXPECT_EQ(s.inference_count, kTotal / 4 * (1 + 2 + 3 + 4));
  EXPECT_EQ(s.success.count + s.fail.count, kTotal);
  EXPECT_EQ(s.fail.count, kTotal / 10);
  EXPECT_EQ(s.compute_output.ns, kTotal);
  EXPECT_EQ(s.last_inference_ms, uint64_t{kRounds - 1});
  uint64_t executions = 0;
  for (const auto& b : s.batch_sizes) executions += b.compute_infer.count;
  EXPECT_EQ(executions, kTotal);
  ASSERT_EQ(s.batch_sizes.size(), 4u);
}

}  // namespace
}  // namespace clipserve::server
