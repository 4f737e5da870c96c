// Which container a video file is, from its first bytes.
//
// DecodeClip() hands FFmpeg only files that start like a container it
// accepts: FFmpeg picks its demuxer by probing the content, and some demuxers
// (HLS and DASH playlists, ffconcat lists) would open the files or URLs that
// the input names, which an untrusted upload must never make the server do.
#ifndef CLIPSERVE_VIDEO_CONTAINER_H_
#define CLIPSERVE_VIDEO_CONTAINER_H_

#include "absl/strings/string_view.h"

namespace clipserve::video {

// The name of the container that `bytes` starts like: "MP4/MOV", "AVI",
// "Matroska/WebM", "MPEG-TS", "MPEG-PS", "FLV", "Ogg", "ASF", "Y4M" or
// "H.264". Empty when none. A match only says how the file starts; it may
// still be corrupt.
absl::string_view SniffContainer(absl::string_view bytes);

// The accepted containers, for messages: "MP4/MOV, AVI, ...".
absl::string_view AcceptedContainers();

}  // namespace clipserve::video

#endif  // CLIPSERVE_VIDEO_CONTAINER_H_
