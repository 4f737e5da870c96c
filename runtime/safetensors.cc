#include "runtime/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace clipserve::runtime {
namespace {

// ---------------------------------------------------------------------------
// A small JSON parser: what a safetensors header needs (objects, arrays,
// strings, integers). Floats, true/false/null are rejected with a message.

struct JsonValue {
  enum class Kind { kObject, kArray, kString, kInteger };
  Kind kind = Kind::kInteger;
  std::string string;                                     // kString
  bool negative = false;                                  // kInteger
  uint64_t magnitude = 0;                                 // kInteger
  std::vector<JsonValue> array;                           // kArray
  std::vector<std::pair<std::string, JsonValue>> object;  // kObject, in order
};

const char* KindName(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::kObject:
      return "an object";
    case JsonValue::Kind::kArray:
      return "an array";
    case JsonValue::Kind::kString:
      return "a string";
    case JsonValue::Kind::kInteger:
      return "an integer";
  }
  return "a value";
}

class JsonParser {
 public:
  explicit JsonParser(absl::string_view text) : text_(text) {}

  // Parses one value followed only by whitespace.
  absl::StatusOr<JsonValue> ParseDocument() {
    JsonValue value;
    absl::Status status = ParseValue(&value, 0);
    if (!status.ok()) return status;
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("unexpected data after the JSON value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 32;

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON header at byte ", pos_, ": ", what));
  }

  void SkipWhitespace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(char c) {
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  absl::Status ParseValue(JsonValue* out, int depth) {
    if (depth > kMaxDepth) return Error("nested too deeply");
    SkipWhitespace();
    if (pos_ >= text_.size()) return Error("unexpected end, expected a value");
    const char c = text_[pos_];
    if (c == '{') return ParseObject(out, depth);
    if (c == '[') return ParseArray(out, depth);
    if (c == '"') {
      out->kind = JsonValue::Kind::kString;
      return ParseString(&out->string);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseInteger(out);
    if (c == 't' || c == 'f' || c == 'n') {
      return Error("true/false/null are not used in a safetensors header");
    }
    return Error(absl::StrCat("unexpected character '",
                              absl::string_view(&text_[pos_], 1), "'"));
  }

  absl::Status ParseObject(JsonValue* out, int depth) {
    out->kind = JsonValue::Kind::kObject;
    ++pos_;  // '{'
    std::set<std::string> seen;
    if (Consume('}')) return absl::OkStatus();
    while (true) {
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        return Error("expected a string key");
      }
      std::string key;
      absl::Status status = ParseString(&key);
      if (!status.ok()) return status;
      if (!seen.insert(key).second) {
        return Error(absl::StrCat("duplicate key \"", key, "\""));
      }
      if (!Consume(':')) return Error("expected ':'");
      JsonValue value;
      status = ParseValue(&value, depth + 1);
      if (!status.ok()) return status;
      out->object.emplace_back(std::move(key), std::move(value));
      if (Consume(',')) continue;
      if (Consume('}')) return absl::OkStatus();
      return Error("expected ',' or '}'");
    }
  }

  absl::Status ParseArray(JsonValue* out, int depth) {
    out->kind = JsonValue::Kind::kArray;
    ++pos_;  // '['
    if (Consume(']')) return absl::OkStatus();
    while (true) {
      JsonValue value;
      absl::Status status = ParseValue(&value, depth + 1);
      if (!status.ok()) return status;
      out->array.push_back(std::move(value));
      if (Consume(',')) continue;
      if (Consume(']')) return absl::OkStatus();
      return Error("expected ',' or ']'");
    }
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  absl::Status ParseHex4(uint32_t* out) {
    if (text_.size() - pos_ < 4) return Error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Error("invalid \\u escape");
      }
    }
    pos_ += 4;
    *out = v;
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // '"'
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("control character in string");
      }
      if (c != '\\') {
        out->push_back(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          absl::Status status = ParseHex4(&cp);
          if (!status.ok()) return status;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low = 0;
            if (text_.substr(pos_, 2) != "\\u") {
              return Error("unpaired surrogate in \\u escape");
            }
            pos_ += 2;
            status = ParseHex4(&low);
            if (!status.ok()) return status;
            if (low < 0xDC00 || low > 0xDFFF) {
              return Error("unpaired surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate in \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          --pos_;
          return Error("invalid escape in string");
      }
    }
  }

  absl::Status ParseInteger(JsonValue* out) {
    out->kind = JsonValue::Kind::kInteger;
    if (text_[pos_] == '-') {
      out->negative = true;
      ++pos_;
    }
    const size_t digits_start = pos_;
    uint64_t v = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const uint64_t d = static_cast<uint64_t>(text_[pos_] - '0');
      if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
        return Error("integer out of range");
      }
      v = v * 10 + d;
      ++pos_;
    }
    const size_t n = pos_ - digits_start;
    if (n == 0) return Error("expected digits");
    if (n > 1 && text_[digits_start] == '0') {
      return Error("leading zero in a number");
    }
    if (pos_ < text_.size() &&
        (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
      return Error("expected an integer, got a fractional number");
    }
    out->magnitude = v;
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------

struct DTypeInfo {
  const char* name;
  at::ScalarType type;
  size_t itemsize;
};

constexpr DTypeInfo kSupported[] = {
    {"F32", at::kFloat, 4},
    {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2},
};

// Dtypes of the format that this reader does not load.
constexpr const char* kKnownUnsupported[] = {
    "F64", "I64",  "I32",     "I16",    "I8",      "U8",      "U16",
    "U32", "U64",  "BOOL",    "C64",    "F8_E4M3", "F8_E5M2", "F8_E8M0",
    "F6_E2M3", "F6_E3M2", "F4",
};

const DTypeInfo* FindDType(absl::string_view name) {
  for (const DTypeInfo& d : kSupported) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

bool LittleEndianHost() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

struct Entry {
  std::string name;
  const DTypeInfo* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

std::string Quote(absl::string_view s) { return absl::StrCat("'", s, "'"); }

// Validates one tensor's header entry against a data section of
// `data_bytes` bytes.
absl::Status ParseEntry(const std::string& name, const JsonValue& value,
                        uint64_t data_bytes, Entry* out) {
  out->name = name;
  const std::string what = absl::StrCat("tensor ", Quote(name));
  if (value.kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected an object, got ", KindName(value.kind)));
  }
  const JsonValue* dtype = nullptr;
  const JsonValue* shape = nullptr;
  const JsonValue* offsets = nullptr;
  for (const auto& [key, v] : value.object) {
    if (key == "dtype") {
      dtype = &v;
    } else if (key == "shape") {
      shape = &v;
    } else if (key == "data_offsets") {
      offsets = &v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": unknown field \"", key,
          "\" (expected dtype, shape, data_offsets)"));
    }
  }
  if (dtype == nullptr || shape == nullptr || offsets == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": missing field \"",
                     dtype == nullptr   ? "dtype"
                     : shape == nullptr ? "shape"
                                        : "data_offsets",
                     "\""));
  }
  if (dtype->kind != JsonValue::Kind::kString) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": dtype must be a string"));
  }
  out->dtype = FindDType(dtype->string);
  if (out->dtype == nullptr) {
    const bool known =
        std::any_of(std::begin(kKnownUnsupported), std::end(kKnownUnsupported),
                    [&](const char* d) { return dtype->string == d; });
    return absl::InvalidArgumentError(absl::StrCat(
        what, known ? ": unsupported dtype " : ": unknown dtype ",
        dtype->string, " (supported: F32, F16, BF16)"));
  }
  if (shape->kind != JsonValue::Kind::kArray) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": shape must be an array of integers"));
  }
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (const JsonValue& d : shape->array) {
    if (d.kind != JsonValue::Kind::kInteger || d.negative ||
        d.magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": shape must be an array of non-negative integers"));
    }
    out->shape.push_back(static_cast<int64_t>(d.magnitude));
    if (d.magnitude != 0 &&
        numel > std::numeric_limits<uint64_t>::max() / d.magnitude) {
      numel_overflow = true;
    }
    numel *= d.magnitude;
  }
  if (numel == 0) numel_overflow = false;
  if (offsets->kind != JsonValue::Kind::kArray || offsets->array.size() != 2 ||
      std::any_of(offsets->array.begin(), offsets->array.end(),
                  [](const JsonValue& v) {
                    return v.kind != JsonValue::Kind::kInteger || v.negative;
                  })) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": data_offsets must be [begin, end], two non-negative integers"));
  }
  out->begin = offsets->array[0].magnitude;
  out->end = offsets->array[1].magnitude;
  const std::string range = absl::StrCat("[", out->begin, ", ", out->end, "]");
  if (out->begin > out->end) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": data_offsets ", range, " end before they begin"));
  }
  if (out->end > data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": data_offsets ", range, " run past the end of the data (",
        data_bytes, " bytes after the header; is the file truncated?)"));
  }
  const uint64_t itemsize = out->dtype->itemsize;
  if (numel_overflow || numel > std::numeric_limits<uint64_t>::max() / itemsize ||
      numel * itemsize != out->end - out->begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": shape [", absl::StrJoin(out->shape, ", "), "] of ",
        out->dtype->name, " needs ",
        numel_overflow ? std::string("more than 2^64")
                       : absl::StrCat(numel, " x ", itemsize),
        " bytes but data_offsets ", range, " hold ", out->end - out->begin));
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(const JsonValue& value) {
  if (value.kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(
        "__metadata__ must be an object of strings, got ", KindName(value.kind)));
  }
  for (const auto& [key, v] : value.object) {
    if (v.kind != JsonValue::Kind::kString) {
      return absl::InvalidArgumentError(absl::StrCat(
          "__metadata__ value for \"", key, "\" must be a string, got ",
          KindName(v.kind)));
    }
  }
  return absl::OkStatus();
}

