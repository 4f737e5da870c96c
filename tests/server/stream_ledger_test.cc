// The rules of server/stream_ledger.h, one test each, then every order of
// events on a short stream, then the ledger driven from several threads.
#include "server/stream_ledger.h"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace clipserve::server {
namespace {

using Ledger = StreamLedger<int>;

// Reads `n` requests, each said to be followed by another read.
void ReadRequests(Ledger& ledger, int n) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(ledger.RequestRead().read) << i;
}

TEST(StreamLedgerTest, AnswersAreWrittenOneAtATimeInDeliveryOrder) {
  Ledger ledger;
  ReadRequests(ledger, 4);
  Ledger::Next next = ledger.Delivered(30);  // nothing in flight: write it
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 30);
  EXPECT_FALSE(next.read);
  EXPECT_FALSE(next.finish);
  // While it is in flight, later answers wait, in delivery order.
  EXPECT_EQ(ledger.Delivered(10).write, nullptr);
  EXPECT_EQ(ledger.Delivered(20).write, nullptr);
  EXPECT_EQ(ledger.unwritten(), 3u);

  next = ledger.WriteDone(true);
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 10);
  next = ledger.WriteDone(true);
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 20);
  next = ledger.WriteDone(true);  // drained: nothing to write
  EXPECT_EQ(next.write, nullptr);
  EXPECT_FALSE(next.finish);  // a request is still being answered
  EXPECT_EQ(ledger.unwritten(), 0u);

  // An answer delivered while no write is in flight is written at once.
  next = ledger.Delivered(40);
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 40);
}

TEST(StreamLedgerTest, ReadingPausesAt64UnwrittenAnswersAndResumesWhenFewerAreUnwritten) {
  ASSERT_EQ(Ledger::kMaxUnwrittenAnswers, 64u);
  Ledger ledger;
  // A client that reads no answer: the first is in flight, the others wait.
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(ledger.RequestRead().read) << i << " unwritten";
    ledger.Delivered(i);
  }
  ASSERT_EQ(ledger.unwritten(), 64u);
  // The read made with 64 unwritten is answered but reads no further.
  Ledger::Next next = ledger.RequestRead();
  EXPECT_FALSE(next.read);
  EXPECT_EQ(ledger.Delivered(64).write, nullptr);  // 65 unwritten

  next = ledger.WriteDone(true);  // 64 unwritten: still paused
  EXPECT_FALSE(next.read);
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 1);
  next = ledger.WriteDone(true);  // 63: reading resumes, once
  EXPECT_TRUE(next.read);
  ASSERT_NE(next.write, nullptr);
  EXPECT_EQ(*next.write, 2);
  next = ledger.WriteDone(true);
  EXPECT_FALSE(next.read);  // it was not paused any more
  EXPECT_EQ(ledger.unwritten(), 62u);

  // Below the limit each read reads on; at the limit it pauses again.
  EXPECT_TRUE(ledger.RequestRead().read);  // made with 62 unwritten
  ledger.Delivered(65);
  EXPECT_TRUE(ledger.RequestRead().read);  // 63
  ledger.Delivered(66);
  EXPECT_FALSE(ledger.RequestRead().read);  // 64
}

TEST(StreamLedgerTest, AFailedWriteDropsQueuedAndLaterAnswersAndTheStreamStillFinishes) {
  StreamLedger<std::shared_ptr<int>> ledger;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ledger.RequestRead().read);
  std::vector<std::weak_ptr<int>> answers;
  for (int i = 0; i < 3; ++i) {
    auto answer = std::make_shared<int>(i);
    answers.push_back(answer);
    const bool first = i == 0;
    EXPECT_EQ(ledger.Delivered(std::move(answer)).write != nullptr, first);
  }
  StreamLedger<std::shared_ptr<int>>::Next next = ledger.WriteDone(false);
  EXPECT_EQ(next.write, nullptr);  // answers 1 and 2 are not written
  EXPECT_FALSE(next.finish);       // reads go on, one request unanswered
  EXPECT_EQ(ledger.unwritten(), 0u);
  for (const std::weak_ptr<int>& answer : answers) EXPECT_TRUE(answer.expired());

  next = ledger.ReadsDone();
  EXPECT_FALSE(next.finish);  // the fourth request is still being answered
  auto late = std::make_shared<int>(3);
  std::weak_ptr<int> late_answer = late;
  next = ledger.Delivered(std::move(late));
  EXPECT_EQ(next.write, nullptr);  // dropped too
  EXPECT_TRUE(late_answer.expired());
  EXPECT_TRUE(next.finish);  // every request answered: the stream finishes
  EXPECT_EQ(ledger.unwritten(), 0u);
}

