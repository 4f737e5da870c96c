// Videos for the integration tests: files made with the ffmpeg command-line
// tool, and a video source that never answers (a decoder held for as long
// as a test needs, then released at once).
#ifndef CLIPSERVE_TESTS_INTEGRATION_VIDEO_SOURCES_H_
#define CLIPSERVE_TESTS_INTEGRATION_VIDEO_SOURCES_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "clipserve/v1/video_classifier.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_models.h"

namespace clipserve::testing {

// Writes <dir>/<name> from ffmpeg's testsrc2 pattern (`size` "WxH", `fps`,
// `seconds` long, encoded with `codec_args`); returns its bytes.
std::string MakeVideo(const std::string& dir, const std::string& name,
                      const std::string& size, double seconds, int fps,
                      const std::string& codec_args);

// H.264 in MP4, yuv420p: the codec arguments most tests use.
inline constexpr char kX264Args[] = "-c:v libx264 -pix_fmt yuv420p";

// Writes <dir>/models holding "tiny", a TinyVideoNet taking [3, 4, 32, 32]
// clips (10 classes, max_batch_size 4), and starts clipserve on it with
// `args` added; null if it did not start.
std::unique_ptr<ServerProcess> StartTinyVideoServer(const TempDir& dir,
                                                    const std::vector<std::string>& args);

// A Classify request for `model` whose video is `bytes`, uploaded.
v1::ClassifyRequest UploadRequest(const std::string& model, const std::string& bytes);
// A Classify request for `model` whose video is read from `uri`.
v1::ClassifyRequest UriRequest(const std::string& model, const std::string& uri);

// A video source on loopback that takes TCP connections and never answers:
// a stalled server. Accept() takes the next connection, so that a test
// knows a decoder is reading from it; Release() closes everything, and the
// reader gets an error at once.
class SilentSource {
 public:
  SilentSource();
  ~SilentSource();  // Release()
  SilentSource(const SilentSource&) = delete;
  SilentSource& operator=(const SilentSource&) = delete;

  // "http://127.0.0.1:PORT/", for --video-uri-prefix.
  const std::string& prefix() const { return prefix_; }

  // Whether a connection came within `timeout`; it is held open, silent.
  bool Accept(std::chrono::milliseconds timeout);

  // Closes the connections and the listener. Idempotent.
  void Release();

 private:
  int listener_ = -1;
  std::vector<int> accepted_;
  std::string prefix_;
};

}  // namespace clipserve::testing

#endif  // CLIPSERVE_TESTS_INTEGRATION_VIDEO_SOURCES_H_
