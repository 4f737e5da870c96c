#!/usr/bin/python3
"""Test helper for i3d_test: turns a .safetensors file into a torch.save .pth.

  /usr/bin/python3 i3d_make_pth.py IN.safetensors OUT.pth
      [--ordered-dict] [--prefix module.] [--num-batches-tracked]
      [--wrap state_dict] [--legacy] [--extra-int NAME]

Reads the safetensors file with its own few lines of parsing (json + numpy,
not the C++ reader under test), so it also checks the C++ writer's output
independently. Tensors keep their dtype (F32, F16, BF16).
"""

import argparse
import collections
import json
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    out = collections.OrderedDict()
    for name in sorted(header):
        if name == "__metadata__":
            continue
        info = header[name]
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        shape = info["shape"]
        dtype = info["dtype"]
        if dtype == "F32":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())
        elif dtype == "F16":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<f2").copy())
        elif dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<i2").copy()
            t = torch.from_numpy(bits).view(torch.bfloat16)
        else:
            raise SystemExit(f"{name}: unsupported dtype {dtype}")
        out[name] = t.reshape(shape)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--ordered-dict", action="store_true")
    p.add_argument("--prefix", default="")
    p.add_argument("--num-batches-tracked", action="store_true")
    p.add_argument("--wrap", default="")
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--extra-int", default="")
    args = p.parse_args()

    tensors = read_safetensors(args.input)
    state = collections.OrderedDict()
    for name, t in tensors.items():
        state[args.prefix + name] = t
        if args.num_batches_tracked and name.endswith(".bn.running_mean"):
            nbt = name[: -len("running_mean")] + "num_batches_tracked"
            state[args.prefix + nbt] = torch.tensor(7, dtype=torch.int64)
    obj = state if args.ordered_dict else dict(state)
    if args.wrap:
        obj = {args.wrap: obj, "epoch": 3}
    if args.extra_int:
        obj[args.extra_int] = 5
    torch.save(obj, args.output, _use_new_zipfile_serialization=not args.legacy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
