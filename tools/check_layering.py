#!/usr/bin/env python3
"""Checks that dependencies between clipserve's layers point one way.

docs/architecture.md states the rule: `server` uses `runtime`, `video` and
`batching`; `runtime` knows nothing of gRPC (nor of Protobuf, whose
generated code must never meet LibTorch's headers); `video` knows only
FFmpeg's libraries; `batching` knows nothing of any of them; the server
never includes LibTorch (its targets compile generated Protobuf code).
This script reads every #include of every source file under the layers'
folders and reports each one the rule forbids, with its file and line.

Usage: check_layering.py [ROOT]   (ROOT: the source tree, default: here)
Exit status 0 when the tree keeps the rule, 1 otherwise.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
SOURCES = (".h", ".hpp", ".cc", ".cpp", ".cu", ".cuh")

# Groups of headers, by the first component of the included path.
PROJECT = {"batching", "runtime", "video", "server", "client"}
GROUPS = {
    "absl": "absl",
    "grpc": "grpc", "grpcpp": "grpc",
    "google": "protobuf",  # google/protobuf/...
    "clipserve": "protobuf", "inference": "protobuf", "config": "protobuf",
    "torch": "libtorch", "ATen": "libtorch", "c10": "libtorch",
    "libavcodec": "ffmpeg", "libavformat": "ffmpeg", "libavutil": "ffmpeg",
    "libswscale": "ffmpeg", "libavfilter": "ffmpeg",
    "prometheus": "prometheus",
    "cuda": "cuda", "cuda_runtime.h": "cuda", "cuda_runtime_api.h": "cuda",
    "cudnn.h": "cuda", "nvml.h": "cuda",
}

# What each layer may include besides the C and C++ standard libraries and
# the operating system's headers: its own folder and these.
ALLOWED = {
    "batching": {"batching", "absl"},
    "runtime": {"runtime", "absl", "libtorch", "cuda"},
    "video": {"video", "absl", "ffmpeg", "cuda"},
    "server": {"server", "runtime", "video", "batching", "absl", "grpc",
               "protobuf", "prometheus", "cuda"},
    "client": {"client", "video", "absl", "grpc", "protobuf", "ffmpeg"},
}


def group_of(path):
    """The group of an included path: a layer, a library, or "system"."""
    first = path.split("/", 1)[0]
    if first in PROJECT and "/" in path:
        return first
    if first in GROUPS:
        return GROUPS[first]
    if path.endswith(".pb.h") or path.endswith(".grpc.pb.h"):
        return "protobuf"
    if "/" not in path or first in {"sys", "linux", "arpa", "netinet"}:
        return "system"
    return "other:" + first


def includes_of(path):
    """(line number, included path) of each #include in the file at path."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                out.append((number, m.group(1)))
    return out


def libtorch_via(root, header, seen=None):
    """The project header through which `header` (a path under root) brings
    in LibTorch, itself included; None when it does not."""
    seen = set() if seen is None else seen
    if header in seen:
        return None
    seen.add(header)
    path = os.path.join(root, header)
    if not os.path.isfile(path):
        return None
    for _, inc in includes_of(path):
        group = group_of(inc)
        if group == "libtorch":
            return header
        if group in PROJECT:
            via = libtorch_via(root, inc, seen)
            if via:
                return via
    return None


def violations(root):
    """Every forbidden include under root, as 'file:line: message'."""
    found = []
    for layer, allowed in sorted(ALLOWED.items()):
        top = os.path.join(root, layer)
        for folder, _, files in sorted(os.walk(top)):
            for name in sorted(files):
                if not name.endswith(SOURCES):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                for number, inc in includes_of(path):
                    group = group_of(inc)
                    if group != "system" and group not in allowed:
                        found.append(
                            f"{rel}:{number}: {layer}/ includes <{inc}> ({group}); "
                            f"it may include only {', '.join(sorted(allowed))}")
                    elif layer != "runtime" and group == "runtime":
                        # Outside runtime/, only its LibTorch-free headers.
                        via = libtorch_via(root, inc)
                        if via:
                            found.append(
                                f"{rel}:{number}: {layer}/ includes {inc}, which brings "
                                f"in LibTorch (through {via}); only runtime/*.cc may")
    return found


def main(argv):
    root = argv[1] if len(argv) > 1 else os.getcwd()
    missing = [layer for layer in ALLOWED if not os.path.isdir(os.path.join(root, layer))]
    if missing:
        print(f"check_layering: {root} has no {', '.join(missing)}/", file=sys.stderr)
        return 2
    found = violations(root)
    for v in found:
        print(v)
    if found:
        print(f"check_layering: {len(found)} include(s) break the one-way rule "
              "(docs/architecture.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
