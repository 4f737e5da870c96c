// StreamLedger: the bookkeeping of one bidirectional stream that answers each
// request it reads with one answer, written back in the order the answers
// were delivered (KServe's ModelStreamInfer, server/kserve_service.cc). It
// knows nothing of gRPC: the caller reports what happened (a request was
// read, reads ended, an answer was delivered, a write completed, a reference
// was dropped) and the ledger says what the caller must do now.
//
//   StreamLedger<std::unique_ptr<Response>> ledger;  // one read outstanding
//   OnReadDone(!ok): Do(ledger.ReadsDone());
//   OnReadDone(ok):  take the request; Do(ledger.RequestRead()); hand the
//                    request to a call (it holds the reference just taken)
//   call answers:    Do(ledger.Delivered(std::move(answer)));
//                    if (ledger.Release()) delete stream;
//   OnWriteDone(ok): Do(ledger.WriteDone(ok));
//   OnDone:          if (ledger.Release()) delete stream;
//   Do(n): if (n.read) StartRead(...);  if (n.write) StartWrite(n.write->get());
//          if (n.finish) Finish(OK);
//
// The rules, each proven in tests/server/stream_ledger_test.cc:
//
//  * Answers are written one at a time, in the order they were delivered: a
//    Delivered() while no write is in flight says to write that answer; one
//    while a write is in flight queues it, and each WriteDone(true) says to
//    write the next queued answer, if any.
//  * The answers delivered and not yet written, the one being written
//    included, are "unwritten". A RequestRead() made while
//    kMaxUnwrittenAnswers or more are unwritten pauses reading (it does not
//    say to read again); the WriteDone() that brings the count below the
//    limit resumes it (says to read, once). Otherwise every RequestRead()
//    says to read the next request. A client that does not read its answers
//    thus cannot make the stream hold more than kMaxUnwrittenAnswers plus the
//    answers of the requests still being answered.
//  * A failed write (WriteDone(false)) means the client is gone: it drops
//    every queued answer and every answer delivered later, and starts no
//    further write; reading goes on (resuming if it was paused), so the
//    stream still finishes once reads end and every request is answered.
//  * Finish is said exactly once, by the first event after which reads have
//    ended, every request read has been delivered, and no write is in flight.
//  * The stream has one reference from construction (the transport's, dropped
//    when the transport is done with it: gRPC's OnDone) and one per request
//    read (taken by RequestRead(), dropped by the call after it delivered).
//    Release() says true exactly once, for the last of them, so the stream is
//    deleted only after the transport is done and the last call that will
//    deliver has delivered.
//
// The caller keeps to the protocol it implies: at most one read outstanding
// (RequestRead()/ReadsDone() only for a read the ledger asked for, the first
// one being implicit), WriteDone() only for the write in flight, Delivered()
// once per RequestRead() and before that call's Release(). An answer told to
// write (Next::write) stays where it is, untouched, until its WriteDone().
// Once RequestRead() returned, another thread's WriteDone() may resume
// reading: take what the finished read filled before reporting it.
//
// Thread-safe: one mutex, held only inside the ledger's methods; the caller
// acts on a Next after the method returned. No allocation per request other
// than the answers' queue (a std::deque's blocks).
#ifndef CLIPSERVE_SERVER_STREAM_LEDGER_H_
#define CLIPSERVE_SERVER_STREAM_LEDGER_H_

#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

namespace clipserve::server {

template <typename Answer>
class StreamLedger {
 public:
  // Unwritten answers at which reading pauses.
  static constexpr size_t kMaxUnwrittenAnswers = 64;

  // What the caller must do after an event, in this order: read, then write,
  // then finish (finish never comes with a read or a write).
  struct Next {
    bool read = false;        // start reading the next request
    Answer* write = nullptr;  // start writing this answer
    bool finish = false;      // finish the stream (said exactly once)
  };

  StreamLedger() = default;
  StreamLedger(const StreamLedger&) = delete;
  StreamLedger& operator=(const StreamLedger&) = delete;

  // A request was read. Takes a reference for the call that will deliver its
  // answer; says to read the next one unless reading pauses.
  Next RequestRead() {
    Next next;
    std::lock_guard<std::mutex> lock(mu_);
    ++pending_;
    ++refs_;
    reading_paused_ = writes_.size() >= kMaxUnwrittenAnswers;
    next.read = !reading_paused_;
    return next;
  }

  // The outstanding read failed: the client half-closed or is gone.
  Next ReadsDone() {
    Next next;
    std::lock_guard<std::mutex> lock(mu_);
    reads_done_ = true;
    next.finish = ShouldFinish();
    return next;
  }

  // The answer to one request read; dropped (destroyed after the ledger's
  // lock is released) when a write failed.
  Next Delivered(Answer answer) {
    Next next;
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
    if (!broken_) {
      writes_.push_back(std::move(answer));
      if (!writing_) {
        writing_ = true;
        next.write = &writes_.front();
        return next;
      }
    }
    next.finish = ShouldFinish();
    return next;
  }

  // The write in flight completed (ok) or failed (!ok).
  Next WriteDone(bool ok) {
    Next next;
    std::lock_guard<std::mutex> lock(mu_);
    writes_.pop_front();
    if (!ok) {
      broken_ = true;
      writes_.clear();
    }
    if (writes_.empty()) {
      writing_ = false;
    } else {
      next.write = &writes_.front();
    }
    if (reading_paused_ && writes_.size() < kMaxUnwrittenAnswers) {
      reading_paused_ = false;
      next.read = true;
    }
    if (next.write == nullptr) next.finish = ShouldFinish();
    return next;
  }

  // Drops a reference (the transport's, or a call's after it delivered).
  // True for the last one: the caller deletes the stream now.
  bool Release() {
    std::lock_guard<std::mutex> lock(mu_);
    return --refs_ == 0;
  }

  // Answers delivered and not yet written (the one being written included).
  size_t unwritten() const {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_.size();
  }

 private:
  // Called with mu_ held.
  bool ShouldFinish() {
    if (finished_ || !reads_done_ || pending_ > 0 || writing_) return false;
    finished_ = true;
    return true;
  }

  mutable std::mutex mu_;
  std::deque<Answer> writes_;  // writes_.front() is in flight while writing_
  bool reading_paused_ = false;  // no read outstanding: writes_ is full
  int refs_ = 1;                 // the transport's, until it is done
  int pending_ = 0;              // requests read and not yet delivered
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;  // a write failed: the client is gone
  // Said finish. Under the protocol no event asks again once finish was
  // said (nothing is left to read, deliver or write); kept as a guard.
  bool finished_ = false;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_STREAM_LEDGER_H_
