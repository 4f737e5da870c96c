// WindowBuffer: which frames make which window, for strides below, at and
// above the window length; frames no window covers are never stored.
#include "server/streams/window_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace clipserve::server {
namespace {

constexpr size_t kFrameBytes = 3;

// Feeds frames 0..count-1 (each frame's bytes hold its index, its
// timestamp is 1000 * index) and returns, per completed window, the frame
// indices CopyWindow() gave, and the windows' positions.
struct Fed {
  std::vector<std::vector<int>> frames;
  std::vector<WindowBuffer::Window> windows;
  std::vector<int> skipped;
};

Fed Feed(int64_t length, int64_t stride, int count) {
  WindowBuffer buffer({length, stride, kFrameBytes});
  Fed run;
  std::vector<uint8_t> clip(static_cast<size_t>(length) * kFrameBytes);
  for (int i = 0; i < count; ++i) {
    if (!buffer.Wants()) {
      buffer.Skip();
      run.skipped.push_back(i);
      continue;
    }
    uint8_t* frame = buffer.Next();
    for (size_t b = 0; b < kFrameBytes; ++b) frame[b] = static_cast<uint8_t>(i);
    if (!buffer.Commit(1000 * i)) continue;
    buffer.CopyWindow(clip.data());
    std::vector<int> shown;
    for (int64_t t = 0; t < length; ++t) {
      const uint8_t* f = clip.data() + t * kFrameBytes;
      EXPECT_EQ(f[0], f[kFrameBytes - 1]) << "a frame's bytes stay together";
      shown.push_back(f[0]);
    }
    run.frames.push_back(shown);
    run.windows.push_back(buffer.window());
  }
  EXPECT_EQ(buffer.frames_seen(), count);
  return run;
}

TEST(WindowBufferTest, OverlappingWindowsShareFramesOldestFirst) {
  const Fed run = Feed(4, 2, 10);
  EXPECT_EQ(run.frames, (std::vector<std::vector<int>>{
                            {0, 1, 2, 3}, {2, 3, 4, 5}, {4, 5, 6, 7}, {6, 7, 8, 9}}));
  ASSERT_EQ(run.windows.size(), 4u);
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(run.windows[w].number, w);
    EXPECT_EQ(run.windows[w].first_frame, 2 * w);
    EXPECT_EQ(run.windows[w].last_frame, 2 * w + 3);
    EXPECT_EQ(run.windows[w].first_pts_us, 2000 * w);
    EXPECT_EQ(run.windows[w].last_pts_us, 1000 * (2 * w + 3));
  }
  EXPECT_TRUE(run.skipped.empty());
}

TEST(WindowBufferTest, StrideOfOneSlidesAFrameAtATime) {
  const Fed run = Feed(3, 1, 6);
  EXPECT_EQ(run.frames, (std::vector<std::vector<int>>{
                            {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}}));
}

TEST(WindowBufferTest, StrideEqualToTheLengthTilesTheStream) {
  const Fed run = Feed(4, 4, 13);  // frame 12 starts a window that never ends
  EXPECT_EQ(run.frames, (std::vector<std::vector<int>>{
                            {0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}));
  EXPECT_TRUE(run.skipped.empty());
}

TEST(WindowBufferTest, FramesBetweenSparseWindowsAreNeverStored) {
  const Fed run = Feed(2, 5, 13);
  EXPECT_EQ(run.frames, (std::vector<std::vector<int>>{{0, 1}, {5, 6}, {10, 11}}));
  EXPECT_EQ(run.skipped, (std::vector<int>{2, 3, 4, 7, 8, 9, 12}));
  EXPECT_EQ(run.windows[2].number, 2);
  EXPECT_EQ(run.windows[2].first_frame, 10);
}

TEST(WindowBufferTest, OneFrameWindows) {
  const Fed run = Feed(1, 1, 3);
  EXPECT_EQ(run.frames, (std::vector<std::vector<int>>{{0}, {1}, {2}}));
}

TEST(WindowBufferTest, ItsStorageIsTheSameFromTheFirstFrameOn) {
  WindowBuffer buffer({4, 2, kFrameBytes});
  std::vector<const uint8_t*> slots;
  for (int i = 0; i < 40; ++i) {
    uint8_t* at = buffer.Next();
    if (i < 4) slots.push_back(at);
    EXPECT_EQ(at, slots[static_cast<size_t>(i % 4)]) << "frame " << i;
    buffer.Commit(i);
  }
}

}  // namespace
}  // namespace clipserve::server

namespace clipserve::server {
namespace {

TEST(WindowBufferTest, WindowsNameTheSourceFramesTheirFramesCameFrom) {
  // Every third decoded frame arrives: sampled frame n is source frame 3n+1.
  WindowBuffer buffer({3, 3, 1});
  std::vector<WindowBuffer::Window> windows;
  for (int n = 0; n < 6; ++n) {
    *buffer.Next() = 0;
    if (buffer.Commit(100 * n, 3 * n + 1)) windows.push_back(buffer.window());
  }
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[1].first_frame, 3);
  EXPECT_EQ(windows[1].last_frame, 5);
  EXPECT_EQ(windows[1].first_source_frame, 10);
  EXPECT_EQ(windows[1].last_source_frame, 16);
  EXPECT_EQ(windows[0].first_source_frame, 1);
  EXPECT_EQ(windows[0].last_source_frame, 7);
}

TEST(WindowBufferTest, WithoutSourceNumbersTheArrivalIndicesStand) {
  WindowBuffer buffer({2, 2, 1});
  buffer.Commit(0);
  ASSERT_TRUE(buffer.Commit(40));
  EXPECT_EQ(buffer.window().first_source_frame, 0);
  EXPECT_EQ(buffer.window().last_source_frame, 1);
}

}  // namespace
}  // namespace clipserve::server
