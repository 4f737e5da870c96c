#!/usr/bin/python3
"""An independent Inception-I3D forward pass, for cross-checking the C++ one.

Written from the architecture's published facts only (layer table, TF
"SAME" padding rule, head; see docs/i3d.md), in plain functional PyTorch
over a dict of tensors: no nn.Module, no code shared with runtime/. The
C++ test (tests/runtime/i3d_crosscheck_test.cc) writes random weights and a
random clip, runs this script on them and compares the logits.

Usage:
  /usr/bin/python3 tests/python/i3d_reference.py \
      --weights W.safetensors --input X.npy --output Y.npy
  X: float32 [B, C, T, H, W] (C = 3 RGB or 2 flow), Y: float32 [B, classes].
  The class and channel counts come from the weights.

  --threads N      torch.set_num_threads(N)
  --float64        compute in double precision (weights and input upcast);
                   the output file is still float32 unless --output-float64
  --time-runs N    also time N forward passes (after one warm-up) and print
                   one JSON line with the figures
  --random-weights write deterministic random weights to --weights first
                   (for smoke tests without the C++ side)

Needs Debian's python3-torch and python3-numpy (run with /usr/bin/python3).
"""

import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

BN_EPS = 1e-3

# ---------------------------------------------------------------------------
# The architecture, as data.
# ---------------------------------------------------------------------------

# Inception blocks: name -> (in channels, b0, b1a, b1b, b2a, b2b, b3b).
MIXED = {
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}

