// Videos for the integration tests: files made with the ffmpeg command-line
// tool, and a video source that never answers (a decoder held for as long
// as a test needs, then released at once).
#ifndef CLIPSERVE_TESTS_INTEGRATION_VIDEO_SOURCES_H_
#define CLIPSERVE_TESTS_INTEGRATION_VIDEO_SOURCES_H_

#include <chrono>
#include <string>
#include <vector>

namespace clipserve::testing {

// Writes <dir>/<name> from ffmpeg's testsrc2 pattern (`size` "WxH", `fps`,
// `seconds` long, encoded with `codec_args`); returns its bytes.
std::string MakeVideo(const std::string& dir, const std::string& name,
                      const std::string& size, double seconds, int fps,
                      const std::string& codec_args);

// H.264 in MP4, yuv420p: the codec arguments most tests use.
inline constexpr char kX264Args[] = "-c:v libx264 -pix_fmt yuv420p";

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
