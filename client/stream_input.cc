#include "client/stream_input.h"

#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/av_stream.h"

namespace clipserve::client {
namespace {

class RawFileChunks final : public ChunkReader {
 public:
  RawFileChunks(FILE* file, std::string path, size_t chunk)
      : file_(file, &std::fclose), path_(std::move(path)), chunk_(chunk) {}

  absl::StatusOr<bool> Next(std::string* bytes, int64_t* time_us) override {
    bytes->resize(chunk_);
    const size_t n = std::fread(bytes->data(), 1, chunk_, file_.get());
    bytes->resize(n);
    *time_us = -1;
    if (n > 0) return true;
    if (std::ferror(file_.get())) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": read error"));
    }
    return false;
  }

 private:
  std::unique_ptr<FILE, int (*)(FILE*)> file_;
  const std::string path_;
  const size_t chunk_;
};

class PacketChunks final : public ChunkReader {
 public:
  explicit PacketChunks(std::unique_ptr<PacketReader> reader) : reader_(std::move(reader)) {}
  absl::StatusOr<bool> Next(std::string* bytes, int64_t* time_us) override {
    return reader_->Next(bytes, time_us);
  }

 private:
  std::unique_ptr<PacketReader> reader_;
};

}  // namespace

absl::StatusOr<StreamSource> ClassifySource(const std::string& source) {
  StreamSource out;
  if (source.empty()) return absl::InvalidArgumentError("empty SOURCE");
  const size_t scheme_end = source.find("://");
  if (scheme_end != std::string::npos) {
    const std::string scheme = absl::AsciiStrToLower(source.substr(0, scheme_end));
    for (const char* s : {"rtsp", "rtsps", "http", "https", "udp", "file"}) {
      if (scheme == s) {
        out.url = source;
        return out;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported URL scheme \"", scheme,
        "\" (the server pulls rtsp, rtsps, http, https, udp and file URLs)"));
  }
  out.path = source;
  const std::string lower = absl::AsciiStrToLower(source);
  const size_t slash = lower.find_last_of('/');
  const size_t dot = lower.find_last_of('.');
  const std::string ext =
      dot == std::string::npos || (slash != std::string::npos && dot < slash)
          ? ""
          : lower.substr(dot);
  if (ext == ".ts" || ext == ".m2ts") {
    out.input = v1::StreamOpen::MPEGTS;
  } else if (ext == ".h264" || ext == ".264") {
    out.input = v1::StreamOpen::H264;
  } else if (ext == ".hevc" || ext == ".h265" || ext == ".265") {
    out.input = v1::StreamOpen::HEVC;
  } else {
    out.input = v1::StreamOpen::MPEGTS;
    out.remux = true;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ChunkReader>> OpenChunks(const StreamSource& source,
                                                        const ChunkOptions& options) {
  if (source.path.empty()) return absl::InvalidArgumentError("no local file to push");
  if (!source.remux && !options.timed) {
    if (options.raw_chunk_bytes == 0) return absl::InvalidArgumentError("chunk size 0");
    FILE* file = std::fopen(source.path.c_str(), "rb");
    if (file == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", source.path));
    }
    return std::make_unique<RawFileChunks>(file, source.path, options.raw_chunk_bytes);
  }
  // Annex B keeps its packets' bytes; a container goes out as MPEG-TS.
  const bool annex_b = source.input == v1::StreamOpen::H264 ||
                       source.input == v1::StreamOpen::HEVC;
  auto reader = PacketReader::Open(
      source.path, annex_b ? PacketReader::Output::kAsIs : PacketReader::Output::kMpegTs);
  if (!reader.ok()) return reader.status();
  const std::string want = source.input == v1::StreamOpen::HEVC ? "hevc" : "h264";
  if (annex_b && (*reader)->codec() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        source.path, ": holds ", (*reader)->codec(), ", not what its extension says (",
        want, ")"));
  }
  return std::make_unique<PacketChunks>(*std::move(reader));
}

}  // namespace clipserve::client