# The trunk in execution order. ("unit", name, kernel, stride, out) is a
# conv+BN+ReLU unit, ("pool", name, kernel, stride) a SAME max-pool and
# ("mixed", name) an Inception block.
TRUNK = [
    ("unit", "Conv3d_1a_7x7", (7, 7, 7), (2, 2, 2), 64),
    ("pool", "MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    ("unit", "Conv3d_2b_1x1", (1, 1, 1), (1, 1, 1), 64),
    ("unit", "Conv3d_2c_3x3", (3, 3, 3), (1, 1, 1), 192),
    ("pool", "MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    ("mixed", "Mixed_3b"),
    ("mixed", "Mixed_3c"),
    ("pool", "MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("mixed", "Mixed_4b"),
    ("mixed", "Mixed_4c"),
    ("mixed", "Mixed_4d"),
    ("mixed", "Mixed_4e"),
    ("mixed", "Mixed_4f"),
    ("pool", "MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("mixed", "Mixed_5b"),
    ("mixed", "Mixed_5c"),
]


def expected_shapes(num_classes=400, in_channels=3):
    """Every checkpoint key (the PyTorch port's names) -> its shape."""
    shapes = {}

    def unit(prefix, cin, cout, k):
        shapes[prefix + ".conv3d.weight"] = (cout, cin) + tuple(k)
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[prefix + ".bn." + s] = (cout,)

    unit("Conv3d_1a_7x7", in_channels, 64, (7, 7, 7))
    unit("Conv3d_2b_1x1", 64, 64, (1, 1, 1))
    unit("Conv3d_2c_3x3", 64, 192, (3, 3, 3))
    for name, (cin, b0, b1a, b1b, b2a, b2b, b3b) in MIXED.items():
        one, three = (1, 1, 1), (3, 3, 3)
        unit(name + ".b0", cin, b0, one)
        unit(name + ".b1a", cin, b1a, one)
        unit(name + ".b1b", b1a, b1b, three)
        unit(name + ".b2a", cin, b2a, one)
        unit(name + ".b2b", b2a, b2b, three)
        unit(name + ".b3b", cin, b3b, one)
    shapes["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    shapes["logits.conv3d.bias"] = (num_classes,)
    return shapes


# ---------------------------------------------------------------------------
# safetensors reading (and writing, for smoke tests), in pure Python.
# ---------------------------------------------------------------------------

_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    # Integer entries only appear as num_batches_tracked, which is dropped.
    "I64": torch.int64,
    "I32": torch.int32,
}


def read_safetensors(path):
    """Returns {name: tensor} from a .safetensors file.

    Format: little-endian u64 N, N bytes of JSON (name -> {dtype, shape,
    data_offsets [begin, end) relative to the end of the header}; an optional
    "__metadata__" entry), then the raw little-endian tensor bytes.
    """
    if sys.byteorder != "little":
        raise RuntimeError("this reader assumes a little-endian host")
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise ValueError(f"{path}: header length {header_len} past end of file")
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(
                f"{path}: {name}: unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = [int(d) for d in info["shape"]]
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not (0 <= begin <= end <= len(data)) \
                or end - begin != numel * itemsize:
            raise ValueError(f"{path}: {name}: bad data_offsets {begin}, {end}")
        if numel == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            # bytearray: a private, writable copy (frombuffer warns on
            # read-only buffers and would alias the file's bytes otherwise).
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype)
            t = t.reshape(shape)
        tensors[name] = t
    return tensors


def write_safetensors(path, tensors):
    """Minimal writer (F32/F16/BF16/F64), used to make smoke-test weights."""
    inverse = {v: k for k, v in _DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = (t.reshape(-1).view(torch.uint8).numpy().tobytes()
               if t.numel() else b"")
        header[name] = {"dtype": inverse[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def normalize_keys(tensors):
    """Drops a leading "module." and every num_batches_tracked entry."""
    out = {}
    for name, t in tensors.items():
        if name.startswith("module."):
            name = name[len("module."):]
        if name.endswith("num_batches_tracked"):
            continue
        out[name] = t
    return out


def load_weights(path, dtype=torch.float32):
    weights = normalize_keys(read_safetensors(path))
    num_classes = weights["logits.conv3d.bias"].shape[0]
    in_channels = weights["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    want = expected_shapes(num_classes, in_channels)
    missing = sorted(set(want) - set(weights))
    unexpected = sorted(set(weights) - set(want))
    wrong = sorted(k for k in want if k in weights
                   and tuple(weights[k].shape) != want[k])
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: not an I3D state dict: missing {missing}, "
                         f"unexpected {unexpected}, wrong shape {wrong}")
    return {k: v.to(dtype) for k, v in weights.items()}


def random_weights(num_classes=400, in_channels=3, seed=0):
    """Deterministic random weights with activations of a sane scale."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in expected_shapes(num_classes, in_channels).items():
        if name.endswith("conv3d.weight"):
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif name.endswith("bn.weight") or name.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        else:  # bn.bias, running_mean, logits bias
            t = 0.1 * torch.randn(shape, generator=g)
        out[name] = t.float()
    return out


# ---------------------------------------------------------------------------
# The forward pass.
# ---------------------------------------------------------------------------

def same_padding(size, kernel, stride):
    """TF "SAME": (front, back) zeros for one axis of input length `size`."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    front = total // 2
    return front, total - front


def pad_same(x, kernel, stride):
    # x: (B, C, T, H, W). F.pad takes pairs from the LAST axis backwards.
    t, h, w = x.shape[2:]
    pt = same_padding(t, kernel[0], stride[0])
    ph = same_padding(h, kernel[1], stride[1])
    pw = same_padding(w, kernel[2], stride[2])
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]))


def mkldnn_conv3d(x, weight, bias=None, stride=(1, 1, 1)):
    """oneDNN's convolution, called directly (benchmarks only).

    F.conv3d lets ATen choose the algorithm; ATen 1.13 sends batch-1 calls
    with small inputs to slow_conv3d (im2col + BLAS), the native C++ I3D
    calls oneDNN directly by default. bench/i3d_python_forward.py --conv
    mkldnn uses this to time the same kernels from Python.
    """
    return torch.mkldnn_convolution(x, weight, bias, [0, 0, 0], list(stride),
                                    [1, 1, 1], 1)


# The convolution every conv goes through: (x, weight, bias, stride) -> y,
# x already SAME-padded. F.conv3d for the cross-check.
CONV3D = F.conv3d


def conv_bn_relu(x, w, prefix, stride=(1, 1, 1)):
    weight = w[prefix + ".conv3d.weight"]
    kernel = tuple(weight.shape[2:])
    x = pad_same(x, kernel, stride)
    x = CONV3D(x, weight, None, stride)
    x = F.batch_norm(x, w[prefix + ".bn.running_mean"],
                     w[prefix + ".bn.running_var"], w[prefix + ".bn.weight"],
                     w[prefix + ".bn.bias"], training=False, eps=BN_EPS)
    return F.relu(x)


def max_pool_same(x, kernel, stride):
    # TF's SAME max-pool ignores the padded cells (as if they were -inf).
    # Padding with zeros gives the same result here because every max-pool
    # in I3D reads a ReLU output (or a concatenation of them), so x >= 0:
    # a window's max is >= 0 already and an extra 0 cannot exceed it. And
    # SAME never pads a whole window (front, back < kernel), so every window
    # holds at least one real cell.
    x = pad_same(x, kernel, stride)
    return F.max_pool3d(x, kernel, stride)


def mixed(x, w, name):
    b0 = conv_bn_relu(x, w, name + ".b0")
    b1 = conv_bn_relu(conv_bn_relu(x, w, name + ".b1a"), w, name + ".b1b")
    b2 = conv_bn_relu(conv_bn_relu(x, w, name + ".b2a"), w, name + ".b2b")
    b3 = conv_bn_relu(max_pool_same(x, (3, 3, 3), (1, 1, 1)), w, name + ".b3b")
    return torch.cat([b0, b1, b2, b3], dim=1)


def i3d_forward(x, w):
    """x: (B, C, T, H, W) -> clip logits (B, classes)."""
    for step in TRUNK:
        if step[0] == "unit":
            _, name, kernel, stride, _ = step
            assert tuple(w[name + ".conv3d.weight"].shape[2:]) == kernel
            x = conv_bn_relu(x, w, name, stride)
        elif step[0] == "pool":
            _, _, kernel, stride = step
            x = max_pool_same(x, kernel, stride)
        else:
            x = mixed(x, w, step[1])
    # Head: average pool (2, 7, 7) clipped to the feature map, stride 1, no
    # padding; dropout is the identity at inference; 1x1x1 logits conv with
    # bias (no BN, no ReLU); then the mean over the remaining T, H, W.
    t, h, width = x.shape[2:]
    x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, width)), stride=1)
    x = CONV3D(x, w["logits.conv3d.weight"], w["logits.conv3d.bias"],
               (1, 1, 1))
    return x.mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------------
# CLI.
# ---------------------------------------------------------------------------

def time_forward(x, w, runs, warmup=1):
    """Seconds per forward pass: list of `runs` timings after `warmup`."""
    with torch.inference_mode():
        for _ in range(warmup):
            i3d_forward(x, w)
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            i3d_forward(x, w)
            out.append(time.perf_counter() - start)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help=".safetensors file")
    p.add_argument("--input", help=".npy float32 [B, C, T, H, W]")
    p.add_argument("--output", help=".npy float32 [B, classes] to write")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--float64", action="store_true",
                   help="compute in double precision")
    p.add_argument("--output-float64", action="store_true",
                   help="write the output as float64")
    p.add_argument("--time-runs", type=int, default=0,
                   help="time this many forward passes, print JSON")
    p.add_argument("--random-weights", action="store_true",
                   help="first write random weights to --weights")
    p.add_argument("--num-classes", type=int, default=400,
                   help="with --random-weights")
    p.add_argument("--in-channels", type=int, default=3,
                   help="with --random-weights")
    p.add_argument("--seed", type=int, default=0, help="with --random-weights")
    args = p.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.random_weights:
        write_safetensors(args.weights, random_weights(
            args.num_classes, args.in_channels, args.seed))
    if args.input is None:
        return 0
    dtype = torch.float64 if args.float64 else torch.float32
    w = load_weights(args.weights, dtype)

    x = np.load(args.input)
    if x.ndim != 5:
        raise SystemExit(f"input must be [B, C, T, H, W], got {x.shape}")
    in_channels = w["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    if x.shape[1] != in_channels:
        raise SystemExit(f"input has {x.shape[1]} channels, weights want "
                         f"{in_channels}")
    x = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)

    with torch.inference_mode():
        y = i3d_forward(x, w)
    if args.output:
        out_dtype = np.float64 if args.output_float64 else np.float32
        np.save(args.output, y.numpy().astype(out_dtype))

    if args.time_runs > 0:
        secs = time_forward(x, w, args.time_runs)
        ms = sorted(s * 1e3 for s in secs)
        print(json.dumps({
            "impl": "python", "batch": int(x.shape[0]),
            "frames": int(x.shape[2]), "height": int(x.shape[3]),
            "width": int(x.shape[4]), "threads": torch.get_num_threads(),
            "dtype": "float64" if args.float64 else "float32",
            "runs": len(ms), "ms_mean": sum(ms) / len(ms), "ms_min": ms[0],
            "ms_median": ms[len(ms) // 2], "ms_max": ms[-1],
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
