"""The one-way dependency rule between layers (tools/check_layering.py).

1. The source tree keeps the rule: the checker finds nothing in it.
2. The checker is not blind: in a copy of the layers' folders, each kind
   of break planted in turn (batching including gRPC, runtime including
   generated Protobuf code, video including LibTorch, the server including
   LibTorch, the server including a runtime header that brings LibTorch in
   through another one) is reported with its file, line and reason, and
   the script exits 1; the copy as it was exits 0.

Usage: layering_test.py SOURCE_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.abspath(sys.argv[1])
CHECKER = os.path.join(SOURCE, "tools", "check_layering.py")
LAYERS = ("batching", "runtime", "video", "server", "client")


def run(root):
    p = subprocess.run([sys.executable, CHECKER, root], capture_output=True, text=True)
    return p.returncode, p.stdout


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


code, out = run(SOURCE)
check(code == 0 and out == "", f"the tree breaks the rule:\n{out}")

# (file to plant in, line to add, what the report must say)
PLANTS = [
    ("batching/planted.h", '#include <grpcpp/grpcpp.h>',
     "batching/planted.h:1: batching/ includes <grpcpp/grpcpp.h> (grpc)"),
    ("runtime/planted.cc", '#include "config/model_config.pb.h"',
     "runtime/planted.cc:1: runtime/ includes <config/model_config.pb.h> (protobuf)"),
    ("video/planted.cc", '#include <torch/torch.h>',
     "video/planted.cc:1: video/ includes <torch/torch.h> (libtorch)"),
    ("server/planted.cc", '#include <ATen/ATen.h>',
     "server/planted.cc:1: server/ includes <ATen/ATen.h> (libtorch)"),
    ("server/planted2.cc", '#include "runtime/planted_outer.h"',
     "server/planted2.cc:1: server/ includes runtime/planted_outer.h, which brings in "
     "LibTorch (through runtime/planted_inner.h)"),
]

with tempfile.TemporaryDirectory() as tmp:
    for layer in LAYERS:
        shutil.copytree(os.path.join(SOURCE, layer), os.path.join(tmp, layer))
    os.makedirs(os.path.join(tmp, "tools"))
    code, out = run(tmp)
    check(code == 0, f"the copy breaks the rule:\n{out}")
    # A runtime header free of LibTorch that includes one that is not.
    with open(os.path.join(tmp, "runtime", "planted_outer.h"), "w") as f:
        f.write('#include <vector>\n#include "runtime/planted_inner.h"\n')
    with open(os.path.join(tmp, "runtime", "planted_inner.h"), "w") as f:
        f.write("#include <torch/script.h>\n")
    code, out = run(tmp)
    check(code == 0, "runtime/ may include LibTorch itself")
    for rel, line, want in PLANTS:
        path = os.path.join(tmp, rel)
        with open(path, "w") as f:
            f.write(line + "\n")
        code, out = run(tmp)
        check(code == 1, f"{rel}: exit {code}, not 1")
        check(want in out, f"{rel}: the report lacks {want!r}:\n{out}")
        check(len(out.strip().splitlines()) == 1, f"{rel}: more than one report:\n{out}")
        os.remove(path)
    code, out = run(tmp)
    check(code == 0, f"the copy, the plants removed:\n{out}")
print("ok: the tree keeps the one-way rule, and each planted break is reported")
