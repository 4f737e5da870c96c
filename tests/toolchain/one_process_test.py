"""LibTorch 2.11 (PyPI's CUDA build) and Debian's Protobuf/gRPC in one process.

PyTorch links its own protobuf statically with hidden symbols; clipserve
links Debian's libprotobuf and gRPC. This test proves on the real binary
that the two live together:
  1. build/server/clipserve links LibTorch with CUDA (libtorch_cuda.so,
     libc10_cuda.so), libtorch_cpu.so from the expected torch package, and
     Debian's libprotobuf/libgrpc++, and ld.so resolves every library it
     needs on this machine (GPU or not);
  2. LibTorch exports no protobuf symbol that could interpose on Debian's;
  3. the server, started with the built-in Inception-I3D, loads the model,
     serves a classification of a random clip and health over gRPC and its
     Prometheus endpoint, and its memory map holds libtorch_cuda.so and
     Debian's libprotobuf at once.

Usage: one_process_test.py SERVER CLIENT TORCH_LIB_DIR TORCH_VERSION CUDA
CUDA (ON or OFF, CMake's CLIPSERVE_TORCH_CUDA) says whether the build links
LibTorch's CUDA libraries; with OFF (a CPU-only build) the test proves that
none of them is linked instead.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deploy"))
import live_util as lu  # noqa: E402


def needed(binary):
    out = subprocess.run(["readelf", "-d", binary], check=True, capture_output=True,
                         text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def ldd(binary):
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    found, missing = {}, []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (not found|(\S+))", line)
        if m:
            if m.group(2) == "not found":
                missing.append(m.group(1))
            else:
                found[m.group(1)] = os.path.realpath(m.group(3))
    return found, missing


def main():
    server, client, torch_lib, version, cuda = sys.argv[1:6]
    cuda = cuda.upper() in ("ON", "1", "TRUE", "YES")
    torch_lib = os.path.realpath(torch_lib)

    # 1. What the binary links, and where ld.so finds it.
    libs = needed(server)
    lu.log(f"NEEDED: {' '.join(libs)}")
    for lib in ("libtorch_cpu.so", "libc10.so"):
        lu.check(lib in libs, f"clipserve links {lib}")
    lu.check(("libtorch_cuda.so" in libs) == cuda,
             f"clipserve {'links' if cuda else 'does not link'} libtorch_cuda.so (CUDA {cuda})")
    lu.check(any(lib.startswith("libprotobuf.so.32") for lib in libs),
             "clipserve links Debian's libprotobuf.so.32 (Protobuf 3.21)")
    lu.check(any(lib.startswith("libgrpc++.so.1.51") for lib in libs),
             "clipserve links Debian's libgrpc++.so.1.51")
    # PyTorch's libraries export copies of some libstdc++ functions
    # (std::filesystem among them); libstdc++ must come first in the search
    # order or our calls bind to those copies (CMakeLists.txt).
    first_torch = min(i for i, lib in enumerate(libs) if lib.startswith(("libtorch", "libc10")))
    lu.check("libstdc++.so.6" in libs[:first_torch],
             "libstdc++.so.6 precedes every LibTorch library among the NEEDED entries")
    found, missing = ldd(server)
    lu.check(not missing, f"ld.so finds every library clipserve needs (missing: {missing})")
    for lib in ("libtorch_cuda.so", "libtorch_cpu.so") if cuda else ("libtorch_cpu.so",):
        lu.check(os.path.dirname(found[lib]) == torch_lib,
                 f"{lib} comes from {torch_lib} ({found[lib]})")
    lu.check(found["libprotobuf.so.32"].startswith("/usr/lib/"),
             f"libprotobuf comes from Debian ({found['libprotobuf.so.32']})")
    lu.check(("libc10_cuda.so" in found) == cuda,
             f"libc10_cuda.so {'is' if cuda else 'is not'} loaded (CUDA {cuda})")
    for lib in ("libcudart.so.13", "libcublas.so.13", "libcudnn.so.9") if cuda else ():
        lu.check(lib in found, f"the CUDA runtime library {lib} resolves ({found.get(lib)})")
    version_file = os.path.join(torch_lib, "..", "version.py")
    with open(version_file) as f:
        text = f.read()
    lu.check(f"__version__ = '{version}" in text,
             f"that torch package is {version} ({version_file})")

    # 2. LibTorch hides its protobuf: no symbol of namespace google::protobuf
    # is exported, and with every binding resolved at load (LD_BIND_NOW) no
    # Debian library binds a protobuf or gRPC symbol to a LibTorch library.
    # (Generic std:: template instances may bind either way: same libstdc++
    # ABI, same code.)
    for lib in ("libtorch_cpu.so", "libc10.so") + (("libtorch_cuda.so",) if cuda else ()):
        out = subprocess.run(["nm", "-D", "--defined-only", "-C", found[lib]], check=True,
                             capture_output=True, text=True).stdout
        exported = [l for l in out.splitlines()
                    if re.match(r"\S+ [A-Za-z] google::protobuf::", l)]
        lu.check(not exported, f"{lib} exports no google::protobuf symbol "
                               f"({len(exported)}: {exported[:3]})")
    env = dict(os.environ, LD_BIND_NOW="1", LD_DEBUG="bindings")
    debug = subprocess.run([server, "--help"], capture_output=True, text=True, env=env,
                           timeout=120).stderr
    crossing = re.findall(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^']+)'",
                          debug)
    lu.check(len(crossing) > 1000, f"ld.so reported the process's bindings ({len(crossing)})")
    to_torch = [(a, sym) for a, b, sym in crossing
                if os.path.dirname(os.path.realpath(b)) == torch_lib
                and os.path.dirname(os.path.realpath(a)) != torch_lib]
    names = subprocess.run(["c++filt"], input="\n".join(sym for _, sym in to_torch),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    bad = [f"{os.path.basename(a)}: {n}" for (a, _), n in zip(to_torch, names)
           if n.startswith(("google::protobuf::", "grpc::", "grpc_", "absl::"))]
    lu.check(not bad, f"no protobuf/gRPC/Abseil symbol of ours binds to LibTorch "
                      f"({len(to_torch)} generic std:: bindings do; bad: {bad[:3]})")

    # 3. Both in one running process: load the model, serve requests.
    tmp = tempfile.mkdtemp(prefix="clipserve-one-process-")
    children = lu.Children()
    failed = True
    try:
        log_path = os.path.join(tmp, "server.log")
        proc = children.start("clipserve", [server, "--grpc-address", "127.0.0.1",
                                            "--grpc-port", "0", "--metrics-port", "0"],
                              log_path)

        def ports():
            if proc.poll() is not None:
                raise lu.Failure(f"clipserve exited with {proc.returncode} while starting")
            with open(log_path, errors="replace") as f:
                text = f.read()
            g = re.search(r"serving gRPC on port (\d+)", text)
            m = re.search(r"serving metrics on port (\d+)", text)
            return (int(g.group(1)), int(m.group(1))) if g and m else None

        grpc_port, metrics_port = lu.wait_for("clipserve to serve gRPC and /metrics", ports, 300)
        addr = f"127.0.0.1:{grpc_port}"
        with open(f"/proc/{proc.pid}/maps") as f:
            maps = f.read()
        torch_mapped = "libtorch_cuda.so" if cuda else "libtorch_cpu.so"
        lu.check(os.path.join(torch_lib, torch_mapped) in maps,
                 f"{torch_mapped} is mapped in the serving process")
        lu.check(re.search(r"/usr/lib/\S*/libprotobuf\.so\.32", maps) is not None,
                 "Debian's libprotobuf.so.32 is mapped in the same process")
        health = subprocess.run([client, "--server", addr, "health"], capture_output=True,
                                text=True, timeout=60)
        lu.check(health.returncode == 0 and health.stdout.strip() == "SERVING",
                 f"health over gRPC: {health.stdout.strip()!r}")
        meta = subprocess.run([client, "--server", addr, "metadata"], capture_output=True,
                              text=True, timeout=60)
        lu.check(meta.returncode == 0 and "i3d" in meta.stdout,
                 "model metadata (a protobuf message built in the LibTorch process)")
        r = subprocess.run([client, "--server", addr, "--timeout-ms", "240000", "--top-k", "3"],
                           capture_output=True, text=True, timeout=300)
        print(r.stdout, r.stderr, flush=True)
        lu.check(r.returncode == 0, "a random clip classified by the built-in I3D")
        # "  1. class 17    label   p=0.0031", three of them, best first.
        probs = [float(p) for p in re.findall(r"^\s*\d+\. class \d+ .* p=([0-9.]+)$",
                                               r.stdout, re.M)]
        lu.check(len(probs) == 3 and probs == sorted(probs, reverse=True)
                 and all(0 < p <= 1 for p in probs),
                 f"the answer lists 3 classes, best first, with probabilities ({probs})")
        lu.check("model i3d version" in r.stdout, "answered by the built-in i3d")
        # /metrics runs on civetweb's threads, whose small stacks must hold the
        # static TLS of the CUDA libraries (server/thread_stacks.cc).
        status, body = lu.http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        lu.check(status == 200 and re.search(
            r'^clipserve_requests_total\{[^}]*code="OK"[^}]*model="i3d"[^}]*\} 1$', body, re.M)
            is not None, "/metrics answers and counts the one OK request")
        lu.check(proc.poll() is None, "the server keeps serving")
        rc = children.stop(proc)
        lu.check(rc == 0, f"SIGTERM: clipserve drained and exited 0 (status {rc})")
        failed = False
    finally:
        lu.finish(children, tmp, failed, keep=False)


if __name__ == "__main__":
    try:
        main()
    except lu.Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