TEST(StreamLedgerTest, AFailedWriteWhileReadingIsPausedResumesReading) {
  Ledger ledger;
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(ledger.RequestRead().read);
    ledger.Delivered(i);
  }
  ASSERT_FALSE(ledger.RequestRead().read);
  Ledger::Next next = ledger.WriteDone(false);
  EXPECT_TRUE(next.read);  // the client is gone: read on until reads end
  EXPECT_EQ(next.write, nullptr);
  EXPECT_EQ(ledger.Delivered(64).write, nullptr);
  EXPECT_TRUE(ledger.ReadsDone().finish);
}

TEST(StreamLedgerTest, FinishIsSaidOnceByTheEventThatEndsReadingAnsweringAndWriting) {
  {  // No request: the end of reads finishes.
    Ledger ledger;
    EXPECT_TRUE(ledger.ReadsDone().finish);
  }
  {  // The last write's completion finishes.
    Ledger ledger;
    ReadRequests(ledger, 2);
    EXPECT_FALSE(ledger.Delivered(1).finish);
    EXPECT_FALSE(ledger.ReadsDone().finish);  // a request is unanswered
    EXPECT_FALSE(ledger.Delivered(2).finish);
    EXPECT_FALSE(ledger.WriteDone(true).finish);  // answer 2 now in flight
    EXPECT_TRUE(ledger.WriteDone(true).finish);
  }
  {  // The last delivery finishes once a write failed.
    Ledger ledger;
    ReadRequests(ledger, 2);
    ledger.Delivered(1);
    EXPECT_FALSE(ledger.WriteDone(false).finish);  // one unanswered
    EXPECT_FALSE(ledger.ReadsDone().finish);
    EXPECT_TRUE(ledger.Delivered(2).finish);
  }
  {  // A failed last write finishes.
    Ledger ledger;
    ReadRequests(ledger, 1);
    ledger.Delivered(1);
    EXPECT_FALSE(ledger.ReadsDone().finish);  // the write is in flight
    EXPECT_TRUE(ledger.WriteDone(false).finish);
  }
}

TEST(StreamLedgerTest, ReleaseSaysDeleteOnceAfterTheTransportAndTheLastDeliveringCall) {
  {  // The transport is done first; the last call to release deletes.
    Ledger ledger;
    ReadRequests(ledger, 2);
    ledger.Delivered(1);
    EXPECT_FALSE(ledger.Release());  // call 1, after it delivered
    EXPECT_FALSE(ledger.ReadsDone().finish);
    ledger.Delivered(2);  // its call has not released yet
    ledger.WriteDone(true);
    EXPECT_TRUE(ledger.WriteDone(true).finish);
    EXPECT_FALSE(ledger.Release());  // the transport's OnDone
    EXPECT_TRUE(ledger.Release());   // call 2
  }
  {  // The calls release first; the transport's done deletes.
    Ledger ledger;
    ReadRequests(ledger, 2);
    ledger.Delivered(1);
    EXPECT_FALSE(ledger.Release());
    ledger.Delivered(2);
    EXPECT_FALSE(ledger.Release());
    ledger.WriteDone(false);
    EXPECT_TRUE(ledger.ReadsDone().finish);
    EXPECT_TRUE(ledger.Release());  // the transport's OnDone
  }
  {  // A stream with no request: the transport's reference is the only one.
    Ledger ledger;
    EXPECT_TRUE(ledger.ReadsDone().finish);
    EXPECT_TRUE(ledger.Release());
  }
}

// Every order in which the events of a stream of up to kRequests requests
// can happen, each write succeeding or failing, driven the way
// server/kserve_service.cc drives the ledger: exactly one finish, exactly one
// delete (after the transport's done and every call's release, with nothing
// left to happen), answers written in delivery order, at most one write and
// one read outstanding.
class ShortStream {
 public:
  enum Kind { kRead, kReadsEnd, kDeliver, kRelease, kWriteOk, kWriteFail, kDone };
  struct Event {
    Kind kind;
    int call = 0;
  };

