#include "runtime/zip_check.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace clipserve::runtime {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentralDir = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDir = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint64_t kEocdSize = 22, kZip64EocdSize = 56, kLocatorSize = 20;
constexpr uint64_t kCentralSize = 46, kLocalSize = 30;

// Little-endian reads at `at`, which the caller has bounds-checked.
uint64_t Le(absl::string_view s, uint64_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  }
  return v;
}

absl::Status Bad(uint64_t at, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("damaged zip archive: ", what, " (at byte ", at, ")"));
}

// Whether [at, at + n) lies within [0, end), without overflow.
bool Within(uint64_t at, uint64_t n, uint64_t end) { return at <= end && n <= end - at; }

// CheckZipStructure, and where the data of the stored entry whose name
// ends with `suffix` lies (empty when there is none).
absl::Status CheckZip(absl::string_view z, absl::string_view suffix,
                      absl::string_view* found);

}  // namespace

absl::Status CheckZipStructure(absl::string_view z) {
  absl::string_view unused;
  return CheckZip(z, "", &unused);
}

namespace {

absl::Status CheckZip(absl::string_view z, absl::string_view suffix,
                      absl::string_view* found) {
  *found = absl::string_view();
  const uint64_t size = z.size();
  if (size < kEocdSize) return Bad(0, "too short for an end of central directory");
  // The end record: the last one whose comment runs exactly to the end.
  uint64_t eocd = size;
  const uint64_t lowest = size > kEocdSize + 0xffff ? size - kEocdSize - 0xffff : 0;
  for (uint64_t at = size - kEocdSize + 1; at-- > lowest;) {
    if (Le(z, at, 4) == kEndOfCentralDir && at + kEocdSize + Le(z, at + 20, 2) == size) {
      eocd = at;
      break;
    }
  }
  if (eocd == size) return Bad(size, "no end of central directory record");
  if (Le(z, eocd + 4, 2) != 0 || Le(z, eocd + 6, 2) != 0) {
    return Bad(eocd, "a multi-disk archive");
  }
  uint64_t entries = Le(z, eocd + 10, 2);
  if (Le(z, eocd + 8, 2) != entries) return Bad(eocd, "entry counts disagree");
  uint64_t cd_size = Le(z, eocd + 12, 4);
  uint64_t cd_offset = Le(z, eocd + 16, 4);
  uint64_t cd_end_limit = eocd;  // the central directory ends before this
  if (eocd >= kLocatorSize && Le(z, eocd - kLocatorSize, 4) == kZip64Locator) {
    const uint64_t locator = eocd - kLocatorSize;
    if (Le(z, locator + 4, 4) != 0 || Le(z, locator + 16, 4) > 1) {
      return Bad(locator, "a multi-disk zip64 archive");
    }
    const uint64_t z64 = Le(z, locator + 8, 8);
    if (!Within(z64, kZip64EocdSize, locator) || Le(z, z64, 4) != kZip64EndOfCentralDir) {
      return Bad(locator, "the zip64 end of central directory is not where its locator says");
    }
    const uint64_t record = Le(z, z64 + 4, 8);
    if (record < kZip64EocdSize - 12 || !Within(z64, 12 + record, locator)) {
      return Bad(z64, "zip64 end of central directory size");
    }
    if (Le(z, z64 + 16, 4) != 0 || Le(z, z64 + 20, 4) != 0) {
      return Bad(z64, "a multi-disk zip64 archive");
    }
    entries = Le(z, z64 + 32, 8);
    if (Le(z, z64 + 24, 8) != entries) return Bad(z64, "zip64 entry counts disagree");
    cd_size = Le(z, z64 + 40, 8);
    cd_offset = Le(z, z64 + 48, 8);
    cd_end_limit = z64;
  } else if (entries == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    return Bad(eocd, "zip64 values without a zip64 end of central directory");
  }
  if (!Within(cd_offset, cd_size, cd_end_limit)) {
    return Bad(eocd, "the central directory lies outside the archive");
  }
  if (entries > cd_size / kCentralSize) {
    return Bad(eocd, "more entries than the central directory can hold");
  }

  const uint64_t cd_end = cd_offset + cd_size;
  uint64_t at = cd_offset;
  for (uint64_t i = 0; i < entries; ++i) {
    if (!Within(at, kCentralSize, cd_end) || Le(z, at, 4) != kCentralHeader) {
      return Bad(at, absl::StrCat("central directory entry ", i, " missing"));
    }
    const uint64_t method = Le(z, at + 10, 2);
    uint64_t compressed = Le(z, at + 20, 4);
    uint64_t uncompressed = Le(z, at + 24, 4);
    const uint64_t name_len = Le(z, at + 28, 2);
    const uint64_t extra_len = Le(z, at + 30, 2);
    const uint64_t comment_len = Le(z, at + 32, 2);
    uint64_t local = Le(z, at + 42, 4);
    const uint64_t entry_len = kCentralSize + name_len + extra_len + comment_len;
    if (!Within(at, entry_len, cd_end)) {
      return Bad(at, absl::StrCat("central directory entry ", i, " runs past the directory"));
    }
    if (method != 0 && method != 8) {
      return Bad(at, absl::StrCat("entry ", i, " uses compression method ", method));
    }
    // Extra fields: (id, size, data) blocks filling the extra field exactly;
    // the zip64 one (id 1) holds the 64-bit values whose 32-bit field is
    // all ones, in the order uncompressed, compressed, local offset.
    const uint64_t extra = at + kCentralSize + name_len;
    for (uint64_t e = extra; e < extra + extra_len;) {
      if (!Within(e, 4, extra + extra_len)) return Bad(e, "truncated extra field");
      const uint64_t id = Le(z, e, 2), len = Le(z, e + 2, 2);
      if (!Within(e + 4, len, extra + extra_len)) return Bad(e, "extra field runs past its entry");
      if (id == 1) {
        uint64_t p = e + 4;
        for (uint64_t* v : {&uncompressed, &compressed, &local}) {
          if (*v != 0xffffffff) continue;
          if (!Within(p, 8, e + 4 + len)) return Bad(e, "zip64 extra field too short");
          *v = Le(z, p, 8);
          p += 8;
        }
      }
      e += 4 + len;
    }
    if (method == 0 && compressed != uncompressed) {
      return Bad(at, absl::StrCat("stored entry ", i, " has two different sizes"));
    }
    if (!Within(local, kLocalSize, cd_offset) || Le(z, local, 4) != kLocalHeader) {
      return Bad(at, absl::StrCat("entry ", i, "'s local header is not where it says"));
    }
    const uint64_t data = local + kLocalSize + Le(z, local + 26, 2) + Le(z, local + 28, 2);
    if (!Within(data, compressed, cd_offset)) {
      return Bad(local, absl::StrCat("entry ", i, "'s data runs into the central directory"));
    }
    const absl::string_view name = z.substr(at + kCentralSize, name_len);
    if (!suffix.empty() && method == 0 && absl::EndsWith(name, suffix)) {
      *found = z.substr(data, compressed);
    }
    at += entry_len;
  }
  return absl::OkStatus();
}

// The pickle opcodes (protocols 0-5) that take no argument.
bool ArgumentFree(unsigned char op) {
  static constexpr absl::string_view kOps =
      "()NtlduaebsRoQ01]}2\x85\x86\x87\x88\x89\x81\x8f\x90\x91\x92\x93\x94\x97\x98";
  return kOps.find(static_cast<char>(op)) != absl::string_view::npos;
}

absl::Status BadPickle(uint64_t at, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("damaged pickle (data.pkl): ", what, " (at byte ", at, ")"));
}

