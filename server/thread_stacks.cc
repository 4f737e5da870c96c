// Thread stacks large enough for the process's static TLS.
//
// glibc carves every thread's static TLS block (the TLS of the executable
// and of every library loaded at start-up) out of the thread's stack, and
// pthread_create fails with EINVAL when the requested stack cannot hold it.
// LibTorch's CUDA build brings cuBLAS and cuBLASLt, whose TLS alone is
// 106 KiB, while Debian's civetweb (the HTTP server behind prometheus-cpp's
// /metrics) asks for 100 KiB stacks: without this, the metrics endpoint
// fails to start ("Cannot create threads").
//
// This definition takes the place of libc's pthread_attr_setstacksize for
// the whole process (the executable's symbol comes first in ld.so's search
// order) and raises any request below kMinThreadStack to it; larger
// requests pass through unchanged. Stacks are reserved, not committed, so
// the cost is address space only. It is compiled into every executable that
// links clipserve_server (an INTERFACE source: server/CMakeLists.txt).
// Proven by the metrics tests of the real server (tests/toolchain,
// tests/deploy) with LibTorch's CUDA libraries loaded.
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

namespace {

constexpr size_t kMinThreadStack = size_t{1} << 20;  // 1 MiB

using SetStackSize = int (*)(pthread_attr_t*, size_t);

SetStackSize LibcSetStackSize() {
  static const SetStackSize libc = reinterpret_cast<SetStackSize>(
      dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return libc;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr,
                                         size_t size) noexcept {
  return LibcSetStackSize()(attr, size < kMinThreadStack ? kMinThreadStack : size);
}
