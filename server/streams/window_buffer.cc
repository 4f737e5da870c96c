#include "server/streams/window_buffer.h"

#include <cstring>

namespace clipserve::server {

WindowBuffer::WindowBuffer(const Options& options)
    : options_(options),
      ring_(static_cast<size_t>(options.length) * options.frame_bytes),
      ring_pts_(static_cast<size_t>(options.length)),
      ring_source_(static_cast<size_t>(options.length)) {}

bool WindowBuffer::Wants() const {
  // Frame n is in window w iff w * stride <= n < w * stride + length for
  // some w >= 0: the latest window starting at or before n covers it.
  const int64_t latest = next_frame_ / options_.stride;
  return next_frame_ < latest * options_.stride + options_.length;
}

uint8_t* WindowBuffer::Next() {
  const size_t slot = static_cast<size_t>(next_frame_ % options_.length);
  return ring_.data() + slot * options_.frame_bytes;
}

bool WindowBuffer::Commit(int64_t pts_us, int64_t source_frame) {
  const int64_t n = next_frame_++;
  const size_t slot = static_cast<size_t>(n % options_.length);
  ring_pts_[slot] = pts_us;
  ring_source_[slot] = source_frame >= 0 ? source_frame : n;
  // Window w ends at frame w * stride + length - 1.
  const int64_t end_offset = n - (options_.length - 1);
  if (end_offset < 0 || end_offset % options_.stride != 0) return false;
  window_.number = end_offset / options_.stride;
  window_.first_frame = end_offset;
  window_.last_frame = n;
  window_.first_pts_us = ring_pts_[static_cast<size_t>(end_offset % options_.length)];
  window_.last_pts_us = pts_us;
  window_.first_source_frame =
      ring_source_[static_cast<size_t>(end_offset % options_.length)];
  window_.last_source_frame = ring_source_[slot];
  return true;
}

void WindowBuffer::Skip() { ++next_frame_; }

void WindowBuffer::CopyWindow(uint8_t* out) const {
  // The window's frames are the last `length` committed, oldest at the slot
  // of first_frame; in the ring they wrap at most once.
  const size_t fb = options_.frame_bytes;
  const size_t first = static_cast<size_t>(window_.first_frame % options_.length);
  const size_t count = static_cast<size_t>(options_.length);
  const size_t tail = count - first;  // frames from `first` to the ring's end
  std::memcpy(out, ring_.data() + first * fb, tail * fb);
  std::memcpy(out + tail * fb, ring_.data(), first * fb);
}

}  // namespace clipserve::server