// Walks the opcodes of pickle protocols 0-5 as far as it knows them.
absl::Status CheckPickleLengths(absl::string_view p) {
  const uint64_t size = p.size();
  uint64_t at = 0;
  while (at < size) {
    const unsigned char op = static_cast<unsigned char>(p[at]);
    const uint64_t arg = at + 1;
    uint64_t length_bytes = 0;  // a length prefix of this many bytes, then data
    uint64_t fixed = 0;         // or a fixed-size argument
    int lines = 0;              // or newline-terminated arguments
    switch (op) {
      case '.':  // STOP
        return absl::OkStatus();
      case 'K': case 'q': case 'h': case 0x80: case 0x82:  // 1-byte args
        fixed = 1; break;
      case 'M': case 0x83:
        fixed = 2; break;
      case 'J': case 'r': case 'j': case 0x84:
        fixed = 4; break;
      case 'G': case 0x95:  // BINFLOAT, FRAME
        fixed = 8; break;
      case 'U': case 'C': case 0x8c: case 0x8a:  // 1-byte length prefix
        length_bytes = 1; break;
      case 'T': case 'X': case 'B': case 0x8b:   // 4-byte length prefix
        length_bytes = 4; break;
      case 0x8d: case 0x8e: case 0x96:           // 8-byte length prefix
        length_bytes = 8; break;
      case 'c': case 'i':
        lines = 2; break;
      case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': case 'g': case 'p':
        lines = 1; break;
      default:
        // Argument-free opcodes go on; an unknown one ends the walk (LibTorch
        // refuses it).
        if (!ArgumentFree(op)) return absl::OkStatus();
        break;
    }
    if (length_bytes > 0) {
      if (!Within(arg, length_bytes, size)) return BadPickle(at, "truncated length");
      const uint64_t n = Le(p, arg, static_cast<int>(length_bytes));
      if (!Within(arg + length_bytes, n, size)) {
        return BadPickle(at, absl::StrCat("an argument of ", n, " bytes with ",
                                          size - arg - length_bytes, " left"));
      }
      at = arg + length_bytes + n;
    } else if (fixed > 0) {
      if (!Within(arg, fixed, size)) return BadPickle(at, "truncated argument");
      at = arg + fixed;
    } else if (lines > 0) {
      uint64_t end = arg;
      for (int l = 0; l < lines; ++l) {
        const size_t nl = p.find('\n', end);
        if (nl == absl::string_view::npos) return BadPickle(at, "unterminated argument");
        end = nl + 1;
      }
      at = end;
    } else {
      at = arg;
    }
  }
  return BadPickle(size, "no STOP opcode");
}

}  // namespace

absl::Status CheckTorchSaveArchive(absl::string_view archive) {
  absl::string_view pickle;
  if (absl::Status s = CheckZip(archive, "/data.pkl", &pickle); !s.ok()) return s;
  if (pickle.empty()) return absl::OkStatus();  // LibTorch says what is missing
  return CheckPickleLengths(pickle);
}

}  // namespace clipserve::runtime
