// WindowBuffer: one live stream's frames, kept only while a window still
// needs them, and the sliding windows they make.
//
//   WindowBuffer windows({.length = 8, .stride = 4, .frame_bytes = 112 * 112 * 3});
//   for each decoded frame:
//     if (!windows.Wants()) { windows.Skip(pts_us); continue; }  // no copy
//     Convert(frame, windows.Next());                // writes frame_bytes
//     if (windows.Commit(pts_us)) {
//       windows.CopyWindow(clip);                    // length * frame_bytes
//       Enqueue(clip, windows.window());
//     }
//
// The contract:
//  - Frames are numbered in arrival order from 0. Window w covers frames
//    w * stride ... w * stride + length - 1, and is complete when its last
//    frame is committed (Commit() returns true for exactly that frame; one
//    frame completes at most one window).
//  - A frame no window covers (stride > length) is not wanted: Wants() is
//    false and the caller calls Skip() instead of Next()/Commit(), so it is
//    never converted or copied.
//  - The buffer holds `length` frames, allocated once at construction: no
//    allocation per frame or per window afterwards.
//  - CopyWindow() copies the last completed window's frames, oldest first,
//    contiguous (T x H x W x 3 for RGB frames). It stays valid until the
//    next Commit() or Skip().
// Not thread-safe: one stream's frames come from one thread.
#ifndef CLIPSERVE_SERVER_STREAMS_WINDOW_BUFFER_H_
#define CLIPSERVE_SERVER_STREAMS_WINDOW_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace clipserve::server {

class WindowBuffer {
 public:
  struct Options {
    int64_t length = 16;     // frames in a window, >= 1
    int64_t stride = 16;     // frames between window starts, >= 1
    size_t frame_bytes = 0;  // >= 1
  };

  // Where a completed window lies in the stream.
  struct Window {
    int64_t number = 0;       // 0, 1, 2, ...
    int64_t first_frame = 0;  // arrival indices
    int64_t last_frame = 0;
    int64_t first_pts_us = 0;  // the frames' timestamps, as committed
    int64_t last_pts_us = 0;
    // The frames' numbers in the source (as committed; the arrival indices
    // when none was given), e.g. when only every k-th decoded frame arrives.
    int64_t first_source_frame = 0;
    int64_t last_source_frame = 0;
  };

  // Options must be valid (the caller checks what users give).
  explicit WindowBuffer(const Options& options);

  // Whether the next frame belongs to any window.
  bool Wants() const;
  // Where to write the next frame (frame_bytes); only when Wants().
  uint8_t* Next();
  // The frame written at Next() arrived, with its timestamp and its number
  // in the source (-1: its arrival index); true if it completes a window.
  bool Commit(int64_t pts_us, int64_t source_frame = -1);
  // The next frame arrived and no window wants it.
  void Skip();

  // The last completed window, and its frames into `out`.
  const Window& window() const { return window_; }
  void CopyWindow(uint8_t* out) const;

  int64_t frames_seen() const { return next_frame_; }

 private:
  const Options options_;
  std::vector<uint8_t> ring_;       // length frames
  std::vector<int64_t> ring_pts_;   // their timestamps
  std::vector<int64_t> ring_source_;  // and numbers in the source
  int64_t next_frame_ = 0;          // index of the next frame to arrive
  Window window_;
};

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_STREAMS_WINDOW_BUFFER_H_
