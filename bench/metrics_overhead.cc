// What recording one request's metrics costs, with Google Benchmark.
//
// Per answered request the server does: inflight +1 / -1, one histogram
// observation each for queue time, compute time and request duration, and
// one counter increment by status code; per batch one batch-size observation
// and one counter increment (amortised over the batch, measured separately).
// docs/benchmarks.md turns the figures into a share of a request's cost.
#include <benchmark/benchmark.h>

#include "absl/status/status.h"
#include "server/metrics.h"

namespace {

using clipserve::server::Metrics;
using clipserve::server::ModelMetrics;

ModelMetrics* Model() {
  static Metrics* metrics = new Metrics();
  static ModelMetrics* model = metrics->AddModel("bench", "1", 8);
  return model;
}

void BM_RecordRequest(benchmark::State& state) {
  ModelMetrics* m = Model();
  double t = 0.001;
  for (auto _ : state) {
    m->inflight().Increment();
    m->queue_duration().Observe(t);
    m->compute_duration().Observe(t * 3);
    m->inflight().Decrement();
    m->CountRequest(absl::StatusCode::kOk, t * 5);
    t = t < 1 ? t * 1.01 : 0.001;  // walk the buckets
  }
}
BENCHMARK(BM_RecordRequest)->Threads(1)->Threads(2)->UseRealTime();

void BM_RecordBatch(benchmark::State& state) {
  ModelMetrics* m = Model();
  int size = 1;
  for (auto _ : state) {
    m->batch_size().Observe(size);
    m->batch_executions().Increment();
    size = size % 8 + 1;
  }
}
BENCHMARK(BM_RecordBatch);

}  // namespace

BENCHMARK_MAIN();
