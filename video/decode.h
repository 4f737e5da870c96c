// Video decoding for clip classification: encoded bytes in, a clip of RGB
// frames out, preprocessed as the I3D evaluation does.
//
//   clipserve::video::Sampling sampling;    // 16 frames, uniform
//   clipserve::video::Geometry geometry;    // short side 256, centre 224x224
//   absl::StatusOr<clipserve::video::Clip> clip =
//       clipserve::video::DecodeClip(bytes, sampling, geometry, {});
//   // clip->frames: frames_count x height x width x 3 bytes, RGB.
//
// The pipeline, in order:
//
//  1. The bytes must be non-empty, at most Limits::max_bytes, and start like
//     one of the accepted containers: MP4/MOV/3GP, AVI, Matroska/WebM,
//     MPEG-TS, MPEG-PS, FLV, Ogg, ASF/WMV, YUV4MPEG2 or a raw H.264 (Annex B)
//     stream. Anything else (playlists above all: FFmpeg's HLS demuxer would
//     open files named in an "#EXTM3U" body) is refused before FFmpeg sees it.
//  2. FFmpeg's libraries open the bytes from memory, with only the demuxers
//     of those containers allowed (and no protocol: nothing else is opened).
//  3. The declared resolution must be within Limits, before any frame is
//     decoded, and so must the frame count the header declares, if any.
//     Then every packet of the video stream is demuxed once (no decoding):
//     the frames the file holds are counted from them (at most max_frames),
//     whatever the header declared, and the count, and the duration (count /
//     fps) when the frame rate is known, must be within Limits.
//  4. SampleFrameIndices() picks the frames (frame i: the i-th in
//     presentation order); with Sampling::approximate, each may then move
//     to a keyframe near it. The decoder restarts at a keyframe when one lies
//     between where it is and the next sampled frame, and skips frames that
//     nothing references (AVDISCARD_NONREF) between samples; the frames
//     returned are exactly those a full sequential decode gives
//     (av_decode.cc; tests/video/decode_exact_test.cc).
//  5. Each sampled frame goes through one swscale call (bilinear) from the
//     decoder's format to RGB at the size ComputeResizeCrop() says, and the
//     centre crop is copied into the output.
//
// A file that ends before the frames its header declares (an MP4 or AVI cut
// short) is sampled from the frames that are there; Clip::declared_frames
// says what it claimed. A stream that yields no frame is an error, and so is
// a sampled frame that does not decode ("frame N of M could not be decoded
// (corrupt?)").
//
// Errors. Every failure of DecodeClip() is INVALID_ARGUMENT with a message
// that starts "could not decode video: " and says what was wrong (bad
// options included), except RESOURCE_EXHAUSTED when memory runs out and
// what DecodeOptions::interrupt returns. Every loop is bounded (by the bytes
// and max_frames), so no input makes it hang, and Limits::max_decode_seconds
// bounds its time; the tests feed it random, truncated and bit-flipped files
// of several containers.
//
// Threads. DecodeClip() is thread-safe; calls share nothing. The decoder
// uses DecodeOptions::threads threads (default 1: the server decodes many
// clips at once on its own pool).
//
// Logging. FFmpeg's own messages are limited to errors (av_log_set_level,
// process-wide, at the first call).
#ifndef CLIPSERVE_VIDEO_DECODE_H_
#define CLIPSERVE_VIDEO_DECODE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clipserve::video {

// What an input may cost. Checked from what the container declares, before
// decoding, and again on what is decoded.
struct Limits {
  // Largest input, in bytes.
  size_t max_bytes = 64 << 20;
  // Largest frame, as the container declares it and as decoded (after the
  // rotation that the stream's metadata asks for).
  int64_t max_width = 4096;
  int64_t max_height = 4096;
  // Most pixels a frame resized for the crop (step 5) may have, whatever the
  // source's size: a frame far wider than high, resized to its short side,
  // would otherwise be huge. Separate from max_width and max_height, which
  // bound the source: a small source is upscaled to Geometry's short side.
  int64_t max_resized_pixels = int64_t{4096} * 4096;
  // Most frames the video may declare, or have when they must be counted.
  int64_t max_frames = 10000;
  // Longest duration, frames / fps, when the frame rate is known.
  double max_seconds = 600;
  // Largest output, Clip::frames.size().
  size_t max_output_bytes = 256 << 20;
  // Longest DecodeClip() may take, from its start to the last packet it
  // demuxes or decodes (checked before each): past it, INVALID_ARGUMENT
  // "could not decode video: decoding took longer than the limit of 60 s".
  // The other limits bound the work; this bounds its time, whatever the
  // codec and the machine's load.
  double max_decode_seconds = 60;
};

