// Container sniffing and the in-memory file.
#include "video/container.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/video/test_videos.h"

namespace clipserve::video {
namespace {

using ::clipserve::video::testing::OpenFds;

std::string Bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

TEST(SniffContainerTest, RecognisesEachAcceptedContainer) {
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 0, 0x20}) + "ftypisom"), "MP4/MOV");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 0, 8}) + "wide" + "...."), "MP4/MOV");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 1, 0}) + "moov"), "MP4/MOV");
  EXPECT_EQ(SniffContainer(std::string("RIFF\x10\0\0\0AVI LIST", 16)), "AVI");
  EXPECT_EQ(SniffContainer(std::string("RIFF\x10\0\0\0WAVEfmt ", 16)), "");
  EXPECT_EQ(SniffContainer(Bytes({0x1a, 0x45, 0xdf, 0xa3, 0x9f})),
            "Matroska/WebM");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 1, 0xba, 0x44})), "MPEG-PS");
  EXPECT_EQ(SniffContainer("FLV\x01\x01"), "FLV");
  EXPECT_EQ(SniffContainer("OggS\0"), "Ogg");
  EXPECT_EQ(SniffContainer(
                Bytes({0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11, 0xa6})),
            "ASF");
  EXPECT_EQ(SniffContainer("YUV4MPEG2 W320 H240 F25:1\n"), "Y4M");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 0, 1, 0x67, 0x64})), "H.264");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 1, 0x09, 0xf0})), "H.264");
}

TEST(SniffContainerTest, MpegTsNeedsASyncByteAtEachPacket) {
  std::string ts(188 * 4, '\xff');
  for (int i = 0; i < 4; ++i) ts[188 * i] = 0x47;
  EXPECT_EQ(SniffContainer(ts), "MPEG-TS");
  ts[188 * 2] = 0;
  EXPECT_EQ(SniffContainer(ts), "");
  std::string m2ts(192 * 3, '\xff');
  for (int i = 0; i < 3; ++i) m2ts[4 + 192 * i] = 0x47;
  EXPECT_EQ(SniffContainer(m2ts), "MPEG-TS");
}

TEST(SniffContainerTest, RefusesPlaylistsTextAndNoise) {
  EXPECT_EQ(SniffContainer(""), "");
  EXPECT_EQ(SniffContainer("#EXTM3U\n#EXTINF:2.0,\n/etc/video.mp4\n"), "");
  EXPECT_EQ(SniffContainer("ffconcat version 1.0\nfile a.mp4\n"), "");
  EXPECT_EQ(SniffContainer("<?xml version=\"1.0\"?><MPD>"), "");
  EXPECT_EQ(SniffContainer("v=0\nc=IN IP4 10.0.0.1\n"), "");
  EXPECT_EQ(SniffContainer("\x89PNG\r\n\x1a\n"), "");
  EXPECT_EQ(SniffContainer("GIF89a"), "");
  EXPECT_EQ(SniffContainer("RIFF"), "");
  EXPECT_EQ(SniffContainer(Bytes({0, 0, 0, 1, 0x65})), "");  // IDR slice first
}

}  // namespace
}  // namespace clipserve::video
