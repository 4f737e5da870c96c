#!/usr/bin/python3
"""Times Inception-I3D's forward pass in LibTorch driven from Python.

The model is the cross-check's functional reference
(tests/python/i3d_reference.py: F.conv3d, F.batch_norm, F.max_pool3d, ...)
under torch.inference_mode(), so the figures are those of "the same ATen
kernels, called from Python", to compare with the native C++ I3D's bench.
Prints one JSON line per (shape, batch):

  {"impl": "python", "frames": T, "height": H, "width": W, "batch": B,
   "threads": N, "ms_per_batch": ..., "clips_per_second": ...}

ms_per_batch is the mean over --runs timed passes after --warmup untimed
ones. Example:

  /usr/bin/python3 bench/i3d_python_forward.py --shape 16x224x224 \\
      --batch 1,4 --threads 2 --runs 5
"""

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import i3d_reference as ref  # noqa: E402


def parse_shape(text):
    parts = text.lower().split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"want TxHxW, got {text!r}")
    return tuple(int(p) for p in parts)


def main(argv=None):
    p = argparse.ArgumentParser(description="Time I3D forward from Python.")
    p.add_argument("--shape", default="16x224x224",
                   help="comma-separated TxHxW clip shapes")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0: all cores)")
    p.add_argument("--runs", type=int, default=5, help="timed passes")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes")
    p.add_argument("--conv", choices=["mkldnn", "aten"], default="mkldnn",
                   help="mkldnn: call oneDNN's convolution directly, as the "
                        "native C++ I3D does by default; aten: F.conv3d, "
                        "ATen's own choice (as the cross-check runs)")
    p.add_argument("--weights", help=".safetensors weights (default: random)")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if args.conv == "mkldnn":
        ref.CONV3D = ref.mkldnn_conv3d
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.weights:
        w = ref.load_weights(args.weights)
    else:
        w = ref.random_weights(args.num_classes, args.in_channels, args.seed)
    channels = w["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    shapes = [parse_shape(s) for s in args.shape.split(",")]
    batches = [int(b) for b in args.batch.split(",")]

    gen = torch.Generator().manual_seed(args.seed)
    for t, h, width in shapes:
        for b in batches:
            x = torch.rand(b, channels, t, h, width, generator=gen) * 2 - 1
            secs = ref.time_forward(x, w, args.runs, args.warmup)
            ms = 1e3 * sum(secs) / len(secs)
            print(json.dumps({
                "impl": "python", "frames": t, "height": h, "width": width,
                "batch": b, "threads": torch.get_num_threads(),
                "conv": args.conv,
                "ms_per_batch": round(ms, 3),
                "clips_per_second": round(1e3 * b / ms, 3),
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
