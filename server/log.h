// Minimal leveled logging to stderr for start-up, configuration and shutdown.
// Not for per-request paths.
#ifndef CLIPSERVE_SERVER_LOG_H_
#define CLIPSERVE_SERVER_LOG_H_

#include <string_view>

namespace clipserve::server {

enum class LogLevel { kInfo, kWarning, kError };

// Writes one line: "<UTC time> <level> clipserve: <message>". Thread-safe.
void Log(LogLevel level, std::string_view message);

inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(std::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }

}  // namespace clipserve::server

#endif  // CLIPSERVE_SERVER_LOG_H_