  static constexpr int kRequests = 2;

  std::vector<Event> Enabled() const {
    std::vector<Event> events;
    if (read_outstanding_ && calls_ < kRequests) events.push_back({kRead});
    if (read_outstanding_) events.push_back({kReadsEnd});
    for (int c = 0; c < calls_; ++c) {
      if (!delivered_[c]) events.push_back({kDeliver, c});
      if (delivered_[c] && !released_[c]) events.push_back({kRelease, c});
    }
    if (in_flight_ != nullptr) {
      events.push_back({kWriteOk});
      events.push_back({kWriteFail});
    }
    // gRPC calls OnDone after Finish (and once every reaction returned).
    if (finishes_ > 0 && !transport_done_) events.push_back({kDone});
    return events;
  }

  void Happen(const Event& e) {
    switch (e.kind) {
      case kRead:
        read_outstanding_ = false;
        delivered_[calls_] = released_[calls_] = false;
        ++calls_;
        Do(ledger_.RequestRead());
        break;
      case kReadsEnd:
        read_outstanding_ = false;
        reads_ended_ = true;
        Do(ledger_.ReadsDone());
        break;
      case kDeliver:
        delivered_[e.call] = true;
        delivery_order_.push_back(e.call);
        Do(ledger_.Delivered(e.call));
        break;
      case kRelease:
        released_[e.call] = true;
        Release();
        break;
      case kWriteOk:
      case kWriteFail:
        written_.push_back(*in_flight_);
        in_flight_ = nullptr;
        if (e.kind == kWriteFail) failed_ = true;
        Do(ledger_.WriteDone(e.kind == kWriteOk));
        break;
      case kDone:
        transport_done_ = true;
        Release();
        break;
    }
  }

  // Checks the rules over a finished run; `trace` names it.
  void CheckEnd(const std::string& trace) const {
    ASSERT_TRUE(deleted_) << trace;
    ASSERT_EQ(finishes_, 1) << trace;
    // Written in delivery order: a prefix of it, the whole of it unless a
    // write failed (then up to and including the failed one).
    ASSERT_LE(written_.size(), delivery_order_.size()) << trace;
    for (size_t i = 0; i < written_.size(); ++i) {
      ASSERT_EQ(written_[i], delivery_order_[i]) << trace;
    }
    if (!failed_) {
      ASSERT_EQ(written_.size(), delivery_order_.size()) << trace;
    }
  }

  const std::string& error() const { return error_; }
  bool deleted() const { return deleted_; }

 private:
  void Do(const Ledger::Next& next) {
    if (next.read) {
      if (read_outstanding_) error_ = "a second read";
      if (reads_ended_) error_ = "a read after reads ended";
      read_outstanding_ = true;
    }
    if (next.write != nullptr) {
      if (in_flight_ != nullptr) error_ = "a second write in flight";
      if (failed_) error_ = "a write after a failed write";
      in_flight_ = next.write;
    }
    if (next.finish) {
      ++finishes_;
      if (next.read || next.write != nullptr) error_ = "finish with more to do";
      if (!reads_ended_ || in_flight_ != nullptr) error_ = "finish too early";
      for (int c = 0; c < calls_; ++c) {
        if (!delivered_[c]) error_ = "finish before every answer";
      }
    }
  }

  void Release() {
    if (!ledger_.Release()) return;
    if (deleted_) error_ = "a second delete";
    deleted_ = true;
    if (!transport_done_) error_ = "delete before the transport's done";
    for (int c = 0; c < calls_; ++c) {
      if (!released_[c]) error_ = "delete before a call released";
    }
  }

  Ledger ledger_;
  bool read_outstanding_ = true;  // the stream starts with a read
  bool reads_ended_ = false;
  int calls_ = 0;
  bool delivered_[kRequests] = {};
  bool released_[kRequests] = {};
  std::vector<int> delivery_order_;
  int* in_flight_ = nullptr;
  std::vector<int> written_;
  bool failed_ = false;
  int finishes_ = 0;
  bool transport_done_ = false;
  bool deleted_ = false;
  std::string error_;
};

