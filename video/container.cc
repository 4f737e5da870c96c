#include "video/container.h"

#include <cstddef>
#include <cstdint>

namespace clipserve::video {
namespace {

uint8_t At(absl::string_view b, size_t i) { return static_cast<uint8_t>(b[i]); }

bool HasAt(absl::string_view b, size_t offset, absl::string_view magic) {
  return b.size() >= offset + magic.size() &&
         b.substr(offset, magic.size()) == magic;
}

// ISO base media (MP4, MOV, 3GP): a box whose type is one that starts such
// files. Old QuickTime files start with moov, mdat, wide, free or skip.
bool IsIsoBmff(absl::string_view b) {
  if (b.size() < 8) return false;
  const absl::string_view type = b.substr(4, 4);
  return type == "ftyp" || type == "moov" || type == "mdat" || type == "free" ||
         type == "skip" || type == "wide" || type == "pnot";
}

// MPEG transport stream: sync byte 0x47 every 188 bytes (192 for M2TS, with a
// 4-byte timestamp first), at each of the first four packets that the bytes
// reach, and at least two.
bool IsMpegTs(absl::string_view b) {
  for (size_t packet : {size_t{188}, size_t{192}}) {
    const size_t first = packet - 188;
    if (b.size() <= first + packet) continue;
    bool synced = true;
    for (size_t i = 0; i < 4 && first + i * packet < b.size(); ++i) {
      synced = synced && At(b, first + i * packet) == 0x47;
    }
    if (synced) return true;
  }
  return false;
}

// H.264 Annex B elementary stream: a start code, then an SPS or an access
// unit delimiter NAL unit.
bool IsH264AnnexB(absl::string_view b) {
  size_t nal = 0;
  if (HasAt(b, 0, absl::string_view("\0\0\0\1", 4))) {
    nal = 4;
  } else if (HasAt(b, 0, absl::string_view("\0\0\1", 3))) {
    nal = 3;
  } else {
    return false;
  }
  if (b.size() <= nal) return false;
  const uint8_t header = At(b, nal);
  const uint8_t type = header & 0x1f;
  return (header & 0x80) == 0 && (type == 7 || type == 9);
}

}  // namespace

absl::string_view SniffContainer(absl::string_view b) {
  if (IsIsoBmff(b)) return "MP4/MOV";
  if (HasAt(b, 0, "RIFF") && HasAt(b, 8, "AVI ")) return "AVI";
  if (HasAt(b, 0, "\x1a\x45\xdf\xa3")) return "Matroska/WebM";
  if (HasAt(b, 0, absl::string_view("\0\0\1\xba", 4))) return "MPEG-PS";
  if (IsMpegTs(b)) return "MPEG-TS";
  if (HasAt(b, 0, "FLV\x01")) return "FLV";
  if (HasAt(b, 0, "OggS")) return "Ogg";
  if (HasAt(b, 0, "\x30\x26\xb2\x75\x8e\x66\xcf\x11")) return "ASF";
  if (HasAt(b, 0, "YUV4MPEG2 ")) return "Y4M";
  if (IsH264AnnexB(b)) return "H.264";
  return {};
}

absl::string_view AcceptedContainers() {
  return "MP4/MOV, AVI, Matroska/WebM, MPEG-TS, MPEG-PS, FLV, Ogg, ASF, Y4M, "
         "raw H.264";
}

}  // namespace clipserve::video
