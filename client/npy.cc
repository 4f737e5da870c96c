#include "client/npy.h"

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace clipserve::client {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

uint32_t LittleEndian(const std::string& s, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  }
  return v;
}

int64_t ItemSize(const std::string& descr) {
  if (descr.size() < 3) return 0;
  int64_t n = 0;
  return absl::SimpleAtoi(descr.substr(2), &n) ? n : 0;
}

}  // namespace

absl::StatusOr<NpyArray> ParseNpy(const std::string& bytes) {
  if (bytes.size() < kMagicLen + 4 || bytes.compare(0, kMagicLen, kMagic) != 0) {
    return absl::InvalidArgumentError("not a .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0;
  size_t header_at = 0;
  if (major == 1) {
    header_len = LittleEndian(bytes, 8, 2);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return absl::InvalidArgumentError(".npy truncated");
    header_len = LittleEndian(bytes, 8, 4);
    header_at = 12;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(".npy format version ", major, " is not supported"));
  }
  if (bytes.size() < header_at + header_len) {
    return absl::InvalidArgumentError(".npy header truncated");
  }
  const std::string header = bytes.substr(header_at, header_len);
  std::smatch m;
  NpyArray array;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']+)')"))) {
    return absl::InvalidArgumentError(".npy header has no descr");
  }
  array.descr = m[1];
  if (std::regex_search(header, m,
                        std::regex(R"('fortran_order'\s*:\s*True)"))) {
    return absl::InvalidArgumentError(
        ".npy array is in Fortran order; save it in C order");
  }
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) {
    return absl::InvalidArgumentError(".npy header has no shape");
  }
  int64_t elements = 1;
  for (absl::string_view part :
       absl::StrSplit(std::string(m[1]), ',', absl::SkipWhitespace())) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &d) || d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(".npy shape entry '", part, "' is not a size"));
    }
    array.shape.push_back(d);
    elements *= d;
  }
  const int64_t item = ItemSize(array.descr);
  if (item == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(".npy dtype '", array.descr, "' is not supported"));
  }
  const size_t data_at = header_at + header_len;
  const size_t want = static_cast<size_t>(elements * item);
  if (bytes.size() - data_at != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(".npy data has ", bytes.size() - data_at, " bytes; shape (",
                     absl::StrJoin(array.shape, ", "), ") of ", array.descr,
                     " needs ", want));
  }
  array.data = bytes.substr(data_at);
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::stringstream bytes;
  bytes << in.rdbuf();
  absl::StatusOr<NpyArray> array = ParseNpy(bytes.str());
  if (!array.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", array.status().message()));
  }
  return array;
}

std::string SerializeNpy(const NpyArray& array) {
  std::string shape = absl::StrJoin(array.shape, ", ");
  if (array.shape.size() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '", array.descr,
                   "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Pad with spaces so that the data starts on a 64-byte boundary.
  const size_t unpadded = kMagicLen + 4 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out += array.data;
  return out;
}

}  // namespace clipserve::client