std::string TraceOf(const std::vector<ShortStream::Event>& trace) {
  static constexpr const char* kNames[] = {"read", "reads-end", "deliver",
                                           "release", "write-ok",
                                           "write-fail", "done"};
  std::string s;
  for (const ShortStream::Event& e : trace) {
    s += kNames[e.kind];
    if (e.kind == ShortStream::kDeliver || e.kind == ShortStream::kRelease) {
      s += std::to_string(e.call);
    }
    s += ' ';
  }
  return s;
}

// Replays `trace` on a fresh stream, then tries each event enabled after it.
void Explore(std::vector<ShortStream::Event>& trace, int* runs) {
  ShortStream stream;
  for (const ShortStream::Event& e : trace) stream.Happen(e);
  ASSERT_EQ(stream.error(), "") << TraceOf(trace);
  const std::vector<ShortStream::Event> enabled = stream.Enabled();
  if (enabled.empty()) {
    ++*runs;
    stream.CheckEnd(TraceOf(trace));
    return;
  }
  ASSERT_FALSE(stream.deleted()) << "still to happen after delete: "
                                 << TraceOf(trace);
  for (const ShortStream::Event& e : enabled) {
    trace.push_back(e);
    Explore(trace, runs);
    trace.pop_back();
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(StreamLedgerTest, EveryOrderOfEventsOnAShortStreamFinishesOnceDeletesOnceInOrder) {
  std::vector<ShortStream::Event> trace;
  int runs = 0;
  Explore(trace, &runs);
  EXPECT_GT(runs, 2000) << runs;  // 2246 orders when written
}

// The ledger of a simulated stream, driven from several threads at once the
// way gRPC and the calls drive it: one reader thread reads requests (only
// when the ledger said to read), several threads deliver answers and release
// their calls, one writer thread completes writes (one of them failing in
// most runs), and the main thread plays the transport's OnDone once the
// stream finished. The ledger is deleted by whichever thread's Release()
// says so.
class ConcurrentStream {
 public:
  struct Answer {
    int request = 0;
    int deliverer = 0;  // which thread delivered it
    int sequence = 0;   // that thread's count of deliveries before it
  };

  ConcurrentStream(int requests, int deliverers, int failing_write)
      : requests_(requests),
        deliverers_(deliverers),
        failing_write_(failing_write),
        ledger_(new StreamLedger<Answer>) {}

  void Run() {
    std::vector<std::thread> threads;
    threads.emplace_back([this] { Read(); });
    for (int d = 0; d < deliverers_; ++d) {
      threads.emplace_back([this, d] { Deliver(d); });
    }
    threads.emplace_back([this] { Write(); });
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return finishes_ > 0; });
      transport_done_ = true;
    }
    Release();  // OnDone, racing the calls' releases
    for (std::thread& t : threads) t.join();
  }

  void Check(const std::string& run) const {
    EXPECT_EQ(error_, "") << run;
    EXPECT_EQ(finishes_, 1) << run;
    EXPECT_EQ(deletes_, 1) << run;
    EXPECT_TRUE(paused_) << run;
    std::set<int> written;
    std::vector<int> last_sequence(deliverers_, -1);
    for (const Answer& a : written_) {
      EXPECT_TRUE(written.insert(a.request).second)
          << run << ": answer " << a.request << " written twice";
      EXPECT_GT(a.sequence, last_sequence[a.deliverer])
          << run << ": answer " << a.request << " out of delivery order";
      last_sequence[a.deliverer] = a.sequence;
    }
    const size_t expected = failing_write_ < requests_
                                ? static_cast<size_t>(failing_write_) + 1
                                : static_cast<size_t>(requests_);
    EXPECT_EQ(written_.size(), expected) << run;
  }

 private:
  using Next = StreamLedger<Answer>::Next;

  void Read() {
    for (int i = 0; i <= requests_; ++i) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return read_outstanding_; });
      read_outstanding_ = false;
      if (i == requests_) {  // the client half-closes
        reads_ended_ = true;
        gate_open_ = true;
        cv_.notify_all();
        lock.unlock();
        Do(ledger_->ReadsDone());
        return;
      }
      // Until reading first pauses, the first write waits and every answer
      // is delivered before the next read, so the 65th read pauses.
      if (!gate_open_) {
        cv_.wait(lock, [this, i] { return delivered_ == i; });
      }
      lock.unlock();
      const Next next = ledger_->RequestRead();
      lock.lock();
      if (!next.read) {
        paused_ = true;
        gate_open_ = true;
      }
      to_deliver_.push_back(i);
      cv_.notify_all();
      lock.unlock();
      Do(next);
    }
  }

  void Deliver(int deliverer) {
    int sequence = 0;
    for (;;) {
      int request;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] {
          return !to_deliver_.empty() || taken_ == requests_;
        });
        if (to_deliver_.empty()) return;
        request = to_deliver_.front();
        to_deliver_.pop_front();
        ++taken_;
        cv_.notify_all();
      }
      Do(ledger_->Delivered(Answer{request, deliverer, sequence++}));
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++delivered_;
        ++released_;
        cv_.notify_all();
      }
      Release();
    }
  }

  void Write() {
    for (int w = 0;; ++w) {
      const Answer* answer;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] {
          return (in_flight_ != nullptr && gate_open_) || finishes_ > 0;
        });
        if (in_flight_ == nullptr) return;  // finished: no write will come
        answer = in_flight_;
        in_flight_ = nullptr;
      }
      const bool ok = w != failing_write_;
      {
        // Read outside the test's lock, as gRPC reads the message.
        const Answer copy = *answer;
        std::lock_guard<std::mutex> lock(mu_);
        written_.push_back(copy);
        if (!ok) failed_ = true;
      }
      Do(ledger_->WriteDone(ok));
    }
  }

  void Do(const Next& next) {
    std::lock_guard<std::mutex> lock(mu_);
    if (next.read) {
      if (read_outstanding_) error_ = "a second read";
      if (reads_ended_) error_ = "a read after reads ended";
      read_outstanding_ = true;
    }
    if (next.write != nullptr) {
      if (in_flight_ != nullptr) error_ = "a second write in flight";
      if (failed_) error_ = "a write after a failed write";
      in_flight_ = next.write;
    }
    if (next.finish) {
      ++finishes_;
      if (!reads_ended_ || taken_ != requests_ || in_flight_ != nullptr) {
        error_ = "finish too early";
      }
    }
    cv_.notify_all();
  }

  void Release() {
    if (!ledger_->Release()) return;
    delete ledger_;  // a later use of the ledger is a use after free
    std::lock_guard<std::mutex> lock(mu_);
    ++deletes_;
    if (!transport_done_ || released_ != requests_) {
      error_ = "delete before the transport's done or a call's release";
    }
  }

  const int requests_;
  const int deliverers_;
  const int failing_write_;  // >= requests_: none fails
  StreamLedger<Answer>* const ledger_;

  std::mutex mu_;  // the simulation's state below, not the ledger's
  std::condition_variable cv_;
  bool read_outstanding_ = true;
  bool reads_ended_ = false;
  bool paused_ = false;
  bool gate_open_ = false;
  std::deque<int> to_deliver_;
  int taken_ = 0;
  int delivered_ = 0;
  int released_ = 0;
  const Answer* in_flight_ = nullptr;
  std::vector<Answer> written_;
  bool failed_ = false;
  int finishes_ = 0;
  bool transport_done_ = false;
  int deletes_ = 0;
  std::string error_;
};

TEST(StreamLedgerTest, ConcurrentDeliveriesWritesAndPausedReadsWriteEachAnswerOnceInOrder) {
  std::mt19937 random(20240611);
  for (int run = 0; run < 200; ++run) {
    const int requests = 80 + static_cast<int>(random() % 120);
    // One run in four has no failing write; the others fail one write,
    // anywhere (or, past the answers, none).
    const int failing_write = run % 4 == 0
                                  ? requests
                                  : static_cast<int>(random() % (requests + 10));
    ConcurrentStream stream(requests, /*deliverers=*/3, failing_write);
    stream.Run();
    stream.Check("run " + std::to_string(run) + " (" + std::to_string(requests) +
                 " requests, write " + std::to_string(failing_write) + " fails)");
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace clipserve::server