// Which frames make the clip. A frame is never repeated: a video with too few
// frames is an error.
struct Sampling {
  enum class Mode {
    // num_frames indices spread over the whole video: the centre of each of
    // num_frames equal segments, floor((i + 0.5) * total / num_frames).
    // Ignores start_seconds and stride.
    kUniform,
    // num_frames indices from round(start_seconds * fps), stride apart.
    kStride,
  };
  Mode mode = Mode::kUniform;
  int64_t num_frames = 16;   // >= 1
  double start_seconds = 0;  // >= 0; kStride only
  int64_t stride = 1;        // >= 1; kStride only
  // Opt-in trade of exactness for speed (DecodeClip only). Each sampled
  // index may move to the keyframe nearest to it within its own share of
  // the video: from halfway to the previous sample to halfway to the next
  // (for the first and last sample, the same half-spacing outwards). A
  // keyframe decodes on its own, so a sample that moves costs one frame
  // instead of every reference frame back to its GOP's start. The indices
  // stay strictly increasing, Clip::frame_indices says which frames were
  // used, and those frames are still exactly the ones a full decode gives
  // at those indices. On a long video with samples far apart this decodes
  // one frame per sample; where samples are closer than the keyframe
  // interval, few move and it costs what exact sampling does. Compare
  // TorchCodec's seek_mode="approximate", which trusts the header's frame
  // rate for the index to timestamp mapping instead of scanning the file:
  // here the scan stays (the frame count is always counted) and the
  // approximation is which frame, never when it is.
  bool approximate = false;
};

// How each frame is resized and cropped. See ComputeResizeCrop().
struct Geometry {
  int64_t resize_short_side = 256;  // >= 1
  int64_t crop_height = 224;        // >= 1
  int64_t crop_width = 224;         // >= 1
};

// A decoded clip.
struct Clip {
  // frames_count x height x width x 3 bytes: RGB, row-major, frame after
  // frame.
  std::string frames;
  int64_t frames_count = 0;
  int64_t height = 0;  // Geometry::crop_height
  int64_t width = 0;   // Geometry::crop_width
  // The source frame of each output frame (SampleFrameIndices()).
  std::vector<int64_t> frame_indices;
  // The source, as its container declares it; source_frames as counted when
  // the container declares no count. source_fps is 0 when unknown.
  int64_t source_width = 0;
  int64_t source_height = 0;
  int64_t source_frames = 0;
  double source_fps = 0;
  // What the container's header claims (0: it claims nothing). More than
  // source_frames when the file ends early: the clip is then sampled from
  // the frames that are there.
  int64_t declared_frames = 0;
  // What decoding took: packets handed to the decoder, and how often it
  // restarted at a keyframe to skip ahead (see the top of av_decode.cc).
  int64_t packets_decoded = 0;
  int64_t restarts = 0;
  // Whether NVDEC decoded it; with DecodeOptions::device "cuda" and
  // gpu_decoded false, why not.
  bool gpu_decoded = false;
  std::string decode_fallback;
};

// How DecodeClip() decodes.
struct DecodeOptions {
  // Decoder threads for this clip. 1 (default): the calling thread only, as
  // the server decodes many clips at once on its own pool. 0: FFmpeg's
  // choice (one per core, for codecs with frame or slice threading).
  int threads = 1;
  // "cpu", or "cuda": NVDEC through FFmpeg's cuda hwaccel (it needs the
  // driver's libnvcuvid), falling back to the CPU, per clip, when no CUDA
  // device opens or the codec has no NVDEC decoder (Clip::decode_fallback
  // says why).
  std::string device = "cpu";
  // Asked before each packet is demuxed or decoded (never in between):
  // a non-OK status stops decoding and DecodeClip() returns it as is. The
  // server stops there for a call that was cancelled or whose deadline
  // passed. Empty (the default): nothing stops decoding early.
  std::function<absl::Status()> interrupt;
};

// Decodes `bytes` (a whole video file) into a clip. See the top of this file.
// Does not keep `bytes` after it returns.
absl::StatusOr<Clip> DecodeClip(absl::string_view bytes,
                                const Sampling& sampling,
                                const Geometry& geometry, const Limits& limits,
                                const DecodeOptions& options = {});

// The frame indices, strictly increasing, that `sampling` picks from a video
// of `total_frames` frames at `fps` frames per second (fps matters only for
// kStride with start_seconds > 0; <= 0 means unknown). INVALID_ARGUMENT for
// bad options or a video that is too short, e.g.
//   "video has 1 frame; sampling 16 frames needs at least 16"
//   "video has 60 frames; sampling 16 frames from 2.0 s (frame 50) with
//    stride 2 needs at least 81"
// (DecodeClip adds its "could not decode video: " in front).
absl::StatusOr<std::vector<int64_t>> SampleFrameIndices(
    int64_t total_frames, double fps, const Sampling& sampling);

// Where a width x height frame is resized to and cropped from.
struct ResizeCrop {
  int64_t resized_width = 0;
  int64_t resized_height = 0;
  // Top-left corner of the crop_width x crop_height crop, in the resized
  // frame.
  int64_t crop_x = 0;
  int64_t crop_y = 0;
};

// The short side is scaled to resize_short_side and the long side by the
// same factor, truncated (as torchvision's Resize(int)): a 1920x1080 frame
// becomes 455x256. When that would not cover the crop, the short side grows
// to the least length that does. The crop is centred, each offset rounded
// half to even (as torchvision's and pytorch-i3d's CenterCrop):
// 455 - 224 = 231 gives crop_x 116. A square frame's sides both become the
// short side. Requires positive sizes below 2^31.
ResizeCrop ComputeResizeCrop(int64_t width, int64_t height,
                             const Geometry& geometry);

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_DECODE_H_