// The data section must be tiled exactly: sorted by offset, each tensor
// starts where the previous one ended, and the last one ends at the end.
absl::Status CheckTiling(std::vector<const Entry*> entries,
                         uint64_t data_bytes) {
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : entries) {
    if (e->begin < cursor) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensors ", Quote(previous->name), " [", previous->begin, ", ",
          previous->end, "] and ", Quote(e->name), " [", e->begin, ", ",
          e->end, "] overlap"));
    }
    if (e->begin > cursor) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bytes [", cursor, ", ", e->begin, ") of the data belong to no tensor"));
    }
    cursor = e->end;
    previous = e;
  }
  if (cursor != data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        data_bytes - cursor, " bytes after the last tensor (data is ",
        data_bytes, " bytes, tensors end at ", cursor, ")"));
  }
  return absl::OkStatus();
}

std::string ErrnoText() { return errno != 0 ? std::strerror(errno) : "I/O error"; }

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20) {
      static const char kHex[] = "0123456789abcdef";
      out->append("\\u00");
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 0xF]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

}  // namespace

absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensors(
    const std::string& path) {
  const std::string prefix = absl::StrCat("safetensors file ", path, ": ");
  auto invalid = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
  };
  if (!LittleEndianHost()) {
    return absl::UnimplementedError(
        absl::StrCat(prefix, "reading needs a little-endian host"));
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat(prefix, "does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "cannot open: ", err != 0 ? std::strerror(err)
                                                       : "unknown error"));
  }
  in.seekg(0, std::ios::end);
  const std::streamoff end_pos = in.tellg();
  if (end_pos < 0) {
    return absl::InternalError(absl::StrCat(prefix, "cannot size: ", ErrnoText()));
  }
  const uint64_t file_size = static_cast<uint64_t>(end_pos);
  if (file_size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "too short (", file_size,
        " bytes) for the 8-byte header length"));
  }
  in.seekg(0);
  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) {
    return absl::InternalError(absl::StrCat(prefix, "read failed: ", ErrnoText()));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len == 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "header length is 0"));
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "header length ", header_len, " exceeds the limit of ",
        kMaxSafetensorsHeaderBytes, " bytes (not a safetensors file?)"));
  }
  if (header_len > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "header length ", header_len,
        " runs past the end of the file (", file_size, " bytes)"));
  }
  std::string header(static_cast<size_t>(header_len), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_len))) {
    return absl::InternalError(absl::StrCat(prefix, "read failed: ", ErrnoText()));
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_bytes = file_size - data_start;

  absl::StatusOr<JsonValue> root = JsonParser(header).ParseDocument();
  if (!root.ok()) return invalid(root.status());
  if (root->kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "header must be a JSON object, got ", KindName(root->kind)));
  }
  std::vector<Entry> entries;
  entries.reserve(root->object.size());
  for (const auto& [name, value] : root->object) {
    if (name == "__metadata__") {
      absl::Status status = CheckMetadata(value);
      if (!status.ok()) return invalid(status);
      continue;
    }
    Entry entry;
    absl::Status status = ParseEntry(name, value, data_bytes, &entry);
    if (!status.ok()) return invalid(status);
    entries.push_back(std::move(entry));
  }
  std::vector<const Entry*> pointers;
  for (const Entry& e : entries) pointers.push_back(&e);
  absl::Status tiling = CheckTiling(std::move(pointers), data_bytes);
  if (!tiling.ok()) return invalid(tiling);

  std::map<std::string, at::Tensor> tensors;
  try {
    for (const Entry& e : entries) {
      at::Tensor t =
          at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
      const uint64_t bytes = e.end - e.begin;
      if (bytes > 0) {
        in.seekg(static_cast<std::streamoff>(data_start + e.begin));
        if (!in.read(static_cast<char*>(t.data_ptr()),
                     static_cast<std::streamsize>(bytes))) {
          return absl::InternalError(absl::StrCat(
              prefix, "reading tensor ", Quote(e.name), " failed: ", ErrnoText()));
        }
      }
      if (e.dtype->type != at::kFloat) t = t.to(at::kFloat);
      tensors.emplace(e.name, std::move(t));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(prefix, e.what()));
  }
  return tensors;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors) {
  const std::string prefix = absl::StrCat("writing safetensors file ", path, ": ");
  if (!LittleEndianHost()) {
    return absl::UnimplementedError(
        absl::StrCat(prefix, "writing needs a little-endian host"));
  }
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  std::string header = "{";
  uint64_t offset = 0;
  try {
    for (const auto& [name, tensor] : tensors) {
      if (name.empty() || name == "__metadata__") {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "invalid tensor name \"", name, "\""));
      }
      if (!tensor.defined()) {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "tensor ", Quote(name), " is undefined"));
      }
      const char* dtype = nullptr;
      for (const DTypeInfo& d : kSupported) {
        if (tensor.scalar_type() == d.type) dtype = d.name;
      }
      if (dtype == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix, "tensor ", Quote(name), " has dtype ",
            c10::toString(tensor.scalar_type()),
            " (supported: float32, float16, bfloat16)"));
      }
      at::Tensor host = tensor.detach().to(at::kCPU).contiguous();
      const uint64_t bytes = static_cast<uint64_t>(host.nbytes());
      if (header.size() > 1) header.push_back(',');
      AppendJsonString(name, &header);
      absl::StrAppend(&header, ":{\"dtype\":\"", dtype, "\",\"shape\":[",
                      absl::StrJoin(host.sizes(), ","), "],\"data_offsets\":[",
                      offset, ",", offset + bytes, "]}");
      offset += bytes;
      data.push_back(std::move(host));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(prefix, e.what()));
  }
  header.push_back('}');
  // Pad so that the data starts 8-byte aligned, as the reference writer does.
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');

  errno = 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::InternalError(absl::StrCat(prefix, "cannot open: ", ErrnoText()));
  }
  unsigned char len_bytes[8];
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) {
    len_bytes[i] = static_cast<unsigned char>(len & 0xFF);
    len >>= 8;
  }
  out.write(reinterpret_cast<const char*>(len_bytes), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const at::Tensor& t : data) {
    out.write(static_cast<const char*>(t.data_ptr()),
              static_cast<std::streamsize>(t.nbytes()));
  }
  out.close();
  if (!out) {
    return absl::InternalError(absl::StrCat(prefix, "write failed: ", ErrnoText()));
  }
  return absl::OkStatus();
}

}  // namespace clipserve::runtime
